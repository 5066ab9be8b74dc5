// Command collection runs the collection service: it validates and enriches hits and queues them in Kafka.
package main

import (
	"context"
	"os"

	"github.com/acme/analytics/collection-svc/internal/collection"
	"github.com/acme/analytics/pkg/service"
)

func main() {
	var cfg collection.Config
	service.Main("collection", "COLLECTION", &cfg, func(ctx context.Context) error { return collection.Run(ctx, cfg, os.Stderr) })
}
