package collect

import (
	"errors"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/acme/analytics/collection-svc/internal/device"
	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
)

// MaxQueueTime is how old a hit may be when it arrives. Processing keeps a
// visitor's sessions open for late hits exactly this long (plus clock
// skew), so it must not grow without processing's agreement.
const MaxQueueTime = 4 * time.Hour

// maxFutureSkew is how far in the future a Measurement API timestamp may
// lie (a server's clock running ahead); such a hit is dated now.
const maxFutureSkew = time.Minute

// client is what the request tells about its sender, shared by every hit
// of the request and computed once: a browser's request of itself, a
// Measurement API request of the visitor whose events it forwards
// (visitorClient).
type client struct {
	ip        netip.Addr // full: in flight only, never stored
	userAgent string
	device    device.Info // derived from userAgent
	given     device.Info // what a Measurement API request says of the device: beats device, field by field
	country   string
	// err rejects every event of a Measurement API request whose visitor
	// context is invalid, naming the field as the sender wrote it.
	err      *parse.Error
	received time.Time
	addr     addressing // what the property's rules make of ip
	// goodHost is the last host a hit of the request had, normalized and
	// found valid and the property's: the next hit's, if the same, needs
	// no checks.
	goodHost string
	// salts are the cookieless salts of the dates the request's hits can
	// have (Server.salts), when it needs them.
	salts [2]daySalt
}

// addressing is what a property's rules make of a client's IP address:
// rules see the full address in flight; only the truncated address leaves
// the service.
type addressing struct {
	excludedBy  string // the IP exclusion rule that matches, if any
	ruleVersion int
	ip          string // the address as stored: truncated
}

func addressingOf(p *Property, ip netip.Addr) addressing {
	var a addressing
	if p.Rules != nil {
		a.excludedBy, _ = p.Rules.MatchIP(ip)
		a.ruleVersion = p.Rules.Version()
	}
	a.ip = storedIP(p, ip)
	return a
}

// storedIP is what may be stored of ip for property p (nil: not known),
// by its IP anonymization (strict without rules, or without p): the
// truncated address, or "" for nothing.
func storedIP(p *Property, ip netip.Addr) string {
	anonymize := rules.AnonymizeStrict
	if p != nil && p.Rules != nil {
		anonymize = p.Rules.IPAnonymization()
	}
	if t, ok := anonymize.Apply(ip); ok {
		return t.String()
	}
	return ""
}

// Limits of single fields, in bytes (GA's, rounded up).
const (
	maxURLBytes    = hit.MaxURLBytes // dl, dp, dr
	maxTitleBytes  = 1500            // dt
	maxParamBytes  = 1000            // a custom parameter's value
	maxActionBytes = 500             // ea, and what becomes an event's action
)

// Limits of single fields, in bytes (GA's, rounded up). The campaign sent
// apart from the document location is kept in the hit's Params, under
// param (GA4's names, which a Measurement API event may also carry).
var fieldLimits = []struct {
	name  string
	get   func(*parse.Fields) string
	max   int
	param string
}{
	{"cid", func(f *parse.Fields) string { return f.ClientID }, 256, ""},
	{"uid", func(f *parse.Fields) string { return f.UserID }, 256, ""},
	{"dl", func(f *parse.Fields) string { return f.Location }, maxURLBytes, ""},
	{"dh", func(f *parse.Fields) string { return f.Host }, 253, ""},
	{"dp", func(f *parse.Fields) string { return f.Path }, maxURLBytes, ""},
	{"dt", func(f *parse.Fields) string { return f.Title }, maxTitleBytes, ""},
	{"dr", func(f *parse.Fields) string { return f.Referrer }, maxURLBytes, ""},
	{"ec", func(f *parse.Fields) string { return f.Category }, 150, ""},
	{"ea", func(f *parse.Fields) string { return f.Action }, maxActionBytes, ""},
	{"el", func(f *parse.Fields) string { return f.Label }, 500, ""},
	{"sr", func(f *parse.Fields) string { return f.ScreenResolution }, 20, ""},
	{"ul", func(f *parse.Fields) string { return f.Language }, 35, ""},
	{"hid", func(f *parse.Fields) string { return f.EventID }, 128, ""},
	{"cs", func(f *parse.Fields) string { return f.CampaignSource }, 100, hit.ParamCampaignSource},
	{"cm", func(f *parse.Fields) string { return f.CampaignMedium }, 50, hit.ParamCampaignMedium},
	{"cn", func(f *parse.Fields) string { return f.CampaignName }, 100, hit.ParamCampaignName},
	{"ck", func(f *parse.Fields) string { return f.CampaignTerm }, 500, hit.ParamCampaignTerm},
	{"cc", func(f *parse.Fields) string { return f.CampaignContent }, 500, hit.ParamCampaignContent},
	{"gclid", func(f *parse.Fields) string { return f.GCLID }, 200, hit.ParamGCLID},
	// A timing's and an exception's, which become an event's category,
	// action and label (mapEvent): the limits of ec, ea and el, as in
	// Universal Analytics.
	{"utc", func(f *parse.Fields) string { return f.TimingCategory }, 150, ""},
	{"utv", func(f *parse.Fields) string { return f.TimingVariable }, 500, ""},
	{"utl", func(f *parse.Fields) string { return f.TimingLabel }, 500, ""},
	// An exception's description becomes the action, cut to its limit
	// (mapEvent) rather than refused: typical error messages are longer
	// than an action. Here only the hit's size bounds it.
	{"exd", func(f *parse.Fields) string { return f.ExceptionDescription }, parse.MaxHitBytes, ""},
}

// paramLimit is the longest value of the custom parameter name, in bytes:
// maxParamBytes, except for the Measurement API's parameters that are a
// field of the hit (page_location is dl, page_referrer dr, page_title dt),
// which have the field's limit, and its ecommerce items (an array kept as
// JSON text, often over 1000 bytes), which only the event's size bounds.
func paramLimit(name string, origin hit.Origin) int {
	if origin == hit.OriginMeasurement {
		switch name {
		case "page_location", "page_referrer":
			return maxURLBytes
		case "page_title":
			return maxTitleBytes
		case "items":
			return parse.MaxHitBytes
		}
	}
	return maxParamBytes
}

// build validates the fields of one hit for property p and makes the
// enriched hit in h, ready to queue, with its ID set; it returns h, or why
// the hit is rejected (h is then left in some state, to be discarded).
func (s *Server) build(h *hit.Hit, p *Property, f *parse.Fields, c *client, origin hit.Origin) (*hit.Hit, *parse.Error) {
	malformed := func(field, format string, args ...any) (*hit.Hit, *parse.Error) {
		return nil, parse.Errorf(parse.ReasonMalformed, field, format, args...)
	}
	if c.err != nil {
		return nil, c.err // the Measurement API request's visitor context
	}
	// Credentials in a page's or a referrer's address
	// (https://user:password@host/) are no part of where the visitor was:
	// the hit, so the queue, the archive and the tables, never holds them.
	f.Location, f.Referrer = withoutUserinfo(f.Location), withoutUserinfo(f.Referrer)
	if f.Version != "" && f.Version != "1" {
		return malformed("v", "protocol version %q is not supported; send v=1", f.Version)
	}
	if f.TrackingID != "" && f.TrackingID != p.TrackingID {
		return malformed("tid", "the hit is for %q but the request for %q; a batch is for one tracking ID", f.TrackingID, p.TrackingID)
	}
	t := hit.Type(f.Type)
	if !t.Valid() {
		if f.Type == "" {
			return malformed("t", "the hit type is missing; send t=pageview, event, engagement, timing or exception")
		}
		return malformed("t", "unknown hit type %q; send pageview, event, engagement, timing or exception", f.Type)
	}
	ignoredCID := p.Cookieless && origin == hit.OriginBrowser // the visitor ID is derived
	for _, l := range fieldLimits {
		v := l.get(f)
		if ignoredCID && l.name == "cid" {
			continue
		}
		if len(v) > l.max {
			return malformed(l.name, "is %d bytes long; the limit is %d", len(v), l.max)
		}
		if !utf8.ValidString(v) {
			return malformed(l.name, "is not valid UTF-8")
		}
	}
	if e := checkContent(t, f); e != nil {
		return nil, e
	}
	for k, v := range f.Params {
		if limit := paramLimit(k, origin); len(k) > 40 || len(v) > limit {
			return malformed("ep."+k, "is %d bytes long, its value %d; a custom parameter's name is limited to 40 bytes and this one's value to %d", len(k), len(v), limit)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return malformed("ep."+k, "is not valid UTF-8")
		}
	}

	dev := c.device.WithScreen(f.ScreenResolution).With(c.given) // an iPad says it is a Mac
	*h = hit.Hit{
		TenantID:         p.TenantID,
		PropertyID:       p.ID,
		TrackingID:       p.TrackingID,
		ClientID:         f.ClientID,
		UserID:           f.UserID,
		Type:             t,
		Origin:           origin,
		ReceivedAt:       c.received,
		URL:              f.Location,
		Title:            f.Title,
		Referrer:         f.Referrer,
		Category:         f.Category,
		Action:           f.Action,
		Label:            f.Label,
		ScreenResolution: f.ScreenResolution,
		Language:         f.Language,
		UserAgent:        c.userAgent,
		Browser:          dev.Browser,
		OS:               dev.OS,
		DeviceCategory:   dev.Category,
		Country:          c.country,
		Bot:              dev.Bot,
		BotName:          dev.BotName,
	}
	if len(f.Params) > 0 {
		h.Params = make(map[string]string, len(f.Params)+1)
		for k, v := range f.Params {
			h.Params[k] = v
		}
		// A Measurement API event keeps its page_location and
		// page_referrer among its parameters too: without credentials,
		// as dl and dr (they went to the queue as sent).
		for _, k := range [...]string{"page_location", "page_referrer"} {
			if v, ok := h.Params[k]; ok {
				h.Params[k] = withoutUserinfo(v)
			}
		}
	}
	for _, l := range fieldLimits {
		if l.param == "" {
			continue
		}
		if v := l.get(f); v != "" {
			if h.Params == nil {
				h.Params = make(map[string]string, 1)
			}
			h.Params[l.param] = v
		}
	}

	// When it happened. sent is the time as the sender gave it, which
	// the hit's ID is derived from: a time a minute at most in the future
	// (a server's clock running ahead) is dated at the receipt, and a
	// retry of the event, received later, must keep its ID.
	h.Time = c.received
	sent := h.Time
	switch {
	case f.TimestampMicros != "":
		us, ok := wholeNumber(f.TimestampMicros)
		if !ok || us <= 0 {
			return malformed("timestamp_micros", "must be a Unix time in whole microseconds")
		}
		at := time.UnixMicro(us)
		sent = at
		const year = 365 * 24 * time.Hour
		switch {
		case c.received.Sub(at) > 10*year:
			return nil, parse.Errorf(parse.ReasonTooOld, "timestamp_micros", "%d is %s, decades ago: timestamp_micros counts microseconds since 1970 (a time in milliseconds reads as January 1970)", us, at.UTC().Format(time.RFC3339))
		case c.received.Sub(at) > MaxQueueTime:
			return nil, parse.Errorf(parse.ReasonTooOld, "timestamp_micros", "the event is %s old; hits are accepted up to %s after they happened", c.received.Sub(at).Round(time.Second), MaxQueueTime)
		case at.Sub(c.received) > 10*year:
			return malformed("timestamp_micros", "%d lies centuries in the future: timestamp_micros counts microseconds since 1970 (a time in nanoseconds reads so)", us)
		case at.Sub(c.received) > maxFutureSkew:
			return malformed("timestamp_micros", "lies %s in the future; check the sender's clock", at.Sub(c.received).Round(time.Second))
		case at.Before(c.received):
			h.Time = at
		}
	case f.QueueTime != "":
		qt, err := strconv.ParseInt(f.QueueTime, 10, 64)
		if errors.Is(err, strconv.ErrRange) && strings.Trim(f.QueueTime, "0123456789") == "" {
			qt, err = math.MaxInt64, nil // too many milliseconds for an int64 are too old all the same
		}
		if err != nil || qt < 0 {
			return malformed("qt", "queue time must be a whole number of milliseconds, 0 or more")
		}
		if qt > MaxQueueTime.Milliseconds() {
			return nil, parse.Errorf(parse.ReasonTooOld, "qt", "the hit is %s ms old; hits are accepted up to %s after they happened", f.QueueTime, MaxQueueTime)
		}
		h.Time = c.received.Add(-time.Duration(qt) * time.Millisecond)
		sent = h.Time
	}

	// The page: dh and dp override what dl says.
	host, path := f.Host, f.Path
	if f.Location != "" {
		lhost, lpath, ok := splitLocation(f.Location)
		if !ok {
			return malformed("dl", "is not an absolute http(s) URL, like https://shop.example/page")
		}
		if host == "" {
			host = lhost
		}
		if path == "" {
			path = lpath
		}
	}
	if host != "" && host != c.goodHost {
		// An error names the field the host came from: dh, else dl.
		hostField := "dh"
		if f.Host == "" {
			hostField = "dl"
		}
		host = rules.NormalizeHost(host)
		if rules.ValidHost(host) != "" {
			return malformed(hostField, "%q is not a valid host name", host)
		}
		if p.Rules != nil && foreignHost(p.Rules, host, origin) {
			return nil, parse.Errorf(parse.ReasonForeignHost, hostField, "%q is not one of the property's hostnames (%s) nor a subdomain of one", host, strings.Join(p.Rules.Hostnames(), ", "))
		}
		c.goodHost = host // a request's hits are usually all from one host
	}
	if path != "" && path[0] != '/' {
		return malformed("dp", "the document path must start with /")
	}
	if f.Path != "" {
		path = hit.CanonicalPath(path) // dl's is already
	}
	h.Hostname, h.Path = host, path

	// Field names are /collect's; measurementError names them as the
	// Measurement API does, and a message that names one says it in the
	// sender's terms.
	mp := origin == hit.OriginMeasurement
	switch t {
	case hit.TypePageview:
		if path == "" {
			if mp {
				return malformed("dl", "a page_view needs params.page_location, the page's absolute URL")
			}
			return malformed("dl", "a pageview needs the document location (dl) or path (dp)")
		}
	case hit.TypeEvent:
		if f.Action == "" {
			return malformed("ea", "an event needs an action (ea)")
		}
	case hit.TypeEngagement:
		if f.EngagementTime == "" {
			if mp {
				return malformed("et", "a user_engagement event needs params.engagement_time_msec, the engaged time in milliseconds")
			}
			return malformed("et", "an engagement ping needs the engagement time in milliseconds (et)")
		}
	case hit.TypeTiming, hit.TypeException:
		// Queued as the non-interaction event it stands for.
		if e := mapEvent(h, f, origin); e != nil {
			return nil, e
		}
	}
	if f.Value != "" {
		// A decimal number only: ParseFloat also reads hex floats (0x1p4
		// is 16), a leading '+', Inf and NaN.
		v, err := strconv.ParseFloat(f.Value, 64)
		if !decimalNumber(f.Value) || err != nil || math.Abs(v) > 1e15 {
			return malformed("ev", "the event value must be a decimal number (like 12.5, -3 or 1e3) of at most 10^15")
		}
		h.Value, h.HasValue = v, true
	}
	if mp && p.Currency != "" {
		// Values are summed in the property's currency, and nothing
		// converts yet: 1000 JPY must not count as 1000 EUR.
		if cur := f.Params["currency"]; cur != "" && !strings.EqualFold(cur, p.Currency) {
			return malformed("ep.currency", "the property reports in %s; send values in %s (%.10q cannot be converted)", p.Currency, p.Currency, cur)
		}
	}
	switch f.NonInteraction {
	case "", "0", "false": // JSON's booleans come as their text
	case "1", "true":
		markNonInteraction(h)
	default:
		return malformed("ni", "%.20q is not a flag: send 1 (or true in JSON) for a non-interaction event, 0 (false) or nothing for another", f.NonInteraction)
	}
	if f.EngagementTime != "" {
		et, ok := engagementMS(f.EngagementTime, mp)
		switch {
		case ok:
			h.EngagementMS = et
		case mp && t != hit.TypeEngagement:
			// Read on every event only since 2026-12-05: on another event
			// than user_engagement it was a parameter and nothing more, and
			// it stays one (h.Params has it) rather than refuse the event.
		case mp:
			return malformed("et", "params.engagement_time_msec must be a number of milliseconds between 0 and one day (a fraction is rounded)")
		default:
			return malformed("et", "engagement time must be a whole number of milliseconds between 0 and one day")
		}
	}
	if _, _, ok := device.Resolution(f.ScreenResolution); f.ScreenResolution != "" && !ok {
		return malformed("sr", "screen resolution must look like 1920x1080")
	}

	// The visitor. A cookieless property's browser hits all get the daily
	// visitor ID, any cid they carry ignored: the property's setting
	// decides, not the script tag (without data-cookieless the tracker
	// sets its cookie and sends its ID all the same).
	switch {
	case p.Cookieless && origin == hit.OriginBrowser:
		salt := c.saltOf(h.Time, p.Location)
		if salt == nil {
			return nil, errNoSalt
		}
		h.ClientID = visitorID(salt, p.ID, c.ip, c.userAgent)
		h.Cookieless = true
	case h.ClientID == "" && origin == hit.OriginMeasurement && p.Cookieless:
		// A cookieless ID from the merchant's server's address would make
		// one visitor of all its hits. The browser's ID is derived from
		// the visitor's address, which the server does not send, and the
		// tag sets no cookie: the two cannot share a visitor.
		return malformed("client_id", "the client ID is missing: send an ID of the visitor's (a customer number); the property is cookieless, so its tag sets no _at_cid cookie and server hits cannot join the visitor's browser sessions")
	case h.ClientID == "" && origin == hit.OriginMeasurement:
		return malformed("client_id", "the client ID is missing: send the visitor's client_id (the tracker's _at_cid cookie), so that the hit joins the visitor's browser sessions")
	case h.ClientID == "":
		if h.UserID != "" {
			return malformed("cid", "the client ID is missing: uid alone does not name a visitor here; send the visitor's cid as well (the tracker's _at_cid cookie, or an ID of the visitor's own on a server)")
		}
		return malformed("cid", "the client ID is missing: the property is not cookieless (remove data-cookieless from the script tag, or make the property cookieless)")
	}

	// Well formed, but from no page of the property's (checked last, so
	// that a malformed hit is told what is wrong with it).
	if host == "" && p.Rules != nil && foreignHost(p.Rules, "", origin) {
		return nil, parse.Errorf(parse.ReasonForeignHost, "dl", "the hit names no host (dl or dh), and the property accepts only its hostnames (%s)", strings.Join(p.Rules.Hostnames(), ", "))
	}

	h.IPExcludedBy, h.RuleVersion, h.IP = c.addr.excludedBy, c.addr.ruleVersion, c.addr.ip

	dated := h.Time
	h.Time = sent
	h.ID = h.DeriveID(f.EventID)
	h.Time = dated
	if tx := purchaseTransaction(f, origin); tx != "" {
		// GA4 counts a purchase once per transaction_id: a webhook and a
		// thank-you page both forwarding it, or a retry after a 503 in
		// another second, made it two.
		h.ID = h.DeriveID(tx)
		return h, nil
	}
	if us := sent.UnixMicro() % 1e6; f.EventID == "" && f.TimestampMicros != "" && us != 0 {
		// The sender's own time, to the microsecond, which a retry sends
		// again: two events of one second at two instants are two events.
		h.ID = hit.TimedID(h.ID, us)
	}
	if f.EventID == "" && f.CacheBuster != "" {
		h.ID = hit.BustedID(h.ID, f.CacheBuster)
	}
	return h, nil
}

// purchaseTransaction is the key a Measurement API purchase without an
// event_id is counted once by, its visitor's purchase of transaction_id,
// as GA4 de-duplicates purchases; "" for any other hit.
func purchaseTransaction(f *parse.Fields, origin hit.Origin) string {
	tx := f.Params["transaction_id"]
	if origin != hit.OriginMeasurement || f.EventID != "" || f.Action != "purchase" || tx == "" {
		return ""
	}
	return "transaction\x00" + tx
}

// errNoSalt is build's answer for a hit that needs a cookieless visitor ID
// when the request has no salt for its date. handle fetches the salts of
// every date a hit can have before building, so it does not happen; were
// it to, the request is answered 503 (never dead-lettered, never given a
// made-up ID).
var errNoSalt = parse.Errorf(parse.ReasonMalformed, "cid", "no cookieless salt for the hit's date")

// decimalNumber reports whether s is a number as JSON writes it, leading
// zeros allowed: an optional '-', digits, optionally '.' and digits, and
// optionally an exponent (e or E, an optional sign, digits).
func decimalNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	n := len(s)
	s = strings.TrimLeft(s, "0123456789")
	if len(s) == n {
		return false // no integer part
	}
	if rest, ok := strings.CutPrefix(s, "."); ok {
		if s = strings.TrimLeft(rest, "0123456789"); len(s) == len(rest) {
			return false
		}
	}
	if s == "" {
		return true
	}
	if s[0] != 'e' && s[0] != 'E' {
		return false
	}
	s = s[1:]
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// engagementMS reads an engagement time, in whole milliseconds from 0 to
// one day. /collect's et must be whole (the tracker sends it so); the
// Measurement API's engagement_time_msec may be a fraction, as
// performance.now() gives one, and is rounded to the nearest millisecond.
func engagementMS(s string, mp bool) (int64, bool) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil || !mp {
		return ms, err == nil && ms >= 0 && ms <= dayMS
	}
	v, err := strconv.ParseFloat(s, 64)
	if !decimalNumber(s) || err != nil || v < 0 || math.Round(v) > float64(dayMS) {
		return 0, false
	}
	return int64(math.Round(v)), true
}

// wholeNumber returns the integer s writes in decimal, in the usual form
// or, as a JSON number may be written, with a fraction or an exponent
// (1.7e15), as long as its value is a whole number within int64. It works
// on the digits, so that no rounding makes a fraction whole.
func wholeNumber(s string) (int64, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	if !decimalNumber(s) {
		return 0, false
	}
	sign := ""
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		sign, s = "-", rest
	}
	mant, exp := s, ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant, exp = s[:i], s[i+1:]
	}
	whole, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	if digits == "" {
		return 0, true
	}
	e := 0
	if exp != "" {
		var err error
		if e, err = strconv.Atoi(exp); err != nil || e < -1<<20 || e > 1<<20 {
			return 0, false // digits that many places off are no int64
		}
	}
	// digits × 10^e: whole when the digits after the point are zeros.
	for e -= len(frac); e < 0; e++ {
		if digits[len(digits)-1] != '0' {
			return 0, false
		}
		digits = digits[:len(digits)-1]
	}
	if len(digits)+e > 19 {
		return 0, false
	}
	n, err := strconv.ParseInt(sign+digits+strings.Repeat("0", e), 10, 64)
	return n, err == nil
}

// foreignHost applies exactly the host rule processing applies
// (rules.Compiled.Exclusion with reason foreign_host): with hostnames
// configured, a host that is none of them nor a subdomain of one, or no
// host on a browser hit.
func foreignHost(c *rules.Compiled, host string, origin hit.Origin) bool {
	if len(c.Hostnames()) == 0 {
		return false
	}
	reason, excluded := c.Exclusion(&hit.Hit{Hostname: host, Origin: origin})
	return excluded && reason == rules.ReasonForeignHost
}

// withoutUserinfo returns the address u without the user information of
// its authority (the "user:password@" of https://user:password@host/),
// and u itself when it has none (without a copy: most have no '@').
func withoutUserinfo(u string) string {
	at := strings.IndexByte(u, '@')
	if at < 0 {
		return u
	}
	start := strings.Index(u, "://")
	if start < 0 || start > at {
		return u
	}
	start += len("://")
	end := len(u)
	if i := strings.IndexAny(u[start:], "/?#"); i >= 0 {
		end = start + i
	}
	if at >= end {
		return u // an '@' of the path, query or fragment
	}
	return u[:start] + u[start+strings.LastIndexByte(u[start:end], '@')+1:]
}

// splitLocation returns the host and the path with its query ("/" when
// empty; in hit.CanonicalPath's form, fragment dropped) of an absolute
// http(s) URL, and false for anything else. Most locations are plain
// (letters, digits and a few punctuation marks, already in canonical
// form) and are split directly; any other goes through url.Parse
// (splitParsedLocation), which would give the plain ones the same result
// (TestSplitLocationAgreesWithURLParse).
//
// Browsers send location.href as the page's address was written, and a
// '%' not followed by two hex digits is common there (/sale-50%-off, a
// fragment #100%, a '%E' where the tracker cut a long URL), which
// url.Parse refuses: the fragment is dropped before parsing, and such a
// '%' in the path is taken as itself, escaped as %25.
func splitLocation(loc string) (host, path string, ok bool) {
	if host, path, ok := splitPlainLocation(loc); ok {
		return host, path, true
	}
	return splitParsedLocation(loc)
}

// splitParsedLocation is splitLocation through url.Parse, for any
// location.
func splitParsedLocation(loc string) (host, path string, ok bool) {
	loc, _, _ = strings.Cut(loc, "#")
	// The path: from the first '/' after the scheme's "//" to the query,
	// which url.Parse takes as it is.
	start, end := 0, strings.IndexByte(loc, '?')
	if end < 0 {
		end = len(loc)
	}
	if i := strings.Index(loc[:end], "//"); i >= 0 {
		start = i + 2
	}
	if i := strings.IndexByte(loc[start:end], '/'); i >= 0 {
		if path, esc := loc[start+i:end], hit.EscapeStrayPercent(loc[start+i:end]); len(esc) != len(path) {
			loc = loc[:start+i] + esc + loc[end:]
		}
	}
	u, err := url.Parse(loc)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", false
	}
	// The path as sent: url.Parse keeps it in RawPath when escaping the
	// decoded Path would not give it back.
	path = u.RawPath
	if path == "" {
		path = u.EscapedPath()
	}
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	return u.Host, hit.CanonicalPath(path), true
}

// splitPlainLocation splits loc when it is "http://" or "https://", then
// a host of letters, digits, dots and hyphens, then a path and query of
// plainURLByte bytes (and no "#").
func splitPlainLocation(loc string) (host, path string, ok bool) {
	rest, ok := strings.CutPrefix(loc, "https://")
	if !ok {
		if rest, ok = strings.CutPrefix(loc, "http://"); !ok {
			return "", "", false
		}
	}
	end := len(rest)
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c == '/' || c == '?' {
			end = i
			break
		}
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return "", "", false
		}
	}
	host, path = rest[:end], rest[end:]
	if host == "" {
		return "", "", false
	}
	for i := 0; i < len(path); i++ {
		if !plainURLByte[path[i]] {
			return "", "", false
		}
	}
	p, q, hasQuery := strings.Cut(path, "?")
	switch {
	case p == "" && q != "":
		return host, "/?" + q, true
	case p == "":
		return host, "/", true
	case hasQuery && q != "":
		return host, path, true // p + "?" + q, without a copy
	}
	return host, p, true
}

// plainURLByte holds the bytes a plain location's path and query may have:
// those that url.Parse keeps as they are in both.
var plainURLByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~/?=&+,;:" {
		t[c] = true
	}
	return t
}()
