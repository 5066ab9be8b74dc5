package collect

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/collection-svc/internal/device"
	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/prometheus/client_golang/prometheus"
)

// memSalts stands in for config-svc's salts (configclient has its own
// tests against config-svc): a random salt per date, made on first use and
// the same for every caller after; down, it has none to give. It records
// the dates asked for.
type memSalts struct {
	mu    sync.Mutex
	salts map[string][]byte
	asked []string
	down  bool
}

func newMemSalts() *memSalts { return &memSalts{salts: map[string][]byte{}} }

func (m *memSalts) CookielessSalt(_ context.Context, day string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, day)
	if m.down {
		return nil, errors.New("config-svc unavailable")
	}
	salt, ok := m.salts[day]
	if !ok {
		salt = make([]byte, 32)
		_, _ = rand.Read(salt)
		m.salts[day] = salt
	}
	return salt, nil
}

// takeAsked returns the dates asked for since the last call.
func (m *memSalts) takeAsked() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.asked
	m.asked = nil
	return a
}

func (m *memSalts) setDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
}

// cookielessProperty is a cookieless property in loc, without hostnames.
func cookielessProperty(t testing.TB, id string, loc *time.Location) *Property {
	t.Helper()
	r, err := rules.Compile(rules.Defaults(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Property{ID: id, TenantID: "t", TrackingID: "AT-CKYCKYCKY2", Cookieless: true, Shards: 1, Rules: r, Location: loc}
}

// cookielessServer is a collection server for p with salts, queueing to q
// and sending dead letters to dl.
func cookielessServer(t testing.TB, p *Property, salts Salts, q Queue, dl DeadLetters) *Server {
	t.Helper()
	return New(Config{
		Properties:     staticProperties{p},
		Queue:          q,
		DeadLetters:    dl,
		Devices:        device.NewParser(100),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Salts:          salts,
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry:       prometheus.NewRegistry(),
	})
}

// cookielessID builds, as handle does (the request's salts first), a
// pageview without a client ID received at received with queue time qt,
// and returns its visitor ID.
func cookielessID(t *testing.T, s *Server, p *Property, ip, ua string, received time.Time, qt string) string {
	t.Helper()
	h, e := buildAt(t, s, p, ip, ua, received, hit.OriginBrowser, parse.Fields{Type: "pageview", Path: "/", QueueTime: qt})
	if e != nil {
		t.Fatal(e)
	}
	if !h.Cookieless {
		t.Fatal("a hit given a visitor ID is not marked cookieless")
	}
	return h.ClientID
}

// buildAt builds f for p as handle does (a cookieless property's browser
// request gets its salts first), from ip and ua, received at received.
func buildAt(t *testing.T, s *Server, p *Property, ip, ua string, received time.Time, origin hit.Origin, f parse.Fields) (*hit.Hit, *parse.Error) {
	t.Helper()
	c := &client{ip: netip.MustParseAddr(ip), userAgent: ua, received: received}
	c.addr = addressingOf(p, c.ip)
	if p.Cookieless && origin == hit.OriginBrowser {
		if err := s.salts(context.Background(), c, p.Location); err != nil {
			t.Fatal(err)
		}
	}
	return s.build(new(hit.Hit), p, &f, c, origin)
}

var visitorIDForm = regexp.MustCompile(`^ckl-[0-9a-f]{32}$`)

// TestCookielessIDsRotateDaily: one visitor has one ID on one day of the
// property's time zone, on every instance sharing the salts, and another
// the next day, when the salt is another; the ID changes at the property's
// midnight, not at midnight UTC.
func TestCookielessIDsRotateDaily(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	salts := newMemSalts()
	p := cookielessProperty(t, "p", ny)
	s := cookielessServer(t, p, salts, countingQueue{new(int)}, failOnDeadLetter{t})
	other := cookielessServer(t, p, salts, countingQueue{new(int)}, failOnDeadLetter{t})             // another instance
	elsewhere := cookielessServer(t, p, newMemSalts(), countingQueue{new(int)}, failOnDeadLetter{t}) // other salts
	id := func(s *Server, p *Property, ip, ua string, at time.Time) string {
		return cookielessID(t, s, p, ip, ua, at, "")
	}
	day := time.Date(2026, 3, 1, 10, 0, 0, 0, ny)
	const ip, ua = "203.0.113.9", "ua"
	a := id(s, p, ip, ua, day)
	if !visitorIDForm.MatchString(a) {
		t.Fatalf("visitor ID %q is not ckl- and 32 hex digits", a)
	}
	q := cookielessProperty(t, "q", ny)
	utc := cookielessProperty(t, "p", nil)
	tests := []struct {
		name     string
		got      string
		wantSame bool
	}{
		{"same day, same visitor", id(s, p, ip, ua, day.Add(13*time.Hour)), true}, // 23:00, past midnight UTC
		{"another instance, same salts", id(other, p, ip, ua, day), true},
		{"another instance, same day, later", id(other, p, ip, ua, day.Add(13*time.Hour)), true},
		{"next day", id(s, p, ip, ua, day.Add(14*time.Hour)), false},
		{"next day, another instance", id(other, p, ip, ua, day.Add(14*time.Hour)), false},
		{"other property", id(s, q, ip, ua, day), false},
		{"other user agent", id(s, p, ip, "ua2", day), false},
		{"other IP", id(s, p, "203.0.113.10", ua, day), false},
		{"other salts", id(elsewhere, p, ip, ua, day), false},
		{"the same date in UTC", id(s, utc, ip, ua, time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)), true},
	}
	for _, tt := range tests {
		if (tt.got == a) != tt.wantSame {
			t.Errorf("%s: %s vs %s, want same=%v", tt.name, tt.got, a, tt.wantSame)
		}
	}
	if next, nextOther := id(s, p, ip, ua, day.Add(14*time.Hour)), id(other, p, ip, ua, day.Add(14*time.Hour)); next != nextOther {
		t.Errorf("the next day two instances disagree: %s, %s", next, nextOther)
	}
}

// TestCookielessIDFollowsTheHitTime: a cookieless hit's visitor ID follows
// the hit's own time, not when it arrived: a hit sent late (with a queue
// time) across the property's midnight stays with the visitor's other hits
// of its day.
func TestCookielessIDFollowsTheHitTime(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	p := cookielessProperty(t, "p", berlin)
	s := cookielessServer(t, p, newMemSalts(), countingQueue{new(int)}, failOnDeadLetter{t})
	midnight := time.Date(2026, 3, 2, 0, 0, 0, 0, berlin)
	id := func(received time.Time, qt string) string {
		return cookielessID(t, s, p, "203.0.113.77", "ua", received, qt)
	}
	before := id(midnight.Add(-10*time.Minute), "")
	if late := id(midnight.Add(5*time.Minute), "600000"); late != before { // sent at 23:55, arrived at 00:05
		t.Errorf("a hit of 23:55 that arrived after midnight: visitor %s, want %s as at 23:50", late, before)
	}
	if after := id(midnight.Add(5*time.Minute), ""); after == before {
		t.Error("a hit after the property's midnight kept the day before's visitor ID")
	}
}

// TestCookielessPropertyDecides: a cookieless property's browser hits get
// the daily visitor ID whether or not they carry a cid (a tag without
// data-cookieless sends the cookie's), so the property's setting decides;
// its Measurement API hits keep their client_id; a property that is not
// cookieless refuses a browser hit without cid (a tag with
// data-cookieless), saying how to mend it.
func TestCookielessPropertyDecides(t *testing.T) {
	p := cookielessProperty(t, "p", nil)
	s := cookielessServer(t, p, newMemSalts(), countingQueue{new(int)}, failOnDeadLetter{t})
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	const ip, ua = "203.0.113.9", "ua"
	derived := cookielessID(t, s, p, ip, ua, at, "")

	withCID, e := buildAt(t, s, p, ip, ua, at, hit.OriginBrowser, parse.Fields{Type: "pageview", Path: "/", ClientID: "c-from-the-cookie"})
	if e != nil {
		t.Fatal(e)
	}
	if withCID.ClientID != derived || !withCID.Cookieless {
		t.Errorf("a browser hit with a cid: client ID %q (cookieless %v), want the derived %q", withCID.ClientID, withCID.Cookieless, derived)
	}

	// Ignored, so never refused: one too long, or not UTF-8, refused
	// the hit.
	for _, cid := range []string{strings.Repeat("c", 300), "c\xff"} {
		h, e := buildAt(t, s, p, ip, ua, at, hit.OriginBrowser, parse.Fields{Type: "pageview", Path: "/", ClientID: cid})
		if e != nil || h.ClientID != derived {
			t.Errorf("a browser hit with the cid %q: %+v, %v; want it given the derived ID", cid, h, e)
		}
	}

	server, e := buildAt(t, s, p, ip, ua, at, hit.OriginMeasurement, parse.Fields{Type: "event", Action: "purchase", ClientID: "c-from-the-server"})
	if e != nil {
		t.Fatal(e)
	}
	if server.ClientID != "c-from-the-server" || server.Cookieless {
		t.Errorf("a Measurement API hit: client ID %q (cookieless %v), want its own", server.ClientID, server.Cookieless)
	}

	cookies := cookielessProperty(t, "q", nil)
	cookies.Cookieless = false
	_, e = buildAt(t, s, cookies, ip, ua, at, hit.OriginBrowser, parse.Fields{Type: "pageview", Path: "/"})
	if e == nil || e.Field != "cid" || e.Reason != parse.ReasonMalformed || !strings.Contains(e.Message, "data-cookieless") {
		t.Errorf("a browser hit without cid for a property with cookies: %+v, want it refused as malformed, naming data-cookieless", e)
	}
	// Universal Analytics took uid alone; here users are client IDs, and
	// a server sending uid without cid is told to send cid, not about
	// the script tag it does not have.
	_, e = buildAt(t, s, cookies, ip, ua, at, hit.OriginBrowser, parse.Fields{Type: "pageview", Path: "/", UserID: "u-42"})
	if e == nil || e.Field != "cid" || e.Reason != parse.ReasonMalformed || !strings.Contains(e.Message, "uid alone") || strings.Contains(e.Message, "data-cookieless") {
		t.Errorf("a hit with uid and no cid for a property with cookies: %+v, want it refused as malformed, saying uid alone names no visitor", e)
	}
}

// TestCookielessSaltsOfARequest: a request asks for the salts of the
// dates, in the property's time zone, of its receipt and of 4 hours before
// it (one date when both are the same), and a hit at either end gets its
// ID; a request that needs no visitor ID asks for none.
func TestCookielessSaltsOfARequest(t *testing.T) {
	load := func(name string) *time.Location {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	tests := []struct {
		name     string
		loc      *time.Location
		received time.Time
		want     []string
	}{
		{"midday UTC", nil, time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC), []string{"2026-12-05"}},
		{"02:00 UTC", nil, time.Date(2026, 12, 5, 2, 0, 0, 0, time.UTC), []string{"2026-12-04", "2026-12-05"}},
		{"exactly 4 h after midnight", nil, time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC), []string{"2026-12-05"}},
		{"UTC+14: tomorrow in UTC", load("Pacific/Kiritimati"), time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC), []string{"2026-12-05", "2026-12-06"}},
		{"UTC-12: yesterday in UTC", load("Etc/GMT+12"), time.Date(2026, 12, 5, 13, 0, 0, 0, time.UTC), []string{"2026-12-04", "2026-12-05"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			salts := newMemSalts()
			p := cookielessProperty(t, "p", tt.loc)
			s := cookielessServer(t, p, salts, countingQueue{new(int)}, failOnDeadLetter{t})
			oldest := cookielessID(t, s, p, "203.0.113.7", "ua", tt.received, "14400000") // 4 h late: the oldest accepted
			if got := salts.takeAsked(); !slices.Equal(got, tt.want) {
				t.Fatalf("asked for %v, want %v", got, tt.want)
			}
			newest := cookielessID(t, s, p, "203.0.113.7", "ua", tt.received, "")
			if (oldest == newest) != (len(tt.want) == 1) {
				t.Fatalf("IDs of a hit 4 h late and one on time: %s, %s; want them the same only on one date", oldest, newest)
			}
		})
	}

	// Through the endpoints: a browser request asks (its hits' client IDs
	// are ignored), a Measurement API request does not.
	salts := newMemSalts()
	p := cookielessProperty(t, "p", nil)
	p.VerifySecret = func(secret string) bool { return secret == "secret" }
	var queued int
	s := cookielessServer(t, p, salts, countingQueue{&queued}, failOnDeadLetter{t})
	mux := http.NewServeMux()
	s.Register(mux)
	for _, tt := range []struct {
		name, path, body string
		wantAsked        bool
	}{
		{"with client IDs", "/collect?tid=" + p.TrackingID, `{"hits":[{"cid":"c1","t":"pageview","dp":"/"},{"cid":"c2","t":"pageview","dp":"/"}]}`, true},
		{"one without", "/collect?tid=" + p.TrackingID, `{"hits":[{"cid":"c1","t":"pageview","dp":"/"},{"t":"pageview","dp":"/"}]}`, true},
		{"Measurement API", "/mp/collect?tracking_id=" + p.TrackingID + "&api_secret=secret", `{"client_id":"c1","events":[{"name":"purchase"}]}`, false},
	} {
		req := httptest.NewRequest("POST", tt.path, strings.NewReader(tt.body))
		req.RemoteAddr = "203.0.113.7:5000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != http.StatusNoContent {
			t.Fatalf("%s: %d %s", tt.name, w.Code, w.Body)
		}
		if asked := len(salts.takeAsked()) > 0; asked != tt.wantAsked {
			t.Fatalf("%s: asked for salts %v, want %v", tt.name, asked, tt.wantAsked)
		}
	}
}

// TestCookielessWithoutSaltAnswers503: when the day's salt cannot be had
// (config-svc unreachable, nothing cached), a browser request is answered
// 503, to be retried, with nothing queued and nothing dead-lettered, not
// even its invalid hits, whether its hits carry client IDs or not (they
// are ignored); Measurement API requests, which need no salt, are served;
// once the salt can be had, the retry is accepted.
func TestCookielessWithoutSaltAnswers503(t *testing.T) {
	salts := newMemSalts()
	salts.setDown(true)
	p := cookielessProperty(t, "p", nil)
	p.VerifySecret = func(secret string) bool { return secret == "secret" }
	var queued int
	var dead deadLetters
	s := cookielessServer(t, p, salts, countingQueue{&queued}, &dead)
	mux := http.NewServeMux()
	s.Register(mux)
	do := func(method, target, body string) *httptest.ResponseRecorder {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req := httptest.NewRequest(method, target, r)
		req.RemoteAddr = "203.0.113.7:5000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		return w
	}
	tid := p.TrackingID
	const needsID = `{"hits":[{"t":"pageview","dp":"/a"},{"t":"bogus"},{"cid":"c","t":"pageview","dp":"/b"}]}`
	for _, tt := range []struct {
		name, method, target, body string
	}{
		{"batch", "POST", "/collect?tid=" + tid, needsID},
		{"pixel", "GET", "/collect?tid=" + tid + "&t=pageview&dp=%2F", ""},
		{"with client IDs", "POST", "/collect?tid=" + tid, `{"hits":[{"cid":"c","t":"pageview","dp":"/"}]}`},
		{"validation", "POST", "/debug/collect?tid=" + tid, needsID},
	} {
		w := do(tt.method, tt.target, tt.body)
		if w.Code != http.StatusServiceUnavailable || tt.name != "validation" && w.Header().Get("Retry-After") == "" {
			t.Errorf("%s: %d %q, want 503 (with Retry-After)", tt.name, w.Code, w.Body)
		}
		if tt.name == "pixel" && w.Header().Get("Content-Type") != "image/gif" {
			t.Errorf("pixel: answered %q, want the image all the same", w.Header().Get("Content-Type"))
		}
	}
	if queued != 0 || len(dead) != 0 {
		t.Fatalf("without salts: %d records queued, %d dead letters (%+v); want none", queued, len(dead), dead)
	}

	if w := do("POST", "/mp/collect?tracking_id="+tid+"&api_secret=secret", `{"client_id":"c","events":[{"name":"purchase"}]}`); w.Code != http.StatusNoContent || queued != 1 {
		t.Fatalf("a Measurement API hit without salts: %d %s, %d queued; want it accepted", w.Code, w.Body, queued)
	}

	salts.setDown(false)
	queued = 0
	w := do("POST", "/collect?tid="+tid, needsID)
	if w.Code != http.StatusBadRequest || queued != 1 || len(dead) != 1 || dead[0].Reason != parse.ReasonMalformed {
		t.Fatalf("the retry once the salt is back: %d %s, %d queued, dead letters %+v; want the valid hits queued and the invalid one dead-lettered", w.Code, w.Body, queued, dead)
	}
}

// TestMeasurementWithoutClientIDSaysWhatJoins: a Measurement API event
// without client_id is told to send the tracker's _at_cid cookie, except
// on a cookieless property, whose tag sets no cookie and whose browser
// visitors' IDs a server cannot know: it is told that its hits cannot
// join the browser's sessions.
func TestMeasurementWithoutClientIDSaysWhatJoins(t *testing.T) {
	s, p := testServer(t, 4, countingQueue{new(int)})
	ckl := cookielessProperty(t, "ckl", nil)
	for _, tt := range []struct {
		name string
		p    *Property
		want string
	}{
		{"property with cookies", p, "the tracker's _at_cid cookie"},
		{"cookieless property", ckl, "the property is cookieless, so its tag sets no _at_cid cookie and server hits cannot join the visitor's browser sessions"},
	} {
		c := &client{received: s.now()}
		c.addr = addressingOf(tt.p, c.ip)
		f := parse.Fields{Type: "event", Action: "purchase"}
		_, e := s.build(new(hit.Hit), tt.p, &f, c, hit.OriginMeasurement)
		if e == nil || e.Field != "client_id" || !strings.Contains(e.Message, tt.want) {
			t.Errorf("%s: got %v, want client_id saying %q", tt.name, e, tt.want)
		}
	}
}
