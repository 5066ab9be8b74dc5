package api_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/acme/analytics/report-svc/internal/reporttest"
	"github.com/gocql/gocql"
)

// The benchmark's property: 10 million hits over 90 days (about 111,000 a
// day, 28,000 sessions), with realistic numbers of dimension values (500
// pages, 300 sources, 400 referrers, 100 countries, 300 event labels) and
// two processing shards.
const (
	benchHits   = 10_000_000
	benchDays   = 90
	benchShards = 2
)

// zipf draws 0..n-1 with probability proportional to 1/(i+1)^s.
type zipf struct{ cum []float64 }

func newZipf(n int, s float64) *zipf {
	z := &zipf{cum: make([]float64, n)}
	t := 0.0
	for i := range n {
		t += 1 / math.Pow(float64(i+1), s)
		z.cum[i] = t
	}
	for i := range z.cum {
		z.cum[i] /= t
	}
	return z
}

func (z *zipf) draw(r *rand.Rand) int { return sort.SearchFloat64s(z.cum, r.Float64()) }

type benchTouch struct{ channel, source, medium, campaign string }

// benchRows writes the rollup rows that benchHits over benchDays ending
// yesterday (in the data set's time zone) would produce, one day at a
// time, and returns the number of hits and rows.
func benchRows(ctx context.Context, s *gocql.Session, ds *reporttest.Dataset) (hits, rows, sessions, users int64, err error) {
	rng := rand.New(rand.NewPCG(42, 4242))
	var touches []benchTouch
	touches = append(touches,
		benchTouch{"Direct", "(direct)", "(none)", "(direct)"},
		benchTouch{"Organic Search", "google", "organic", "(organic)"},
		benchTouch{"Paid Search", "google", "cpc", ""},
		benchTouch{"Organic Search", "bing", "organic", "(organic)"},
		benchTouch{"Organic Social", "facebook.com", "referral", "(referral)"},
		benchTouch{"Email", "newsletter", "email", ""},
		benchTouch{"Paid Social", "facebook", "paid_social", ""},
		benchTouch{"Organic Search", "duckduckgo", "organic", "(organic)"},
		benchTouch{"Display", "adnetwork", "display", ""},
		benchTouch{"Affiliates", "partner", "affiliate", ""},
	)
	for i := len(touches); i < 300; i++ {
		touches = append(touches, benchTouch{"Referral", fmt.Sprintf("site-%03d.example", i), "referral", "(referral)"})
	}
	pickTouch, pickPage, pickCountry := newZipf(len(touches), 1.1), newZipf(500, 1.0), newZipf(100, 1.2)
	pickBrowser, pickOS, pickCampaign := newZipf(15, 1.3), newZipf(10, 1.2), newZipf(50, 1.0)
	pickCat, pickAct, pickLabel := newZipf(10, 1.0), newZipf(5, 1.0), newZipf(6, 1.0)
	devices := []string{"desktop", "mobile", "mobile", "tablet", "other"}
	pages := make([]string, 500)
	for i := range pages {
		pages[i] = fmt.Sprintf("/section-%02d/page-%03d", i%25, i)
	}
	pages[0] = "/"

	loc := ds.Location
	today := time.Date(ds.Now.In(loc).Year(), ds.Now.In(loc).Month(), ds.Now.In(loc).Day(), 0, 0, 0, 0, time.UTC)
	perDay := float64(benchHits) / benchDays
	var nextUser int64
	seenUsers := map[int64]bool{}
	for d := benchDays; d >= 1; d-- {
		day := today.AddDate(0, 0, -d)
		r := &reporttest.Rows{Daily: map[reporttest.DailyKey]*reporttest.Cell{}, Hourly: map[reporttest.HourKey]*reporttest.Cell{}}
		cell := func(k reporttest.DailyKey) *reporttest.Cell {
			c := r.Daily[k]
			if c == nil {
				c = &reporttest.Cell{}
				r.Daily[k] = c
			}
			return c
		}
		// Weekends are quieter.
		target := perDay * (1 + 0.15*math.Cos(float64(day.Weekday())*2*math.Pi/7))
		var dayHits float64
		for dayHits < target {
			var user int64
			if rng.IntN(10) < 7 || nextUser < 1000 {
				user, nextUser = nextUser, nextUser+1
			} else {
				user = max(0, nextUser-200_000) + rng.Int64N(min(nextUser, 200_000))
			}
			client := fmt.Sprintf("%d.%d", user, user*7919%100_000)
			h := sketch.Hash(client)
			shard := int(user % benchShards)
			isNew := !seenUsers[user]
			seenUsers[user] = true
			t := touches[pickTouch.draw(rng)]
			if t.campaign == "" {
				t.campaign = fmt.Sprintf("campaign-%02d", pickCampaign.draw(rng))
			}
			referrer := "(none)"
			if t.medium == "referral" {
				referrer = t.source + fmt.Sprintf("/path-%d", rng.IntN(2))
			}
			npv := 1
			for npv < 30 && rng.IntN(3) < 2 {
				npv++
			}
			var sess rollup.Metrics
			sess.Sessions, sess.Pageviews = 1, int64(npv)
			landing := pages[pickPage.draw(rng)]
			path := landing
			viewed := map[string]bool{}
			var duration int64
			for i := range npv {
				if i > 0 {
					path = pages[pickPage.draw(rng)]
				}
				m := rollup.Metrics{Pageviews: 1}
				if i < npv-1 {
					gap := int64(5_000 + rng.IntN(120_000))
					duration += gap
					m.TimeOnPageMS, m.TimeOnPageViews = gap, 1
				}
				if !viewed[path] {
					viewed[path] = true
					m.UniquePageviews = 1
				}
				cell(reporttest.DailyKey{Day: day, Report: rollup.Page, Dimension: path, Shard: shard}).Metrics.Add(m, 1)
			}
			nev := 0
			for nev < 5 && rng.IntN(5) < 2 {
				nev++
			}
			seen := map[string]bool{}
			for range nev {
				c := pickCat.draw(rng)
				cat, act := fmt.Sprintf("category-%d", c), fmt.Sprintf("action-%d", pickAct.draw(rng))
				label := fmt.Sprintf("label-%d", pickLabel.draw(rng))
				value := float64(rng.IntN(3))
				for _, k := range []string{cat, rollup.JoinDimension(cat, act), rollup.JoinDimension(cat, act, label)} {
					report := map[int]string{1: rollup.EventCategory, 2: rollup.EventAction, 3: rollup.Event}[strings.Count(k, rollup.Separator)+1]
					m := rollup.Metrics{Events: 1, EventValue: value}
					if !seen[k] {
						seen[k] = true
						m.UniqueEvents = 1
					}
					cell(reporttest.DailyKey{Day: day, Report: report, Dimension: k, Shard: shard}).Metrics.Add(m, 1)
				}
				duration += int64(1_000 + rng.IntN(30_000))
			}
			pings := 0
			if npv > 1 || nev > 0 {
				pings = 1
			}
			sess.Events, sess.DurationMS = int64(nev), duration
			if npv == 1 && nev == 0 {
				sess.Bounces = 1
			}
			if rng.IntN(100) < 3 {
				sess.Conversions, sess.ConversionValue = 1, 25
			}
			if duration > 10_000 || npv >= 2 || sess.Conversions > 0 {
				sess.EngagedSessions = 1
			}
			userType := rollup.ReturningUser
			if isNew {
				sess.NewUsers, userType = 1, rollup.NewUser
			}
			entry := rollup.Metrics{Entrances: 1, Sessions: 1, Bounces: sess.Bounces}
			cell(reporttest.DailyKey{Day: day, Report: rollup.Page, Dimension: landing, Shard: shard}).Metrics.Add(entry, 1)
			cell(reporttest.DailyKey{Day: day, Report: rollup.Page, Dimension: path, Shard: shard}).Metrics.Add(rollup.Metrics{Exits: 1}, 1)
			for _, dv := range [...]struct{ report, value string }{
				{rollup.Total, ""}, {rollup.Channel, t.channel},
				{rollup.SourceMedium, rollup.JoinDimension(t.source, t.medium)}, {rollup.Campaign, t.campaign}, {rollup.Referrer, referrer},
				{rollup.LandingPage, landing}, {rollup.Country, fmt.Sprintf("C%02d", pickCountry.draw(rng))},
				{rollup.Device, devices[rng.IntN(len(devices))]}, {rollup.Browser, fmt.Sprintf("browser-%d", pickBrowser.draw(rng))},
				{rollup.OS, fmt.Sprintf("os-%d", pickOS.draw(rng))}, {rollup.UserType, userType},
			} {
				c := cell(reporttest.DailyKey{Day: day, Report: dv.report, Dimension: dv.value, Shard: shard})
				c.Metrics.Add(sess, 1)
				c.Users.AddHash(h)
			}
			hk := reporttest.HourKey{Day: day, Hour: rng.IntN(24), Shard: shard}
			hc := r.Hourly[hk]
			if hc == nil {
				hc = &reporttest.Cell{}
				r.Hourly[hk] = hc
			}
			hc.Metrics.Add(sess, 1)
			hc.Users.AddHash(h)
			dayHits += float64(npv + nev + pings)
			sessions++
			hits += int64(npv + nev + pings)
		}
		if err := reporttest.Write(ctx, s, ds.Property, r); err != nil {
			return 0, 0, 0, 0, err
		}
		rows += int64(len(r.Daily) + len(r.Hourly))
	}
	return hits, rows, sessions, nextUser, nil
}

// startCQLServer builds pkg/cmd/cqlserver and runs it on a free loopback
// port until the benchmark ends.
func startCQLServer(b *testing.B) (string, error) {
	bin := filepath.Join(b.TempDir(), "cqlserver")
	build := exec.Command("go", "build", "-o", bin, "github.com/acme/analytics/pkg/cmd/cqlserver")
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build cqlserver: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-addr="+addr, "-log-level=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	eventually.NoError(b, 30*time.Second, "cqlserver listening on "+addr, func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
	return addr, nil
}

type benchResult struct{ p50, p99, rps float64 }

// benchModes are the cache settings measured (see BenchmarkReports).
var benchModes = []string{"none", "day-cache", "default"}

var (
	benchOnce  sync.Once
	benchEnvs  map[string]*env
	benchTable = map[string]benchResult{}
	benchErr   error
)

// BenchmarkReports measures the 30-day acquisition (channel) and pages
// reports over HTTP at 1, 16 and 64 concurrent clients, in three modes:
// "none" (no cache and no sharing of concurrent identical queries: every
// request reads its 30 day partitions, and 30 of totals, from Cassandra
// and merges them), "day-cache" (final days kept merged in memory, no
// result cache, no sharing: what a load of distinct queries costs) and
// "default" (the production settings: identical queries share one
// computation and are then served from the result cache). It prints a
// table of p50/p99.
//
//	go test -run='^$' -bench=Reports -benchtime=3s ./internal/api/
func BenchmarkReports(b *testing.B) {
	benchOnce.Do(func() {
		start := time.Now()
		// The clock is fixed at noon in the property's time zone, so that
		// the 30 days up to yesterday are all final (past the late-hit
		// horizon) whatever the time the benchmark runs.
		y, m, d := time.Now().In(newYork).Date()
		ds := &reporttest.Dataset{Property: gocql.MustRandomUUID(), Location: newYork, Shards: benchShards,
			Now: time.Date(y, m, d, 12, 0, 0, 0, newYork).UTC()}
		// The CQL server runs in a process of its own, as Cassandra would:
		// in this one its heap (the whole data set) would make every
		// garbage collection of the service's cost its size.
		addr, err := startCQLServer(b)
		if err != nil {
			benchErr = err
			return
		}
		b.Setenv(cqltest.HostsEnv, addr)
		cfg := migratetest.Keyspace(b)
		s, err := cassandra.Connect(cfg)
		if err != nil {
			benchErr = err
			return
		}
		defer s.Close()
		hits, rows, sessions, users, err := benchRows(context.Background(), s, ds)
		if err != nil {
			benchErr = err
			return
		}
		fmt.Fprintf(os.Stderr, "generated and wrote the rollups of %d hits (%d sessions, %d users; %d rows) over %d days in %v\n",
			hits, sessions, users, rows, benchDays, time.Since(start).Round(time.Second))
		benchEnvs = map[string]*env{}
		for _, mode := range benchModes {
			o := defaultOptions()
			o.engine.DayConcurrency = 32
			switch mode {
			case "none":
				o.engine.CacheBytes, o.engine.DayCacheBytes, o.engine.NoCoalesce = 0, 0, true
			case "day-cache":
				o.engine.CacheBytes, o.engine.DayCacheBytes, o.engine.NoCoalesce = 0, 1<<30, true
			case "default":
				o.engine.CacheTTL, o.engine.FinalCacheTTL, o.engine.CacheBytes, o.engine.DayCacheBytes = 5*time.Second, 5*time.Minute, 64<<20, 512<<20
			}
			benchEnvs[mode] = serve(b, ds, nil, cfg, o)
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	reports := []struct{ name, path string }{
		{"acquisition", "/v1/reports/acquisition/channel"},
		{"pages", "/v1/reports/behavior/pages"},
	}
	for _, mode := range benchModes {
		e := benchEnvs[mode]
		for _, rep := range reports {
			for _, clients := range []int{1, 16, 64} {
				name := fmt.Sprintf("%s/%s/clients=%d", rep.name, mode, clients)
				b.Run(name, func(b *testing.B) {
					p := url.Values{"range": {"last_30_days"}}
					// Warm the caches of the modes that have them.
					if status, body, _ := e.get(viewer, rep.path, p); status != http.StatusOK {
						b.Fatalf("status %d: %s", status, body)
					}
					lat := make([]time.Duration, b.N)
					var next atomic.Int64
					var wg sync.WaitGroup
					b.ResetTimer()
					start := time.Now()
					for range clients {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for {
								i := next.Add(1) - 1
								if i >= int64(b.N) {
									return
								}
								t0 := time.Now()
								status, _, _ := e.get(viewer, rep.path, p)
								lat[i] = time.Since(t0)
								if status != http.StatusOK {
									b.Errorf("status %d", status)
								}
							}
						}()
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.StopTimer()
					slices.Sort(lat)
					ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
					res := benchResult{p50: ms(lat[len(lat)/2]), p99: ms(lat[min(len(lat)-1, len(lat)*99/100)]), rps: float64(b.N) / elapsed.Seconds()}
					b.ReportMetric(res.p50, "p50-ms")
					b.ReportMetric(res.p99, "p99-ms")
					b.ReportMetric(res.rps, "req/s")
					benchTable[name] = res
				})
			}
		}
	}
	fmt.Printf("\n%-12s %-10s %8s %10s %10s %10s\n", "report", "cache", "clients", "p50 ms", "p99 ms", "req/s")
	for _, mode := range benchModes {
		for _, rep := range reports {
			for _, clients := range []int{1, 16, 64} {
				r := benchTable[fmt.Sprintf("%s/%s/clients=%d", rep.name, mode, clients)]
				fmt.Printf("%-12s %-10s %8d %10.2f %10.2f %10.0f\n", rep.name, mode, clients, r.p50, r.p99, r.rps)
			}
		}
	}
}
