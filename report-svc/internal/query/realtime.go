package query

import (
	"cmp"
	"context"
	"fmt"
	"github.com/acme/analytics/pkg/sketch"
	"slices"
	"strconv"
	"time"
)

// RealtimeWindow is how far back the realtime view looks, in minutes.
const RealtimeWindow = 30

// realtimeCacheTTL is how long an identical realtime query is answered
// from the cache: the realtime rows change with every processing flush.
const realtimeCacheTTL = time.Second

// Realtime is the realtime view of a property: the last RealtimeWindow
// one-minute buckets (UTC minutes of hit time, the current minute
// included).
type Realtime struct {
	Now            time.Time
	ActiveUsers5m  uint64 // distinct users with a hit (pageview, event, ping) in the last 5 minutes
	ActiveUsers30m uint64 // ... in the last 30 minutes
	UsersEstimated bool
	Pageviews      int64         // pageviews in the window used for the top lists
	Minutes        []MinuteCount // RealtimeWindow entries, oldest first
	TopPages       []NamedCount  // by pageviews in the window, largest first
	TopSources     []NamedCount  // by pageviews of sessions from each source
	Window         int           // minutes of the top lists
	Freshness      Freshness
}

// MinuteCount is the pageviews of one minute.
type MinuteCount struct {
	Minute    time.Time
	Pageviews int64
}

// NamedCount is a page's or a source's pageviews.
type NamedCount struct {
	Name      string
	Pageviews int64
}

// RealtimeAnswer is a realtime view as served.
type RealtimeAnswer struct {
	*Realtime
	Cached   bool
	Stale    bool
	Fallback string
}

// Realtime answers the realtime view of p; window (1 to RealtimeWindow) is
// the minutes the top lists cover, limit their length.
func (e *Engine) Realtime(ctx context.Context, p Property, window, limit int) (*RealtimeAnswer, error) {
	key := "realtime|" + p.ID.String() + "|" + strconv.Itoa(window) + "|" + strconv.Itoa(limit)
	now := e.now()
	c, ok := e.results.get(key, now)
	if ok && now.Before(c.freshUntil) {
		e.m.results.WithLabelValues("cache").Inc()
		return &RealtimeAnswer{Realtime: c.rt, Cached: true}, nil
	}
	wctx, cancel := e.waitLimit(ctx)
	defer cancel()
	v, err := e.do(wctx, &e.resultSF, key, func() (any, error) {
		cctx, cancel := e.shared(wctx)
		defer cancel()
		rt, err := e.realtime(cctx, p, window, limit)
		if err != nil {
			return nil, err
		}
		e.results.put(key, &cached{rt: rt, freshUntil: rt.Now.Add(min(realtimeCacheTTL, e.cfg.CacheTTL))}, rt.size(), rt.Now.Add(e.cfg.StaleMaxAge))
		return rt, nil
	})
	if err == nil {
		e.m.results.WithLabelValues("computed").Inc()
		return &RealtimeAnswer{Realtime: v.(*Realtime)}, nil
	}
	if ok {
		if reason := e.staleReason(err, c.rt.Now); reason != "" {
			e.m.results.WithLabelValues("stale").Inc()
			return &RealtimeAnswer{Realtime: c.rt, Cached: true, Stale: true, Fallback: reason}, nil
		}
	}
	e.countFailure(ctx, err)
	return nil, err
}

func (e *Engine) realtime(ctx context.Context, p Property, window, limit int) (*Realtime, error) {
	now := e.now()
	current := now.UTC().Truncate(time.Minute)
	first := current.Add(-(RealtimeWindow - 1) * time.Minute)
	rows, err := e.store.Realtime(ctx, p.ID, first)
	if err != nil {
		return nil, err
	}
	rt := &Realtime{Now: now, Window: window}
	for i := range RealtimeWindow {
		rt.Minutes = append(rt.Minutes, MinuteCount{Minute: first.Add(time.Duration(i) * time.Minute)})
	}
	var users5, users30 sketch.Union
	pages, srcs := map[string]int64{}, map[string]int64{}
	var newest time.Time
	for _, r := range rows {
		age := int(current.Sub(r.Minute.UTC()) / time.Minute)
		if age < 0 || age >= RealtimeWindow {
			continue // a clock ahead of ours, or older than asked
		}
		rt.Minutes[RealtimeWindow-1-age].Pageviews += r.Pageviews
		s, err := sketch.DecodeUnion(r.Users)
		if err != nil {
			return nil, fmt.Errorf("realtime users of %s: %w", r.Minute.UTC().Format(time.RFC3339), err)
		}
		if (r.Pageviews != 0 || !s.Empty()) && r.Minute.After(newest) {
			newest = r.Minute
		}
		users30.Merge(&s)
		if age < 5 {
			users5.Merge(&s)
		}
		if age < window {
			rt.Pageviews += r.Pageviews
			for k, n := range r.Pages {
				pages[k] += n
			}
			for k, n := range r.Sources {
				srcs[k] += n
			}
		}
	}
	rt.ActiveUsers5m, rt.ActiveUsers30m = users5.Count(), users30.Count()
	rt.UsersEstimated = !users30.Exact()
	rt.TopPages, rt.TopSources = top(pages, limit), top(srcs, limit)
	if newest.IsZero() {
		newest = e.newestActivity(ctx, p, now)
	}
	rt.Freshness = Freshness{CompleteUpTo: now.Add(-e.cfg.ProcessingDelay), NewestActivity: newest, ComputedAt: now}
	return rt, nil
}

// size estimates the memory a realtime view holds, for the cache bound:
// its top lists are up to twice limit names, of any length.
func (rt *Realtime) size() int64 {
	n := int64(512 + 32*len(rt.Minutes))
	for _, l := range [][]NamedCount{rt.TopPages, rt.TopSources} {
		for _, c := range l {
			n += 32 + int64(len(c.Name))
		}
	}
	return n
}

// top returns the n largest counts, ties by name; zero counts are left out.
func top(m map[string]int64, n int) []NamedCount {
	out := make([]NamedCount, 0, len(m))
	for k, v := range m {
		if v > 0 {
			out = append(out, NamedCount{k, v})
		}
	}
	slices.SortFunc(out, func(a, b NamedCount) int {
		if c := cmp.Compare(b.Pageviews, a.Pageviews); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
