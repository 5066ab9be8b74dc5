package configclient_test

// An external test package: configclienttest imports configclient, so
// configclient's own (internal) tests cannot import it.

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/configclient/configclienttest"
)

const identitySecret = "a test identity secret"

func newSaltServer(t *testing.T) *configclienttest.SaltServer {
	t.Helper()
	return configclienttest.NewSaltServer(t, configclienttest.SaltServerConfig{IdentitySecret: []byte(identitySecret)})
}

func saltClient(t *testing.T, srv *configclienttest.SaltServer) *configclient.Client {
	t.Helper()
	c, err := configclient.New(configclient.Config{BaseURL: srv.URL, Caller: "test", IdentitySecret: []byte(identitySecret), RequestTimeout: 2 * time.Second})
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
	clients := []*configclient.Client{saltClient(t, srv), saltClient(t, srv)}
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
		if len(salt) != configclient.SaltBytes || !bytes.Equal(salt, got[0]) {
			t.Fatalf("caller %d got %x, caller 0 %x: want one salt of %d bytes", i, salt, got[0], configclient.SaltBytes)
		}
	}
	if n := srv.Requests()[today]; n != 2 {
		t.Fatalf("%d fetches of %s by two clients, want one each", n, today)
	}
	for _, c := range clients {
		if again, err := c.CookielessSalt(ctx, today); err != nil || !bytes.Equal(again, got[0]) {
			t.Fatalf("later: %x, %v", again, err)
		}
	}
	if n := srv.Requests()[today]; n != 2 {
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

	srv.SetDown(true)
	if got, err := c.CookielessSalt(ctx, utcDay(0)); err != nil || !bytes.Equal(got, today) {
		t.Fatalf("cached salt while config-svc is down: %x, %v", got, err)
	}
	if got, err := c.CookielessSalt(ctx, utcDay(-1)); !errors.Is(err, configclient.ErrUnavailable) || got != nil {
		t.Fatalf("uncached salt while config-svc is down: %x, %v; want ErrUnavailable", got, err)
	}
	srv.SetDown(false)
	srv.SetOld(true)
	if _, err := c.CookielessSalt(ctx, utcDay(-1)); !errors.Is(err, configclient.ErrUnavailable) || !strings.Contains(err.Error(), "does not serve cookieless salts") {
		t.Fatalf("a config-svc without the route: %v; want ErrUnavailable saying so", err)
	}
	srv.SetOld(false)
	if _, err := c.CookielessSalt(ctx, utcDay(-2)); !errors.Is(err, configclient.ErrUnavailable) {
		t.Fatalf("a date config-svc refuses: %v; want ErrUnavailable", err)
	}
	if _, err := c.CookielessSalt(ctx, utcDay(-1)); err != nil {
		t.Fatalf("config-svc back: %v", err)
	}
	if n := srv.Requests()[utcDay(-1)]; n != 3 {
		t.Fatalf("yesterday fetched %d times, want 3: a failure was cached", n)
	}

	before := srv.Requests()["2026-13-01"]
	if _, err := c.CookielessSalt(ctx, "2026-13-01"); err == nil {
		t.Fatal("a malformed date was accepted")
	}
	if _, err := c.CookielessSalt(ctx, "../properties/x"); err == nil || srv.Requests()["2026-13-01"] != before {
		t.Fatalf("a malformed date: %v, or was sent", err)
	}
}
