// Command acquisition runs the acquisition report service: how users arrive.
package main

import (
	"context"
	"os"

	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/report-svc/internal/acquisition"
)

func main() {
	var cfg acquisition.Config
	service.Main("acquisition", "ACQUISITION", &cfg, func(ctx context.Context) error { return acquisition.Run(ctx, cfg, os.Stderr) })
}
