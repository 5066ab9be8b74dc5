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
	"os/signal"
	"strconv"
	"syscall"

	"github.com/acme/analytics/pkg/flagenv"
	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "devbroker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("devbroker", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9092", "listen address; the broker always binds 127.0.0.1")
	dataDir := fs.String("data-dir", "", "directory that keeps topics and offsets across restarts (empty: in memory)")
	partitions := fs.Int("default-partitions", 8, "partitions of topics created without an explicit count")
	if err := flagenv.Parse(fs, "DEVBROKER", args); err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr %q is not host:port: %w", *addr, err)
	}
	if host != "127.0.0.1" && host != "localhost" {
		return fmt.Errorf("-addr host must be 127.0.0.1: the development broker only serves loopback")
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("-addr port %q is not a port number", portStr)
	}
	opts := []kfake.Opt{kfake.Ports(port), kfake.DefaultNumPartitions(*partitions), kfake.ClusterID("analytics-dev")}
	if *dataDir != "" {
		if err := os.MkdirAll(*dataDir, 0o755); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start broker on %s: %w", *addr, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("kafka broker listening", slog.Any("addrs", c.ListenAddrs()), slog.String("data_dir", *dataDir))
	<-ctx.Done()
	c.Close() // flushes persisted state
	log.Info("kafka broker stopped")
	return nil
}
