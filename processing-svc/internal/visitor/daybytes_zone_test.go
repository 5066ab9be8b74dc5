package visitor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/processing-svc/internal/derive"
	"github.com/acme/analytics/processing-svc/internal/session"
)

// TestDayBytesAcrossAZoneAndBack: a day's bytes are kept for one zone; a
// hit under another zone whose day there has too few hits to be summed
// (minLiveForBytes) is added to the live hits, and the zone then changes
// back (the property's zone set and reverted, both UTC the same
// *time.Location). The bytes kept must still be those of the live hits:
// otherwise the visitor limit lets through hits that a fresh state (a
// replay, reprocessing) excludes.
func TestDayBytesAcrossAZoneAndBack(t *testing.T) {
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	v, c := New("c1"), derive.New()
	utc := settings
	utc.Source = "utc"
	jp := settings
	jp.Location, jp.Source = tokyo, "tokyo"
	day := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	at := day.Add(15 * time.Hour) // midnight in Tokyo
	place := func(id string, when time.Time, s session.Settings) {
		h := &session.Hit{ID: id, Type: hit.TypePageview, Time: when, Path: "/" + strings.Repeat("p", 100)}
		if out, _ := v.Place(h, at.Add(time.Hour), s, c); out != Applied {
			t.Fatalf("hit %s: %v", id, out)
		}
		v.Settle(c)
	}
	for i := range minLiveForBytes + 6 {
		place(fmt.Sprint("u", i), at.Add(time.Duration(i)*time.Second), utc)
	}
	// 23:50 in Tokyo, on a Tokyo day with this one hit; UTC's day of
	// the others.
	place("jp", at.Add(-10*time.Minute), jp)
	place("back", at.Add(30*time.Minute), utc)
	for start, n := range v.dayBytes {
		hits, _ := v.liveOnDay(start, v.dayZone)
		want := 0
		for _, o := range hits {
			want += hitBytes(o)
		}
		if n != want {
			t.Fatalf("the day of %v holds %d bytes in %d hits, counted %d", start, want, len(hits), n)
		}
	}
}
