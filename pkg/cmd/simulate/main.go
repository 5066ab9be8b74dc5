// Command simulate creates a merchant through the public API and plays
// realistic traffic through the gateway: the local stack's demo traffic,
// and the traffic of the acceptance test and the benchmark. With -expect it
// writes what every report must say (computed from the plan, independently
// of the pipeline) as JSON. With -live it also has visitors browsing in
// real time until stopped, for the demo's realtime view; nothing is
// expected of them, so -live and -expect do not go together.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/pkg/simulate"
)

type config struct {
	gateway  string
	email    string
	seed     uint64
	visitors int
	duration time.Duration
	window   time.Duration
	workers  int
	expect   string
	loop     bool
	live     int
}

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.gateway, "gateway", "http://127.0.0.1:8080", "gateway base URL")
	fs.StringVar(&c.email, "email", "", "merchant e-mail to sign up with (default: a new one per run)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the traffic plan (same seed, same traffic)")
	fs.IntVar(&c.visitors, "visitors", 200, "visitors per plan")
	fs.DurationVar(&c.duration, "duration", 2*time.Minute, "how long playing one plan takes")
	fs.DurationVar(&c.window, "window", 3*time.Hour, "how much past time one plan covers (at most 3h30m: hits older than 4h are refused)")
	fs.IntVar(&c.workers, "workers", 8, "concurrent requests")
	fs.StringVar(&c.expect, "expect", "", "write the expected reports of the plan to this JSON file")
	fs.BoolVar(&c.loop, "loop", false, "play new plans (seed+1, seed+2...) until stopped: demo traffic")
	fs.IntVar(&c.live, "live", 0, "also have this many visitors browsing now, until stopped, beside the plans "+
		"(each hit sent as it happens, with no queue time; pages some seconds to a minute apart): demo traffic for the realtime view. "+
		"No expectation is computed for them, so not with -expect")
}

func (c *config) Validate() error {
	switch {
	case c.visitors < 1:
		return errors.New("-visitors must be at least 1")
	case c.window <= 0 || c.window > 3*time.Hour+30*time.Minute:
		return errors.New("-window must be between 0 and 3h30m")
	case c.workers < 1:
		return errors.New("-workers must be at least 1")
	case c.live < 0:
		return errors.New("-live must be 0 or more")
	case c.live > 0 && c.expect != "":
		return errors.New("-live with -expect: the live visitors' hits would be in the reports the plan's expectation is compared with; leave one out")
	}
	return nil
}

func main() {
	var cfg config
	service.Main("simulate", "SIMULATE", &cfg, func(ctx context.Context) error { return run(ctx, cfg) })
}

func run(ctx context.Context, cfg config) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	client := &http.Client{Timeout: 30 * time.Second}
	email := cfg.email
	if email == "" {
		email = fmt.Sprintf("sim-%d@shop.example", time.Now().UnixNano())
	}
	pcfg := simulate.Config{Seed: cfg.seed, Visitors: cfg.visitors, End: time.Now(), Window: cfg.window, ExcludedCIDR: "203.0.113.0/24"}
	plan := simulate.New(pcfg)
	m, err := signUpWithRetry(ctx, client, cfg.gateway, email, plan.Config, log)
	if err != nil {
		return err
	}
	log.Info("merchant ready", slog.String("email", email), slog.String("password", simulate.Password), slog.String("tracking_id", m.TrackingID), slog.String("property_id", m.PropertyID))
	g, ctx := errgroup.WithContext(ctx)
	if cfg.live > 0 {
		g.Go(func() error {
			log.Info("live visitors browsing", slog.Int("visitors", cfg.live))
			// A seed of its own each run: its hit IDs must not repeat
			// those of an earlier run for the same merchant (-email).
			live := simulate.LiveConfig{Visitors: cfg.live, Seed: uint64(time.Now().UnixNano()), Host: plan.Config.Host}
			res := simulate.PlayLive(ctx, client, m, live, log)
			log.Info("live visitors stopped", slog.Int64("sent", res.Sent), slog.Int64("accepted", res.Accepted),
				slog.Int64("rejected", res.Rejected), slog.Int64("failed", res.Failed))
			return nil
		})
	}
	g.Go(func() error { return playPlans(ctx, cfg, client, m, pcfg, plan, log) })
	return g.Wait()
}

// playPlans plays plan, then with -loop new ones until ctx ends.
func playPlans(ctx context.Context, cfg config, client *http.Client, m *simulate.Merchant, pcfg simulate.Config, plan *simulate.Plan, log *slog.Logger) error {
	for {
		res, err := simulate.Play(ctx, client, m, plan, cfg.duration, cfg.workers)
		log.Info("played", slog.Uint64("seed", plan.Config.Seed), slog.Int64("sent", res.Sent), slog.Int64("accepted", res.Accepted),
			slog.Int64("rejected", res.Rejected), slog.Int64("failed", res.Failed))
		if err != nil && ctx.Err() == nil {
			return err
		}
		if cfg.expect != "" {
			if err := writeJSON(cfg.expect, map[string]any{"merchant": m, "expect": plan.Rebased(res.Started).Expect}); err != nil {
				return err
			}
		}
		if !cfg.loop || ctx.Err() != nil {
			return nil
		}
		pcfg.Seed++
		pcfg.End = time.Now()
		pcfg.Location = plan.Config.Location // the property's zone stays
		plan = simulate.New(pcfg)
	}
}

// signUpWithRetry waits for the stack to be ready: right after start-up the
// gateway may not see config-svc in Consul yet.
func signUpWithRetry(ctx context.Context, client *http.Client, gateway, email string, cfg simulate.Config, log *slog.Logger) (*simulate.Merchant, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		m, err := simulate.SignUp(ctx, client, gateway, email, cfg)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return m, err
		}
		log.Info("waiting for the gateway and config-svc", slog.Any("error", err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
