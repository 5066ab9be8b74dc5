// Command behavior runs the behavior report service: what users do.
package main

import (
	"context"
	"os"

	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/report-svc/internal/behavior"
)

func main() {
	var cfg behavior.Config
	service.Main("behavior", "BEHAVIOR", &cfg, func(ctx context.Context) error { return behavior.Run(ctx, cfg, os.Stderr) })
}
