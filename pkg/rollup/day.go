package rollup

import "time"

// DayStart returns the instant the property-local date day (as midnight
// UTC of that date, as every table keeps it) begins in loc: the first
// instant whose local date it is. That is not always the local midnight
// time.Date gives: where the clock jumps from 23:59:59 to 01:00
// (America/Havana 2026-03-08) the day begins at 01:00, and where it goes
// back over midnight, at the first of the two midnights (time.Date's
// choice for a local time that never occurs or occurs twice is
// unspecified).
func DayStart(day time.Time, loc *time.Location) time.Time {
	y, m, d := day.Date()
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	if ly, lm, ld := t.In(loc).Date(); time.Date(ly, lm, ld, 0, 0, 0, 0, time.UTC).Before(time.Date(y, m, d, 0, 0, 0, 0, time.UTC)) {
		// Midnight skipped: t is on the day before, whose last zone
		// period ends where the day begins.
		_, end := t.ZoneBounds()
		return end
	}
	return FirstOccurrence(t, loc)
}

// FirstOccurrence returns the first instant whose local time in loc is
// t's: t, or, where the clock went back over it (a local hour that occurs
// twice), the same local time up to two hours earlier.
func FirstOccurrence(t time.Time, loc *time.Location) time.Time {
	local := t.In(loc)
	for _, back := range []time.Duration{2 * time.Hour, time.Hour, 30 * time.Minute} {
		u := t.Add(-back).In(loc)
		if u.Year() == local.Year() && u.YearDay() == local.YearDay() && u.Hour() == local.Hour() && u.Minute() == local.Minute() && u.Second() == local.Second() {
			return u
		}
	}
	return t
}
