package collect

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"direct client", "198.51.100.1:5000", nil, "198.51.100.1"},
		{"untrusted peer's header ignored", "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"gateway appends the client", "127.0.0.1:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"client-written entries left of it are ignored", "127.0.0.1:5000", []string{"1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"a chain of trusted proxies", "127.0.0.1:5000", []string{"203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"a trailing comma", "127.0.0.1:5000", []string{"203.0.113.9,"}, "203.0.113.9"},
		{"an empty entry", "127.0.0.1:5000", []string{"203.0.113.9, , 10.1.2.3"}, "203.0.113.9"},
		{"IPv6 in brackets without a port", "127.0.0.1:5000", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"unknown from the proxy: trust nothing left of it", "127.0.0.1:5000", []string{"203.0.113.9, unknown"}, "127.0.0.1"},
		{"several header lines", "127.0.0.1:5000", []string{"1.2.3.4", "203.0.113.9"}, "203.0.113.9"},
		{"ipv6 with port in the header", "127.0.0.1:5000", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"garbage stops the walk", "127.0.0.1:5000", []string{"203.0.113.9, junk, 10.0.0.2"}, "10.0.0.2"},
		{"only trusted entries", "127.0.0.1:5000", []string{"10.0.0.2"}, "10.0.0.2"},
		{"no header from a proxy", "127.0.0.1:5000", nil, "127.0.0.1"},
		{"mapped peer", "[::ffff:198.51.100.1]:5000", nil, "198.51.100.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/collect", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientIP(r, trusted).String(); got != tt.want {
				t.Fatalf("ClientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

// Cookieless IDs change at the property's midnight, where its sessions
// end anyway, and not at midnight UTC.
func TestCookielessIDsRotateDaily(t *testing.T) {
	c := newCookieless([]byte("secret"))
	ip := netip.MustParseAddr("203.0.113.9")
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 1, 10, 0, 0, 0, ny)
	a := c.visitorID("p", ip, "ua", day, ny)
	tests := []struct {
		name     string
		got      string
		wantSame bool
	}{
		{"same day, same visitor", c.visitorID("p", ip, "ua", day.Add(13*time.Hour), ny), true}, // 23:00, past midnight UTC
		{"another instance, same secret", newCookieless([]byte("secret")).visitorID("p", ip, "ua", day, ny), true},
		{"next day", c.visitorID("p", ip, "ua", day.Add(14*time.Hour), ny), false},
		{"other property", c.visitorID("q", ip, "ua", day, ny), false},
		{"other user agent", c.visitorID("p", ip, "ua2", day, ny), false},
		{"other IP", c.visitorID("p", netip.MustParseAddr("203.0.113.10"), "ua", day, ny), false},
		{"other secret", newCookieless([]byte("other")).visitorID("p", ip, "ua", day, ny), false},
		{"the same date in UTC", c.visitorID("p", ip, "ua", time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC), nil), true},
	}
	for _, tt := range tests {
		if (tt.got == a) != tt.wantSame {
			t.Errorf("%s: %s vs %s, want same=%v", tt.name, tt.got, a, tt.wantSame)
		}
	}
}

// A cookieless hit's visitor ID follows the hit's own time, not when it
// arrived: a hit sent late (with a queue time) across the property's
// midnight stays with the visitor's other hits of its day.
func TestCookielessIDFollowsTheHitTime(t *testing.T) {
	r, err := rules.Compile(rules.Defaults(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cookieless: newCookieless([]byte("k")), now: time.Now}
	p := &Property{ID: "p", TenantID: "t", TrackingID: "AT-SHPSHPSHP2", Cookieless: true, Shards: 1, Rules: r, Location: berlin}
	midnight := time.Date(2026, 3, 2, 0, 0, 0, 0, berlin)
	id := func(received time.Time, qt string) string {
		t.Helper()
		c := &client{ip: netip.MustParseAddr("203.0.113.77"), userAgent: "ua", received: received}
		c.addr = addressingOf(p, c.ip)
		f := parse.Fields{Type: "pageview", Path: "/", QueueTime: qt}
		h, e := s.build(new(hit.Hit), p, &f, c, hit.OriginBrowser)
		if e != nil {
			t.Fatal(e)
		}
		return h.ClientID
	}
	before := id(midnight.Add(-10*time.Minute), "")
	if late := id(midnight.Add(5*time.Minute), "600000"); late != before { // sent at 23:55, arrived at 00:05
		t.Errorf("a hit of 23:55 that arrived after midnight: visitor %s, want %s as at 23:50", late, before)
	}
	if after := id(midnight.Add(5*time.Minute), ""); after == before {
		t.Error("a hit after the property's midnight kept the day before's visitor ID")
	}
}
