package collect

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/acme/analytics/pkg/clientaddr"
)

// ClientIP returns the address of the client that sent r: the connection's
// peer, or, when the peer is one of the trusted proxies, what they wrote
// in X-Forwarded-For (clientaddr.Client, as the gateway reads it).
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	return clientaddr.Client(clientaddr.Parse(r.RemoteAddr), r.Header.Values("X-Forwarded-For"), trusted)
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
