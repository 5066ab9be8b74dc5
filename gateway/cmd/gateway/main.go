// Command gateway runs the gateway: the single entry point that checks JWTs and routes to healthy upstreams found in Consul.
package main

import (
	"context"
	"os"

	"github.com/acme/analytics/gateway/internal/gateway"
	"github.com/acme/analytics/pkg/service"
)

func main() {
	var cfg gateway.Config
	service.Main("gateway", "GATEWAY", &cfg, func(ctx context.Context) error { return gateway.Run(ctx, cfg, os.Stderr) })
}
