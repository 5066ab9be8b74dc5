package simulate

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// LiveConfig shapes live traffic: visitors browsing the property now, for
// the demo's realtime view. Nothing says what reports must show for it: it
// is not for the acceptance tests, and a property that gets it has reports
// that are not a plan's Expectation.
type LiveConfig struct {
	// Visitors is how many browse at once: each slot has one visitor at a
	// time, and the next comes a few seconds after one leaves.
	Visitors int
	// Seed seeds the visitors; hit IDs are prefixed with it, so two runs
	// with the same merchant need different seeds.
	Seed uint64
	// Host is the property's hostname, as in Config (www.shop.example
	// when empty).
	Host string
	// Speed is how many times faster than a plan's visits live visits go
	// (DefaultLiveSpeed when 0). At 5, pages are 4 seconds to a minute
	// apart; tests use a large speed.
	Speed float64
}

// DefaultLiveSpeed makes a plan's visit (pages 20 seconds to 5 minutes
// apart) a live one of pages some seconds to a minute apart: a visitor's
// whole visit fits the realtime view's 5-minute count.
const DefaultLiveSpeed = 5

// PlayLive sends live visitors' hits to collection through the gateway
// until ctx ends, and returns what it sent. A live visitor is drawn as a
// plan's are (browser and device, source and campaign, pages, events,
// engagement pings, one in 25 a bot), for one ordinary visit starting
// now, its times shortened by cfg.Speed. Each hit is sent at its own time
// and without a queue time, so collection dates it when it receives it;
// there are no late or malformed hits. A hit that fails for good is
// logged and the visitor goes on.
func PlayLive(ctx context.Context, client *http.Client, m *Merchant, cfg LiveConfig, log *slog.Logger) Result {
	if cfg.Host == "" {
		cfg.Host = defaultHost
	}
	if cfg.Speed <= 0 {
		cfg.Speed = DefaultLiveSpeed
	}
	res := Result{Started: time.Now()}
	var wg sync.WaitGroup
	for slot := range cfg.Visitors {
		wg.Go(func() {
			p := &planner{
				cfg: Config{Seed: cfg.Seed, Host: cfg.Host},
				rng: rand.New(rand.NewPCG(cfg.Seed, uint64(slot))),
				ids: fmt.Sprintf("l%d.%d", cfg.Seed, slot),
			}
			for n := 0; ; n++ {
				// Visitors arrive apart, the first ones too.
				sleepUntil(ctx, time.Now().Add(time.Duration(float64(time.Duration(5+p.rng.IntN(145))*time.Second)/cfg.Speed)))
				if ctx.Err() != nil {
					return
				}
				for i, hits := 0, p.liveVisit(n*cfg.Visitors+slot, cfg.Speed); i < len(hits) && ctx.Err() == nil; {
					var req []Hit
					req, i = nextRequest(hits, i)
					sleepUntil(ctx, req[0].At)
					if err := res.send(ctx, client, m, req, nil); err != nil {
						log.Warn("live hit not sent", slog.String("cid", req[0].Params.Get("cid")), slog.Any("error", err))
					}
				}
			}
		})
	}
	wg.Wait()
	return res
}

// liveVisit plans visitor v's visit, starting now and speed times shorter
// than a plan's.
func (p *planner) liveVisit(v int, speed float64) []Hit {
	b := p.browser(v)
	src := p.source()
	now := time.Now()
	visit := p.session(src, now, ordinary)
	for i := range visit {
		visit[i].t = now.Add(time.Duration(float64(visit[i].t.Sub(now)) / speed))
	}
	p.hits = p.hits[:0]
	p.emit(b, src, visit)
	return p.hits
}
