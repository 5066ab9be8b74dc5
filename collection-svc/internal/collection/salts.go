package collection

import (
	"context"
	"log/slog"
	"time"

	"github.com/acme/analytics/collection-svc/internal/collect"
)

// saltPrefetchInterval is how often prefetchSalts checks that the salts it
// keeps warm are cached; a cached salt costs no request.
const saltPrefetchInterval = time.Minute

// prefetchSalts keeps the cookieless salts of yesterday, today and
// tomorrow in UTC (every date a hit arriving now can have, in any time
// zone, 4 hours late included) in src's cache until ctx is done, checking
// every interval. A request then seldom waits for a salt, and tomorrow's is
// at hand a day before the first time zone reaches it, so an outage of
// config-svc shorter than a day does not hold up cookieless hits at
// midnight. A failure is logged, and tried again at the next tick.
func prefetchSalts(ctx context.Context, src collect.Salts, now func() time.Time, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		today := now().UTC()
		var failed error
		for _, d := range []int{-1, 0, 1} {
			day := today.AddDate(0, 0, d).Format(time.DateOnly)
			if _, err := src.CookielessSalt(ctx, day); err != nil && ctx.Err() == nil {
				failed = err
			}
		}
		switch {
		case failed != nil && !failing:
			log.Warn("cannot fetch the cookieless salts; hits of cookieless properties will be answered 503 once the cached salts do not cover them", slog.Any("error", failed))
		case failed == nil && failing:
			log.Info("cookieless salts fetched again")
		}
		failing = failed != nil
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
