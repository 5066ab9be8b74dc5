package configclient

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"time"
)

// SaltBytes is the size of a cookieless salt.
const SaltBytes = 32

// maxSaltDates bounds the salts cached: the three dates config-svc serves
// (yesterday, today and tomorrow in UTC) and, at worst, one that the
// client's own midnight has not yet dropped.
const maxSaltDates = 4

// CookielessSalt returns the salt of collection's cookieless visitor IDs
// for day, a date (YYYY-MM-DD), from config-svc (GET
// /internal/v1/cookieless-salts/{date}), which makes it on the first
// request and gives every caller the same one. A date's salt never
// changes, so once fetched it is answered from memory, without I/O, for
// as long as it is of use: until the date is before yesterday in UTC,
// when config-svc no longer serves it and no hit can need it (config-svc
// destroys it about a day later). Concurrent calls for an uncached date
// fetch it once. The salt is shared: callers must not modify it.
//
// It is safe for concurrent use and needs no Run. An error (wrapping
// ErrUnavailable when config-svc could not give the salt: unreachable, or
// refusing a date more than a day from its today) means the salt is not
// known now: the caller must not make up another.
func (c *Client) CookielessSalt(ctx context.Context, day string) ([]byte, error) {
	if m := c.salts.Load(); m != nil {
		if salt, ok := (*m)[day]; ok {
			return salt, nil
		}
	}
	if _, err := time.Parse(time.DateOnly, day); err != nil {
		return nil, fmt.Errorf("cookieless salt: %q is not a date (YYYY-MM-DD)", day)
	}
	v, err, _ := c.flight.Do("salt:"+day, func() (any, error) {
		if m := c.salts.Load(); m != nil {
			if salt, ok := (*m)[day]; ok { // fetched by a flight that just ended
				return salt, nil
			}
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.RequestTimeout)
		defer cancel()
		var out CookielessSalt
		err := c.get(fctx, "/internal/v1/cookieless-salts/"+url.PathEscape(day), &out)
		switch {
		case errors.Is(err, ErrNotFound):
			err = fmt.Errorf("%w: config-svc does not serve cookieless salts (is it older than this service?)", ErrUnavailable)
		case err == nil && (out.Date != day || len(out.Salt) != SaltBytes):
			err = fmt.Errorf("%w: config-svc answered a salt of %d bytes for %q, asked for %s", ErrUnavailable, len(out.Salt), out.Date, day)
		}
		if err != nil {
			c.m.saltFetches.WithLabelValues("error").Inc()
			return nil, fmt.Errorf("cookieless salt of %s: %w", day, err)
		}
		c.m.saltFetches.WithLabelValues("ok").Inc()
		c.keepSalt(day, out.Salt, time.Now())
		return out.Salt, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// keepSalt caches the salt of day, unless the date is already of no use,
// dropping those that are.
func (c *Client) keepSalt(day string, salt []byte, now time.Time) {
	c.saltMu.Lock()
	defer c.saltMu.Unlock()
	m := map[string][]byte{}
	if old := c.salts.Load(); old != nil {
		m = maps.Clone(*old)
	}
	m[day] = salt
	c.setSaltsLocked(m, now)
}

// dropOldSalts drops the salts of dates before yesterday (UTC).
func (c *Client) dropOldSalts(now time.Time) {
	c.saltMu.Lock()
	defer c.saltMu.Unlock()
	if old := c.salts.Load(); old != nil {
		c.setSaltsLocked(maps.Clone(*old), now)
	}
}

// setSaltsLocked publishes m without the dates before yesterday (UTC)
// and, should there be more than maxSaltDates (a clock far off), the
// oldest; c.saltMu is held.
func (c *Client) setSaltsLocked(m map[string][]byte, now time.Time) {
	yesterday := now.UTC().AddDate(0, 0, -1).Format(time.DateOnly)
	for day := range m {
		if day < yesterday { // dates in this form sort as strings
			delete(m, day)
		}
	}
	if len(m) > maxSaltDates {
		days := slices.Sorted(maps.Keys(m))
		for _, day := range days[:len(days)-maxSaltDates] {
			delete(m, day)
		}
	}
	c.salts.Store(&m)
}
