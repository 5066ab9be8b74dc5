package rollup

import (
	"testing"
	"time"
)

// A day begins at its first instant, whatever the clock does at its
// midnight.
func TestDayStart(t *testing.T) {
	zone := func(name string) *time.Location {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	for _, tt := range []struct {
		zone, day, want string
	}{
		{"Europe/Berlin", "2026-03-29", "2026-03-29T00:00:00+01:00"},
		{"America/Havana", "2026-03-08", "2026-03-08T01:00:00-04:00"},   // 23:59:59 is followed by 01:00
		{"America/Havana", "2026-11-01", "2026-11-01T00:00:00-04:00"},   // 01:00 goes back to 00:00: the first midnight
		{"America/Asuncion", "2024-03-24", "2024-03-24T00:00:00-04:00"}, // 24:00 went back to 23:00 the day before
		{"Australia/Sydney", "2026-04-05", "2026-04-05T00:00:00+11:00"},
	} {
		day, _ := time.Parse(time.DateOnly, tt.day)
		if got := DayStart(day, zone(tt.zone)).Format(time.RFC3339); got != tt.want {
			t.Errorf("%s in %s begins at %s, want %s", tt.day, tt.zone, got, tt.want)
		}
	}
	// The hour that Sydney repeats on 2026-04-05 begins at its first
	// occurrence, east of UTC as west of it.
	second := time.Date(2026, 4, 5, 2, 0, 0, 0, zone("Australia/Sydney"))
	if got := FirstOccurrence(second, zone("Australia/Sydney")).Format(time.RFC3339); got != "2026-04-05T02:00:00+11:00" {
		t.Errorf("02:00 in Sydney on 2026-04-05 first occurs at %s", got)
	}
}
