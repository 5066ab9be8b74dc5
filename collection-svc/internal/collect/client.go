package collect

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ClientIP returns the address of the client that sent r: the connection's
// peer, or, when the peer is one of the trusted proxies, the right-most
// address of X-Forwarded-For that is not itself a trusted proxy (each proxy
// appends the address it received the request from, so everything left of
// that could have been written by the client).
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := remoteAddr(r.RemoteAddr)
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	xff := r.Header.Values("X-Forwarded-For")
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		list := xff[i]
		for list != "" {
			var part string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				part, list = list[j+1:], list[:j]
			} else {
				part, list = list, ""
			}
			part = strings.TrimSpace(part)
			if part == "" {
				continue // "a, , b" or a trailing comma: no entry
			}
			a := remoteAddr(part)
			if !a.IsValid() {
				// Garbage where an address should be: trust nothing to
				// its left.
				return client
			}
			client = a
			if !isTrusted(a, trusted) {
				return a
			}
		}
	}
	return client
}

// remoteAddr parses "ip", "ip:port", "[ip]:port" or "[ip]".
func remoteAddr(s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap()
		}
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// cookieless derives visitor IDs for properties in cookieless mode: a
// hash of (property, IP, user agent) under a salt that changes every day
// of the property's time zone, at its midnight, where its sessions end
// anyway, so a visit is never split by a change of visitor ID. The salt
// is derived from a server secret and the date, so every instance agrees
// without coordination, and nobody (including us, once the day is over and
// the secret rotated) can recompute an ID from an IP.
type cookieless struct {
	secret []byte

	mu    sync.Mutex
	salts map[string][]byte // by date; the few dates current somewhere
}

func newCookieless(secret []byte) *cookieless {
	return &cookieless{secret: secret, salts: map[string][]byte{}}
}

func (c *cookieless) saltFor(day string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	salt, ok := c.salts[day]
	if !ok {
		if len(c.salts) >= 8 { // time zones span three dates at most
			clear(c.salts)
		}
		m := hmac.New(sha256.New, c.secret)
		m.Write([]byte("cookieless-salt/" + day))
		salt = m.Sum(nil)
		c.salts[day] = salt
	}
	return salt
}

// visitorID returns the visitor ID of (property, ip, userAgent) for a hit
// at t, on t's date in loc, the property's time zone (nil: UTC).
func (c *cookieless) visitorID(propertyID string, ip netip.Addr, userAgent string, t time.Time, loc *time.Location) string {
	if loc == nil {
		loc = time.UTC
	}
	m := hmac.New(sha256.New, c.saltFor(t.In(loc).Format(time.DateOnly)))
	m.Write([]byte(propertyID))
	m.Write([]byte{0})
	m.Write(ip.AsSlice())
	m.Write([]byte{0})
	m.Write([]byte(userAgent))
	return "ckl-" + hex.EncodeToString(m.Sum(nil)[:16])
}
