package simulate

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"time"
)

// Config shapes a plan.
type Config struct {
	Seed     uint64
	Visitors int
	// End is the newest hit time; the plan spans Window before it. Hits are
	// sent with a queue time, so Window plus the time the play takes must
	// stay under collection's 4-hour limit.
	End    time.Time
	Window time.Duration
	// Location is the property's time zone. MidnightZone picks one whose
	// local midnight falls inside the window, so midnight splits happen.
	Location *time.Location
	// Host is the property's hostname, saved with its "www." as most are:
	// the referrers of a visit's later pages are on it.
	Host string
	// MidnightBefore is how long before End the property's local midnight
	// falls, around which some visits are placed (set by New). Keeping it
	// in the configuration keeps every time of a plan relative to End.
	MidnightBefore time.Duration
	// ExcludedCIDR is an IP exclusion rule of the property; visitors
	// planned as internal traffic come from inside it.
	ExcludedCIDR string
}

// Hit is one planned request to collection.
type Hit struct {
	At     time.Time  // when it happened (the hit's time)
	Send   time.Time  // when it is sent, on the plan's clock (At, or later for a late hit)
	Params url.Values // collection query parameters, without tid and qt
	UA     string
	IP     string // the client IP the player claims (X-Forwarded-For)
	// Copies is how many times it is sent (duplicates must count once).
	Copies int
	// WithNext says it is sent in one request with the plan's next hit (a
	// tracker's queue flushed at once; the two have the same Send and
	// Copies). Collection dates both from one receive time, so the gap
	// between their times is exactly the planned one.
	WithNext bool
	// Malformed is the expected dead-letter reason class of a hit meant
	// to be rejected: "malformed" or "unknown_tracking_id"; empty for a
	// valid hit.
	Malformed string
}

// Plan is a deterministic play of traffic and what reports must show.
type Plan struct {
	Config Config
	Hits   []Hit
	Expect *Expectation
}

// Rebased returns the same plan with every time moved so that it ends at
// end: every time in a plan is relative to its End, so the visitors,
// sessions and hits are the same, shifted.
func (p *Plan) Rebased(end time.Time) *Plan {
	cfg := p.Config
	cfg.End = end
	return New(cfg)
}

// MidnightZone returns an Etc/GMT zone whose local midnight falls between
// one and two hours before end, so a plan of a few hours crosses it.
func MidnightZone(end time.Time) *time.Location {
	m := end.UTC().Add(-90 * time.Minute).Truncate(time.Hour) // the UTC hour that is to be local midnight
	offset := (24 - m.Hour()) % 24                            // local = UTC + offset
	if offset > 14 {
		offset -= 24
	}
	name := "Etc/UTC"
	switch {
	case offset > 0:
		name = "Etc/GMT-" + strconv.Itoa(offset) // POSIX sign: GMT-5 is UTC+5
	case offset < 0:
		name = "Etc/GMT+" + strconv.Itoa(-offset)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.FixedZone(name, offset*3600)
	}
	return loc
}

// Traffic sources and what they must be reported as (docs/processing.md).
type source struct {
	name                       string
	weight                     int
	url                        string // query appended to the landing URL
	referrer                   string
	src, medium, campaign      string
	channel, referrerDimension string
}

var sources = []source{
	{"direct", 20, "", "", "(direct)", "(none)", "(direct)", "Direct", "(none)"},
	{"google", 22, "", "https://www.google.com/", "google", "organic", "(organic)", "Organic Search", "google.com"},
	{"bing", 5, "", "https://www.bing.com/search?q=shop", "bing", "organic", "(organic)", "Organic Search", "bing.com/search"},
	{"facebook", 8, "", "https://l.facebook.com/l.php?u=x", "l.facebook.com", "referral", "(referral)", "Organic Social", "l.facebook.com/l.php"},
	{"twitter", 4, "", "https://t.co/abc123", "t.co", "referral", "(referral)", "Organic Social", "t.co/abc123"},
	{"gclid", 10, "gclid=CjwKCA{n}&utm_campaign=spring", "https://www.google.com/", "google", "cpc", "spring", "Paid Search", "google.com"},
	{"paid-social", 6, "utm_source=facebook&utm_medium=cpc&utm_campaign=retarget", "", "facebook", "cpc", "retarget", "Paid Social", "(none)"},
	{"email", 12, "utm_source=newsletter&utm_medium=email&utm_campaign=may", "", "newsletter", "email", "may", "Email", "(none)"},
	{"referral", 8, "", "https://blog.example.org/review", "blog.example.org", "referral", "(referral)", "Referral", "blog.example.org/review"},
	{"affiliate", 5, "utm_source=partner&utm_medium=affiliate&utm_campaign=deal", "https://partner.example.net/", "partner", "affiliate", "deal", "Affiliates", "partner.example.net"},
}

var pages = func() []string {
	p := []string{"/", "/products", "/cart", "/checkout", "/about", "/blog"}
	for i := 1; i <= 20; i++ {
		p = append(p, fmt.Sprintf("/products/%d", i))
	}
	for i := 1; i <= 6; i++ {
		p = append(p, fmt.Sprintf("/blog/post-%d", i))
	}
	return p
}()

// SessionTimeout is the simulated property's inactivity timeout (its rules
// say the same; see Rules).
const SessionTimeout = 30 * time.Minute

// Goals of the simulated property (its rules say the same; see Rules).
const (
	GoalPurchasePath  = "/checkout/thanks"
	GoalPurchaseValue = 50.0
	GoalSignupCat     = "newsletter"
	GoalSignupAction  = "signup"
)

// userAgents are the visitors' browsers, with the device category and
// browser reports must show for them, and the screen size (sr) the
// tracker sends: Safari on an iPad sends a Mac's user agent, and only its
// portrait screen tells it apart.
var userAgents = []struct{ ua, device, browser, screen string }{
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", "desktop", "Chrome", "1920x1080"},
	{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", "desktop", "Safari", "1440x900"},
	{"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "desktop", "Firefox", "2560x1440"},
	{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "mobile", "Safari", "390x844"},
	{"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36", "mobile", "Chrome", "412x915"},
	{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", "tablet", "Safari", "820x1180"},
	{"Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Safari/537.36", "tablet", "Samsung Browser", "800x1280"},
}

const botUA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

// planner builds a plan; it is the only place randomness is drawn, in a
// fixed order, so a seed always gives the same plan.
type planner struct {
	cfg    Config
	rng    *rand.Rand
	hits   []Hit
	expect *Expectation
	// ids prefixes the hit IDs (hid): h<seed> for a plan's. Hit IDs must
	// not repeat across plans and live traffic, since processing takes a
	// visitor's repeated ID for a duplicate and the raw archive keys hits
	// by it.
	ids string
	seq int
	// rotation places the special visits among the visitors.
	rotation int
}

// defaultHost is the simulated property's hostname unless told another.
const defaultHost = "www.shop.example"

// New plans traffic for cfg.
func New(cfg Config) *Plan {
	if cfg.Window == 0 {
		cfg.Window = 3 * time.Hour
	}
	if cfg.Host == "" {
		cfg.Host = defaultHost
	}
	if cfg.Location == nil {
		cfg.Location = MidnightZone(cfg.End)
	}
	if cfg.MidnightBefore == 0 {
		e := cfg.End.In(cfg.Location)
		cfg.MidnightBefore = e.Sub(time.Date(e.Year(), e.Month(), e.Day(), 0, 0, 0, 0, cfg.Location))
	}
	p := &planner{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), expect: newExpectation(cfg.Location), ids: fmt.Sprintf("h%d", cfg.Seed)}
	p.rotation = p.rng.IntN(specialEvery)
	for v := 0; v < cfg.Visitors; v++ {
		p.visitor(v)
	}
	p.malformed(max(3, cfg.Visitors/20))
	sortHits(p.hits)
	return &Plan{Config: cfg, Hits: p.hits, Expect: p.expect}
}

func (p *planner) pick(weights func(i int) int, n int) int {
	total := 0
	for i := 0; i < n; i++ {
		total += weights(i)
	}
	r := p.rng.IntN(total)
	for i := 0; i < n; i++ {
		if r -= weights(i); r < 0 {
			return i
		}
	}
	return n - 1
}

func (p *planner) hid() string {
	p.seq++
	return fmt.Sprintf("%s-%d", p.ids, p.seq)
}
