// Command devbroker runs a single-node Kafka-protocol broker (kfake) on
// loopback for the local stack. With -data-dir, topics, messages and
// committed consumer offsets survive a restart.
//
// It is a development tool: production runs Apache Kafka (see deploy/).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/acme/analytics/pkg/service"
	"github.com/twmb/franz-go/pkg/kfake"
)

type config struct {
	Addr       string
	DataDir    string
	Partitions int
	port       int // of Addr, once validated
}

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:9092", "listen address; the broker always binds 127.0.0.1")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory that keeps topics and offsets across restarts (empty: in memory)")
	fs.IntVar(&c.Partitions, "default-partitions", 8, "partitions of topics created without an explicit count")
}

func (c *config) Validate() error {
	host, portStr, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("-addr %q is not host:port: %w", c.Addr, err)
	}
	if host != "127.0.0.1" && host != "localhost" {
		return fmt.Errorf("-addr host must be 127.0.0.1: the development broker only serves loopback")
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("-addr port %q is not a port number", portStr)
	}
	c.port = port
	return nil
}

func main() {
	var cfg config
	service.Main("devbroker", "DEVBROKER", &cfg, func(ctx context.Context) error { return run(ctx, cfg) })
}

func run(ctx context.Context, cfg config) error {
	opts := []kfake.Opt{kfake.Ports(cfg.port), kfake.DefaultNumPartitions(cfg.Partitions), kfake.ClusterID("analytics-dev")}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start broker on %s: %w", cfg.Addr, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("kafka broker listening", slog.Any("addrs", c.ListenAddrs()), slog.String("data_dir", cfg.DataDir))
	<-ctx.Done()
	c.Close() // flushes persisted state
	log.Info("kafka broker stopped")
	return nil
}
