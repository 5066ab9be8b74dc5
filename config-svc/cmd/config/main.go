// Command config runs the config service: merchants, properties, tracking IDs, credentials and per-tenant rules.
package main

import (
	"context"
	"os"

	"github.com/acme/analytics/config-svc/internal/config"
	"github.com/acme/analytics/pkg/service"
)

func main() {
	var cfg config.Config
	service.Main("config", "CONFIG", &cfg, func(ctx context.Context) error { return config.Run(ctx, cfg, os.Stderr) })
}
