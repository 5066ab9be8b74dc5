package api_test

import (
	"cmp"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/acme/analytics/report-svc/internal/reporttest"
)

type named struct {
	Page      string `json:"page"`
	Source    string `json:"source"`
	Pageviews int64  `json:"pageviews"`
}

type realtimeBody struct {
	ActiveUsers5m  uint64 `json:"active_users_5m"`
	ActiveUsers30m uint64 `json:"active_users_30m"`
	PerMinute      []struct {
		Minute    string `json:"minute"`
		Pageviews int64  `json:"pageviews"`
	} `json:"per_minute"`
	TopPages   []named `json:"top_pages"`
	TopSources []named `json:"top_sources"`
	Stale      bool    `json:"stale"`
}

func decodeRealtime(t *testing.T, body []byte) realtimeBody {
	t.Helper()
	var r realtimeBody
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode realtime: %v\n%s", err, body)
	}
	return r
}

type realtimeWant struct {
	users5, users30 uint64
	perMinute       []int64
	pages, sources  []named
}

// expectRealtime computes the realtime view from the sessions' pageviews:
// the 30 UTC minutes up to the data set's now, top lists over the last
// window minutes.
func expectRealtime(ds *reporttest.Dataset, window, limit int) realtimeWant {
	current := ds.Now.UTC().Truncate(time.Minute)
	w := realtimeWant{perMinute: make([]int64, 30)}
	u5, u30 := map[string]bool{}, map[string]bool{}
	pages, sources := map[string]int64{}, map[string]int64{}
	for _, s := range ds.Sessions {
		for _, pv := range s.Pageviews {
			age := int(current.Sub(pv.At.UTC().Truncate(time.Minute)) / time.Minute)
			if age < 0 || age >= 30 {
				continue
			}
			w.perMinute[29-age]++
			u30[s.Client] = true
			if age < 5 {
				u5[s.Client] = true
			}
			if age < window {
				pages[pv.Path]++
				sources[s.Source]++
			}
		}
	}
	w.users5, w.users30 = uint64(len(u5)), uint64(len(u30))
	toList := func(m map[string]int64, page bool) []named {
		var out []named
		for k, v := range m {
			n := named{Pageviews: v}
			if page {
				n.Page = k
			} else {
				n.Source = k
			}
			out = append(out, n)
		}
		slices.SortFunc(out, func(a, b named) int {
			if c := cmp.Compare(b.Pageviews, a.Pageviews); c != 0 {
				return c
			}
			return cmp.Compare(a.Page+a.Source, b.Page+b.Source)
		})
		if len(out) > limit {
			out = out[:limit]
		}
		return out
	}
	w.pages, w.sources = toList(pages, true), toList(sources, false)
	return w
}
