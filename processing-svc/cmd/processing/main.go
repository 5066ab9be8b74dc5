// Command processing runs the processing service: it turns the hit stream into sessions, users, pageviews, events and report rollups.
package main

import (
	"context"
	"os"

	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/processing-svc/internal/processing"
)

func main() {
	var cfg processing.Config
	service.Main("processing", "PROCESSING", &cfg, func(ctx context.Context) error { return processing.Run(ctx, cfg, os.Stderr) })
}
