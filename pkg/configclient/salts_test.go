package configclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// saltServer answers GET /internal/v1/cookieless-salts/{date} as
// config-svc does: a random salt per date, made on the first request, the
// same for every caller after; dates more than a day from today (UTC)
// refused with 400. It can be down (503) or too old to know the route
// (404), and counts the requests for each date.
type saltServer struct {
	*httptest.Server
	mu      sync.Mutex
	salts   map[string][]byte
	fetched map[string]int
	down    bool
	old     bool
}

func newSaltServer(t *testing.T) *saltServer {
	t.Helper()
	s := &saltServer{salts: map[string][]byte{}, fetched: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /internal/v1/cookieless-salts/{date}", s.serve)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *saltServer) serve(w http.ResponseWriter, r *http.Request) {
	day := r.PathValue("date")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetched[day]++
	switch {
	case s.down:
		http.Error(w, `{"error":{"code":"unavailable"}}`, http.StatusServiceUnavailable)
		return
	case s.old:
		http.NotFound(w, r)
		return
	}
	d, err := time.Parse(time.DateOnly, day)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	if err != nil || d.Sub(today) > 24*time.Hour || today.Sub(d) > 24*time.Hour {
		http.Error(w, `{"error":{"code":"invalid_field","field":"date","message":"date: more than one day from today"}}`, http.StatusBadRequest)
		return
	}
	salt, ok := s.salts[day]
	if !ok {
		salt = make([]byte, SaltBytes)
		_, _ = rand.Read(salt)
		s.salts[day] = salt
	}
	_ = json.NewEncoder(w).Encode(CookielessSalt{Date: day, Salt: salt})
}

func (s *saltServer) count(day string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetched[day]
}

func (s *saltServer) set(down, old bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down, s.old = down, old
}

func saltClient(t *testing.T, srv *saltServer) *Client {
	t.Helper()
	c, err := New(Config{BaseURL: srv.URL, Caller: "test", IdentitySecret: []byte("a test identity secret"), RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// utcDay returns the UTC date days from now.
func utcDay(days int) string { return time.Now().UTC().AddDate(0, 0, days).Format(time.DateOnly) }

// TestCookielessSaltIsFetchedOnceAndShared: two clients (two collection
// instances) asking for a date at once get the one salt config-svc made,
// each fetching it once, and answer it from memory after; the next date
// has another.
func TestCookielessSaltIsFetchedOnceAndShared(t *testing.T) {
	srv := newSaltServer(t)
	clients := []*Client{saltClient(t, srv), saltClient(t, srv)}
	ctx := context.Background()
	today := utcDay(0)
	const callers = 20
	var wg sync.WaitGroup
	got := make([][]byte, 2*callers)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			salt, err := clients[i%2].CookielessSalt(ctx, today)
			if err != nil {
				t.Error(err)
			}
			got[i] = salt
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, salt := range got {
		if len(salt) != SaltBytes || !bytes.Equal(salt, got[0]) {
			t.Fatalf("caller %d got %x, caller 0 %x: want one salt of %d bytes", i, salt, got[0], SaltBytes)
		}
	}
	if n := srv.count(today); n != 2 {
		t.Fatalf("%d fetches of %s by two clients, want one each", n, today)
	}
	for _, c := range clients {
		if again, err := c.CookielessSalt(ctx, today); err != nil || !bytes.Equal(again, got[0]) {
			t.Fatalf("later: %x, %v", again, err)
		}
	}
	if n := srv.count(today); n != 2 {
		t.Fatalf("a cached salt was fetched again (%d fetches)", n)
	}

	tomorrow, err := clients[0].CookielessSalt(ctx, utcDay(1))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(tomorrow, got[0]) {
		t.Fatal("tomorrow's salt is today's")
	}
	if other, err := clients[1].CookielessSalt(ctx, utcDay(1)); err != nil || !bytes.Equal(other, tomorrow) {
		t.Fatalf("the other client's salt of tomorrow: %x, %v; want %x", other, err, tomorrow)
	}
}

// TestCookielessSaltWhileConfigSvcCannotGiveIt: a cached salt is answered
// while config-svc is down; an uncached one is an error wrapping
// ErrUnavailable (nothing made up), and so is a date config-svc refuses,
// or a config-svc that does not know the route; nothing failed is cached.
func TestCookielessSaltWhileConfigSvcCannotGiveIt(t *testing.T) {
	srv := newSaltServer(t)
	c := saltClient(t, srv)
	ctx := context.Background()
	today, err := c.CookielessSalt(ctx, utcDay(0))
	if err != nil {
		t.Fatal(err)
	}

	srv.set(true, false)
	if got, err := c.CookielessSalt(ctx, utcDay(0)); err != nil || !bytes.Equal(got, today) {
		t.Fatalf("cached salt while config-svc is down: %x, %v", got, err)
	}
	if got, err := c.CookielessSalt(ctx, utcDay(-1)); !errors.Is(err, ErrUnavailable) || got != nil {
		t.Fatalf("uncached salt while config-svc is down: %x, %v; want ErrUnavailable", got, err)
	}
	srv.set(false, true)
	if _, err := c.CookielessSalt(ctx, utcDay(-1)); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "does not serve cookieless salts") {
		t.Fatalf("a config-svc without the route: %v; want ErrUnavailable saying so", err)
	}
	srv.set(false, false)
	if _, err := c.CookielessSalt(ctx, utcDay(-2)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a date config-svc refuses: %v; want ErrUnavailable", err)
	}
	if _, err := c.CookielessSalt(ctx, utcDay(-1)); err != nil {
		t.Fatalf("config-svc back: %v", err)
	}
	if n := srv.count(utcDay(-1)); n != 3 {
		t.Fatalf("yesterday fetched %d times, want 3: a failure was cached", n)
	}

	before := srv.count("2026-13-01")
	if _, err := c.CookielessSalt(ctx, "2026-13-01"); err == nil {
		t.Fatal("a malformed date was accepted")
	}
	if _, err := c.CookielessSalt(ctx, "../properties/x"); err == nil || srv.count("2026-13-01") != before {
		t.Fatalf("a malformed date: %v, or was sent", err)
	}
}

// TestOldCookielessSaltsAreDropped: the cache keeps the dates of use,
// yesterday to tomorrow in UTC; a salt whose date is before yesterday is
// dropped, here by the sweep, and never held past a few dates.
func TestOldCookielessSaltsAreDropped(t *testing.T) {
	srv := newSaltServer(t)
	c := saltClient(t, srv)
	ctx := context.Background()
	for _, d := range []int{-1, 0, 1} {
		if _, err := c.CookielessSalt(ctx, utcDay(d)); err != nil {
			t.Fatal(err)
		}
	}
	cached := func() []string {
		var days []string
		for d := range *c.salts.Load() {
			days = append(days, d)
		}
		return days
	}
	if got := cached(); len(got) != 3 {
		t.Fatalf("cached %v, want yesterday, today and tomorrow", got)
	}
	c.dropOldSalts(time.Now())
	if got := cached(); len(got) != 3 {
		t.Fatalf("after a sweep now: %v, want all three kept", got)
	}
	c.dropOldSalts(time.Now().Add(24 * time.Hour))
	if got := cached(); len(got) != 2 || strings.Contains(strings.Join(got, " "), utcDay(-1)) {
		t.Fatalf("a day later: %v, want the salt of %s dropped", got, utcDay(-1))
	}

	// More dates than are ever of use at once (a clock far off): only the
	// newest are kept.
	for i := range 10 {
		c.keepSalt(utcDay(i), make([]byte, SaltBytes), time.Now())
	}
	if got := cached(); len(got) != maxSaltDates {
		t.Fatalf("%d dates cached, want at most %d", len(got), maxSaltDates)
	}
}
