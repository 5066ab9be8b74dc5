// Command migrate applies pending Cassandra schema migrations (cql/) and
// exits. Production runs it as a one-shot job before rolling out services;
// it is safe to run concurrently with itself and to run again.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/logging"
	"github.com/acme/analytics/pkg/migrate"
	"github.com/acme/analytics/pkg/service"
)

type config struct {
	Cassandra cassandra.Config
	Log       logging.Config
}

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	c.Cassandra.RegisterFlags(fs)
	c.Log.RegisterFlags(fs)
}

func (c *config) Validate() error {
	if err := c.Cassandra.Validate(); err != nil {
		return err
	}
	return c.Log.Validate()
}

func main() {
	var cfg config
	service.Main("migrate", "MIGRATE", &cfg, func(ctx context.Context) error {
		log := logging.New(cfg.Log, os.Stderr)
		// One attempt, unlike the services (migrate.Open): the Job's
		// restarts and its failure are what show an outage here.
		applied, err := migrate.Up(ctx, &cfg.Cassandra, log)
		if err != nil {
			return err
		}
		log.Info("migrations done", slog.Int("applied", len(applied)))
		return nil
	})
}
