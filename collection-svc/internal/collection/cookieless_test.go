package collection

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	dto "github.com/prometheus/client_model/go"
)

// testClock is a clock tests move forward.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// cookielessBatch is a batch of one pageview without a client ID.
func cookielessBatch(hid string) string {
	return `{"hits":[{"t":"pageview","dl":"https://any.example/a","hid":"` + hid + `"}]}`
}

// cookieBatch is a batch of one pageview with the client ID of a tracker
// whose tag lacks data-cookieless.
func cookieBatch(hid string) string {
	return `{"hits":[{"cid":"c-cookie","t":"pageview","dl":"https://any.example/a","hid":"` + hid + `"}]}`
}

// TestCookielessVisitorAcrossInstancesAndDays: two collection instances,
// each with its own configclient on one config-svc, give one visitor of a
// cookieless property one ID on a day, and both another the next day,
// whether its hits carry a client ID (a tag without data-cookieless) or
// not; each fetches a date's salt once.
func TestCookielessVisitorAcrossInstancesAndDays(t *testing.T) {
	clock := &testClock{}
	salts := newSaltServer(t, clock.now)
	a := newEnv(t, envOptions{salts: salts, now: clock.now})
	b := newEnv(t, envOptions{salts: salts, now: clock.now})
	hitsA, hitsB := a.read(hit.TopicHits), b.read(hit.TopicHits)
	visitorOf := func(e *env, hits *topicReader, hid, batch string) string {
		t.Helper()
		resp, body := e.do("POST", "/collect?tid="+tidCookieless, "text/plain;charset=UTF-8", batch, "203.0.113.50", "")
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s: %d %s", hid, resp.StatusCode, body)
		}
		h := hitsOf(t, hits.waitFor(t, 1, hasHID(hid)))[0]
		if !h.Cookieless || len(h.ClientID) != 36 {
			t.Fatalf("%s: client ID %q, cookieless %v; want a ckl- ID", hid, h.ClientID, h.Cookieless)
		}
		return h.ClientID
	}
	visitor := func(e *env, hits *topicReader, hid string) string {
		t.Helper()
		return visitorOf(e, hits, hid, cookielessBatch(hid))
	}

	dayA, dayB := visitor(a, hitsA, "day1-a"), visitor(b, hitsB, "day1-b")
	if dayA != dayB {
		t.Fatalf("one visitor, one day, two instances: %s and %s", dayA, dayB)
	}
	if again := visitor(a, hitsA, "day1-a2"); again != dayA {
		t.Fatalf("the same visitor later that day: %s, want %s", again, dayA)
	}
	if cookie := visitorOf(b, hitsB, "day1-cookie", cookieBatch("day1-cookie")); cookie != dayA {
		t.Fatalf("the same visitor with a client ID: %s, want %s (the property's setting decides)", cookie, dayA)
	}

	clock.advance(24 * time.Hour)
	nextA, nextB := visitor(a, hitsA, "day2-a"), visitor(b, hitsB, "day2-b")
	if nextA != nextB {
		t.Fatalf("one visitor, the next day, two instances: %s and %s", nextA, nextB)
	}
	if nextA == dayA {
		t.Fatalf("the visitor kept its ID %s into the next day", dayA)
	}
	if cookie := visitorOf(a, hitsA, "day2-cookie", cookieBatch("day2-cookie")); cookie != nextA {
		t.Fatalf("the visitor with the client ID it had the day before: %s, want %s", cookie, nextA)
	}

	// A request's dates are those of its receipt and of 4 hours before;
	// each instance asked for each once.
	for day, n := range salts.Requests() {
		if n != 2 {
			t.Errorf("the salt of %s was fetched %d times by two instances, want once each (%v)", day, n, salts.Requests())
		}
	}
}

// TestCookielessWithoutSaltAnswers503: while config-svc cannot give the
// day's salt (and none is cached), a cookieless property's browser
// request, with client IDs or not, is answered 503, to be retried, and
// nothing of it is queued or dead-lettered; once config-svc answers, the
// retries are taken.
func TestCookielessWithoutSaltAnswers503(t *testing.T) {
	salts := newSaltServer(t, time.Now)
	salts.SetDown(true)
	e := newEnv(t, envOptions{salts: salts})
	hits, dead := e.read(hit.TopicHits), e.read(hit.TopicDeadLetter)
	const body = `{"hits":[{"t":"pageview","dl":"https://any.example/a","hid":"h-503"},{"t":"bogus","hid":"h-503-bad"}]}`

	for range 2 {
		resp, b := e.do("POST", "/collect?tid="+tidCookieless, "text/plain;charset=UTF-8", body, "203.0.113.50", "")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("batch without a salt: %d %s; want 503 with Retry-After", resp.StatusCode, b)
		}
	}
	resp, b := e.do("GET", "/collect?v=1&tid="+tidCookieless+"&t=pageview&dl=https%3A%2F%2Fany.example%2F&hid=h-503-pixel", "", "", "203.0.113.50", "")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("pixel without a salt: %d %q; want 503 with the image", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if n := counterSum(t, e, "collection_hits_rejected_total"); n != 0 {
		t.Fatalf("%v hits rejected (and dead-lettered) while the salt was unavailable, want none", n)
	}
	// Its browser hits with client IDs need the salt too: the IDs are
	// ignored.
	const withCID = `{"hits":[{"cid":"c-own","t":"pageview","dl":"https://any.example/","hid":"h-cid"}]}`
	resp, b = e.do("POST", "/collect?tid="+tidCookieless, "text/plain;charset=UTF-8", withCID, "203.0.113.50", "")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("hits with client IDs while the salt is unavailable: %d %s; want 503", resp.StatusCode, b)
	}

	salts.SetDown(false)
	resp, b = e.do("POST", "/collect?tid="+tidCookieless, "text/plain;charset=UTF-8", body, "203.0.113.50", "")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the retry: %d %s; want 400 for its bogus hit, the other stored", resp.StatusCode, b)
	}
	if resp, b = e.do("POST", "/collect?tid="+tidCookieless, "text/plain;charset=UTF-8", withCID, "203.0.113.50", ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("the retry of the hit with a client ID: %d %s", resp.StatusCode, b)
	}
	hits.waitFor(t, 1, hasHID("h-503"))
	dead.waitFor(t, 1, func(m *sarama.ConsumerMessage) bool { return deadLetterOf(t, m).Reason == "malformed" })
	if n := counterSum(t, e, "collection_hits_rejected_total"); n != 1 {
		t.Fatalf("%v hits rejected in all, want only the retry's bogus one", n)
	}
	// Everything stored: the retries, both of one visitor (the pixel
	// answered 503 is not).
	stored := hitsOf(t, hits.waitFor(t, 2, func(*sarama.ConsumerMessage) bool { return true }))
	if len(stored) != 2 || stored[0].ID == stored[1].ID || stored[0].ClientID != stored[1].ClientID || !stored[0].Cookieless {
		t.Fatalf("%d hits stored (%+v), want the retries, both of one cookieless visitor", len(stored), stored)
	}
	for _, h := range stored {
		if h.ID != h.DeriveID("h-cid") && h.ID != h.DeriveID("h-503") {
			t.Fatalf("stored a hit %+v, want only h-cid and h-503", h)
		}
	}
}

// counterSum returns the sum of a counter's series in e's registry, of
// those with the labels given as pairs (name, value, ...) when there are.
func counterSum(t *testing.T, e *env, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m.GetLabel(), labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// hasLabels reports whether a metric's labels include every name and
// value of the pairs (name, value, name, value...).
func hasLabels(have []*dto.LabelPair, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, l := range have {
			found = found || l.GetName() == pairs[i] && l.GetValue() == pairs[i+1]
		}
		if !found {
			return false
		}
	}
	return true
}

// recordingSalts records the dates asked for, and has a salt for each.
type recordingSalts struct {
	mu    sync.Mutex
	asked []string
}

func (r *recordingSalts) CookielessSalt(_ context.Context, day string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, day)
	return make([]byte, 32), nil
}

func (r *recordingSalts) dates() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.asked)
}

// TestPrefetchSalts: the prefetcher asks for yesterday's, today's and
// tomorrow's salts (UTC) at once and again at every tick, and stops with
// its context.
func TestPrefetchSalts(t *testing.T) {
	src := &recordingSalts{}
	kiritimati, err := time.LoadLocation("Pacific/Kiritimati")
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return time.Date(2026, 12, 6, 1, 0, 0, 0, kiritimati) } // 11:00 UTC on the 5th
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		prefetchSalts(ctx, src, now, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	}()
	eventually.NoError(t, 5*time.Second, "two rounds of salt requests", func() error {
		if d := src.dates(); len(d) < 6 {
			return fmt.Errorf("asked for %v", d)
		}
		return nil
	})
	cancel()
	<-done
	want := []string{"2026-12-04", "2026-12-05", "2026-12-06"}
	if got := src.dates(); !slices.Equal(got[:3], want) || !slices.Equal(got[3:6], want) {
		t.Fatalf("asked for %v; want %v each round", got, want)
	}
}
