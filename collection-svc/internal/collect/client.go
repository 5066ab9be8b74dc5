package collect

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/acme/analytics/collection-svc/internal/device"
	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/clientaddr"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
)

// ClientIP returns the address of the client that sent r: the connection's
// peer, or, when the peer is one of the trusted proxies, what they wrote
// in X-Forwarded-For (clientaddr.Client, as the gateway reads it).
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	return clientaddr.Client(clientaddr.Parse(r.RemoteAddr), r.Header.Values("X-Forwarded-For"), trusted)
}

// maxUserAgent bounds the user agent kept of a request (real ones are a
// few hundred bytes); a longer one is cut.
const maxUserAgent = hit.MaxUserAgentBytes

// clientOf works out, once for a request r of origin (its items parsed)
// for property p, what it tells of the hit's sender: a browser's request
// its own address and user agent; a Measurement API request what it says
// of the visitor whose events its server forwards (visitorClient), never
// the server's own address or user agent (GA4's Measurement Protocol
// derives none of them either). Either goes through the same enrichment:
// the device parser and its crawler list, the geo database, the
// property's IP rules on the full address and its anonymization.
func (s *Server) clientOf(r *http.Request, origin hit.Origin, items []parse.Item, p *Property, received time.Time) client {
	c := client{received: received}
	if origin == hit.OriginMeasurement {
		c.err = visitorClient(&c, visitorOf(items))
	} else {
		// A browser's header is what it sends, bytes that are not UTF-8
		// included, which the device parser copied into the browser's
		// name and Cassandra refuses in a text column: they are replaced
		// (U+FFFD), as a Measurement API user_agent is refused for them.
		c.ip, c.userAgent = ClientIP(r, s.cfg.TrustedProxies), strings.ToValidUTF8(r.UserAgent(), "\uFFFD")
	}
	c.userAgent = hit.CutUTF8(c.userAgent, maxUserAgent) // at a character: a byte cut could split one
	if origin == hit.OriginBrowser || c.userAgent != "" {
		c.device = s.cfg.Devices.Parse(c.userAgent)
	}
	if c.country == "" { // a Measurement API request's user_location beats its ip_override
		c.country = s.cfg.GeoIP.Country(c.ip)
	}
	c.addr = addressingOf(p, c.ip)
	return c
}

// visitorOf returns the visitor's context of a Measurement API request,
// which every one of its events carries; nil when it gives none.
func visitorOf(items []parse.Item) *parse.Visitor {
	if len(items) == 0 {
		return nil
	}
	return items[0].Fields.Visitor
}

// maxDeviceName bounds the browser and OS names a Measurement API
// request gives (the names reports show are a few bytes: Chrome, iOS).
const maxDeviceName = 100

// visitorClient sets in c what a Measurement API request says of the
// visitor (v; nil: nothing): ip_override is the address (used in flight,
// stored truncated, as a browser's), user_agent the user agent,
// user_location.country_id the country (in upper case), device's
// category, browser and operating_system the device as given. It returns
// what is invalid among them, named as the sender wrote it; the message
// never holds the address.
func visitorClient(c *client, v *parse.Visitor) *parse.Error {
	if v == nil {
		return nil
	}
	malformed := func(field, format string, args ...any) *parse.Error {
		return parse.Errorf(parse.ReasonMalformed, field, format, args...)
	}
	if v.IPOverride != "" {
		ip, ok := visitorAddress(v.IPOverride)
		if !ok {
			return malformed("ip_override", "is not an IP address: send the visitor's address alone, like 203.0.113.7 or 2001:db8::1")
		}
		c.ip = ip
	}
	if !utf8.ValidString(v.UserAgent) {
		return malformed("user_agent", "is not valid UTF-8")
	}
	c.userAgent = v.UserAgent
	if v.CountryID != "" {
		cc := strings.ToUpper(v.CountryID)
		if len(cc) != 2 || !rules.ValidCountry(cc) || strings.Trim(v.CountryID, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			return malformed("user_location.country_id", "%.20q is not an ISO 3166-1 alpha-2 country code (like DE or US)", v.CountryID)
		}
		c.country = cc
	}
	// Checked by name and value, then set: a table of pointers into c
	// would move every request's client to the heap, a browser's too.
	for _, d := range [...]struct{ field, value string }{{"device.browser", v.Browser}, {"device.operating_system", v.OS}} {
		if len(d.value) > maxDeviceName {
			return malformed(d.field, "is %d bytes long; the limit is %d", len(d.value), maxDeviceName)
		}
		if !utf8.ValidString(d.value) {
			return malformed(d.field, "is not valid UTF-8")
		}
	}
	c.given.Browser, c.given.OS = v.Browser, v.OS
	if v.Category != "" {
		cat := strings.ToLower(v.Category)
		if !device.ValidCategory(cat) {
			return malformed("device.category", "%.20q is not a device category: send desktop, mobile, tablet, smart tv or other", v.Category)
		}
		c.given.Category = cat
	}
	return nil
}

// visitorAddress reads a Measurement API request's ip_override as the
// address of an X-Forwarded-For entry is read (clientaddr.Parse: a port
// is dropped, an IPv4-mapped address is IPv4); false for anything else,
// and for an address with a zone, which no visitor has.
func visitorAddress(s string) (netip.Addr, bool) {
	a := clientaddr.Parse(s)
	return a, a.IsValid() && a.Zone() == ""
}

// deadLetterPayload is what a dead letter keeps of payload, what a client
// sent to an endpoint of origin for property p (nil: not known): cut to a
// dead letter's size and, of a Measurement API request, its ip_override
// only as p's anonymization stores the visitor's address (strict when p
// is not known): the full address is used in flight only.
func deadLetterPayload(payload string, origin hit.Origin, p *Property) string {
	if origin == hit.OriginMeasurement {
		payload = parse.StoredIPOverride(payload, func(ip string) (string, bool) {
			if ip == "" {
				return "", true // none
			}
			a, ok := visitorAddress(ip)
			if !ok {
				return "", false
			}
			return storedIP(p, a), true
		})
	}
	if origin == hit.OriginBrowser {
		payload = storedUIP(payload, p)
	}
	return parse.Truncate(payload)
}

// uipInJSON finds a uip field in a batch hit kept as sent (one that could
// not be read into fields).
var uipInJSON = parse.NewTextField("uip")

// storedUIP returns payload, what a browser endpoint's dead letter keeps
// of a request (a query string, a body, a batch's hits), with the value of
// every uip, Universal Analytics' override of the visitor's address, as p
// stores an address (parse.NotStored, as parse.StoredIPOverride keeps one that
// is no address). /collect does not read uip, but a server that sends its
// visitors' hits there as it did to Universal Analytics sends each
// visitor's full address in it, which the dead letter kept for the
// topic's 30 days (before 2026-12-07).
func storedUIP(payload string, p *Property) string {
	if !strings.Contains(payload, "ip") && !strings.Contains(payload, "%") {
		return payload // no uip, however escaped
	}
	stored := func(v string) string {
		if a, ok := visitorAddress(strings.TrimSpace(v)); ok {
			return storedIP(p, a)
		}
		return parse.NotStored
	}
	payload = uipInJSON.Replace(payload, func(v string, _ bool) string { return stored(v) })
	// A query string, or a form-encoded body (one line each of a batch's):
	// pairs split at '&', ';' and line ends, names as any reading unescapes
	// them.
	var b strings.Builder
	for rest := payload; rest != ""; {
		i := strings.IndexAny(rest, "&;\n")
		pair, sep := rest, ""
		if i >= 0 {
			pair, sep, rest = rest[:i], rest[i:i+1], rest[i+1:]
		} else {
			rest = ""
		}
		if name, value, ok := strings.Cut(pair, "="); ok {
			if n, err := url.QueryUnescape(name); (err == nil && strings.TrimSpace(n) == "uip") || strings.EqualFold(name, "uip") {
				v, err := url.QueryUnescape(value)
				if err != nil {
					v = ""
				}
				pair = name + "=" + url.QueryEscape(stored(v))
			}
		}
		b.WriteString(pair)
		b.WriteString(sep)
	}
	return b.String()
}

// Cookieless visitor IDs, for properties in cookieless mode: a hash of
// (property, IP, user agent) under the salt of the hit's date in the
// property's time zone, so the ID changes at the property's midnight, where
// its sessions end anyway, and a visit is never split by it. The salt is
// random, made by config-svc on the first request for the date and the
// same for every instance (Salts), and destroyed about three days later:
// from then on nobody, we included, can tell which IP an ID was made from,
// even with the archive's truncated address and user agent at hand.

// date is a calendar date.
type date struct {
	year  int
	month time.Month
	day   int
}

// dateOf returns t's date in loc (nil: UTC).
func dateOf(t time.Time, loc *time.Location) date {
	if loc == nil {
		loc = time.UTC
	}
	y, m, d := t.In(loc).Date()
	return date{y, m, d}
}

func (d date) String() string {
	return time.Date(d.year, d.month, d.day, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
}

// daySalt is the salt of one date.
type daySalt struct {
	day  date
	salt []byte
}

// salts gets the salts of the dates, in the property's time zone loc, that
// the hits of a request received at c.received can have: a hit's time lies
// between the receipt less MaxQueueTime and the receipt, so at most two
// dates, those of either end. An error means a salt is not to be had now
// (the request is then answered 503, never given a made-up ID).
func (s *Server) salts(ctx context.Context, c *client, loc *time.Location) error {
	first, last := dateOf(c.received.Add(-MaxQueueTime), loc), dateOf(c.received, loc)
	for i, day := range [2]date{first, last} {
		if i == 1 && day == first {
			c.salts[1] = c.salts[0]
			break
		}
		salt, err := s.cfg.Salts.CookielessSalt(ctx, day.String())
		if err != nil {
			return fmt.Errorf("the cookieless salt of %s: %w", day, err)
		}
		c.salts[i] = daySalt{day, salt}
	}
	return nil
}

// saltOf returns the salt of t's date in loc, among those c has; nil when
// c has none for it.
func (c *client) saltOf(t time.Time, loc *time.Location) []byte {
	day := dateOf(t, loc)
	for _, ds := range c.salts {
		if ds.day == day && ds.salt != nil {
			return ds.salt
		}
	}
	return nil
}

// visitorID returns the cookieless visitor ID of (property, ip,
// userAgent) under a date's salt: "ckl-" and 32 hex digits.
func visitorID(salt []byte, propertyID string, ip netip.Addr, userAgent string) string {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(propertyID))
	m.Write([]byte{0})
	m.Write(ip.AsSlice())
	m.Write([]byte{0})
	m.Write([]byte(userAgent))
	return "ckl-" + hex.EncodeToString(m.Sum(nil)[:16])
}
