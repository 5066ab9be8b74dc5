package query

import (
	"fmt"
	"time"

	"github.com/acme/analytics/pkg/rollup"
)

// Dates are property-local calendar dates, represented as midnight UTC of
// that date (as rollup rows store them).

// dateOf returns the property-local date of t.
func dateOf(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func addDays(day time.Time, n int) time.Time { return day.AddDate(0, 0, n) }

// daysBetween counts the days from one date to another (both midnight
// UTC). It counts Unix days: a time.Duration ends at 292 years, so
// to.Sub(from) would make 0001-01-01 to 9999-12-31 106,752 days long.
func daysBetween(from, to time.Time) int { return int((to.Unix() - from.Unix()) / (24 * 60 * 60)) }

func formatDate(day time.Time) string { return day.Format(time.DateOnly) }

// DateRange is an inclusive range of property-local dates.
type DateRange struct {
	From, To time.Time
}

// Days returns the number of days in r.
func (r DateRange) Days() int { return daysBetween(r.From, r.To) + 1 }

// previous returns the range of the same length just before r.
func (r DateRange) previous() DateRange {
	n := r.Days()
	return DateRange{From: addDays(r.From, -n), To: addDays(r.From, -1)}
}

// Presets are the named date ranges, relative to today in the property's
// time zone. "last N days" ends yesterday (today is incomplete), as in GA.
var Presets = []string{"today", "yesterday", "last_7_days", "last_14_days", "last_28_days", "last_30_days", "last_90_days", "this_week", "last_week", "this_month", "last_month"}

// DefaultPreset is the range of a request without one.
const DefaultPreset = "last_28_days"

func presetRange(name string, today time.Time) (DateRange, bool) {
	lastN := func(n int) DateRange { return DateRange{From: addDays(today, -n), To: addDays(today, -1)} }
	monday := weekStart(today)
	first := time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, time.UTC)
	switch name {
	case "today":
		return DateRange{today, today}, true
	case "yesterday":
		y := addDays(today, -1)
		return DateRange{y, y}, true
	case "last_7_days":
		return lastN(7), true
	case "last_14_days":
		return lastN(14), true
	case "last_28_days":
		return lastN(28), true
	case "last_30_days":
		return lastN(30), true
	case "last_90_days":
		return lastN(90), true
	case "this_week":
		return DateRange{monday, today}, true
	case "last_week":
		return DateRange{addDays(monday, -7), addDays(monday, -1)}, true
	case "this_month":
		return DateRange{first, today}, true
	case "last_month":
		return DateRange{first.AddDate(0, -1, 0), addDays(first, -1)}, true
	}
	return DateRange{}, false
}

// weekStart returns the Monday of day's ISO week.
func weekStart(day time.Time) time.Time {
	return addDays(day, -((int(day.Weekday()) + 6) % 7))
}

// Granularity is the bucket size of a time series.
type Granularity string

// Granularities.
const (
	None  Granularity = ""
	Hour  Granularity = "hour"
	Day   Granularity = "day"
	Week  Granularity = "week"  // ISO weeks, Monday to Sunday
	Month Granularity = "month" // calendar months
)

// Bucket is one period of a time series, clipped to the range.
type Bucket struct {
	Label string    // 2026-03-02T14 (hour), 2026-03-02, 2026-W10, 2026-03
	Start time.Time // the instant it begins, in the property's time zone
	from  time.Time // first date of the bucket within the range
	hour  int       // local hour (hour granularity)
}

// buckets returns the periods of r at granularity g that have begun by
// now (a series never shows the future as zeros), in order.
func buckets(r DateRange, g Granularity, loc *time.Location, now time.Time) []Bucket {
	var out []Bucket
	for d := r.From; !d.After(r.To); d = addDays(d, 1) {
		start := rollup.DayStart(d, loc)
		if start.After(now) {
			break
		}
		switch g {
		case Hour:
			for _, h := range localHours(d, loc) {
				if h.start.After(now) {
					break
				}
				out = append(out, Bucket{Label: fmt.Sprintf("%sT%02d", formatDate(d), h.hour), Start: h.start, from: d, hour: h.hour})
			}
		case Day:
			out = append(out, Bucket{Label: formatDate(d), Start: start, from: d})
		case Week:
			if d.Equal(r.From) || d.Weekday() == time.Monday {
				y, w := d.ISOWeek()
				out = append(out, Bucket{Label: fmt.Sprintf("%d-W%02d", y, w), Start: start, from: d})
			}
		case Month:
			if d.Equal(r.From) || d.Day() == 1 {
				out = append(out, Bucket{Label: d.Format("2006-01"), Start: start, from: d})
			}
		}
	}
	return out
}

type localHour struct {
	hour  int
	start time.Time
}

// localHours returns the local hours of the property-local date day, in
// order, each with the first instant of the day whose local time is in
// it. It walks the day's instants rather than asking time.Date for each
// hour's :00, which a change of the clock can skip where the hour itself
// goes on: Pacific/Chatham goes from 02:45 to 03:45, so its 03 begins at
// 03:45, and America/St_Johns once went from 00:00:59 to 01:01. A local
// hour that occurs twice (the clock set back) is one hour, beginning at
// its first occurrence, and the instants of another date that a clock set
// back over midnight puts inside the day are not its.
func localHours(day time.Time, loc *time.Location) []localHour {
	var out []localHour
	end := rollup.DayStart(addDays(day, 1), loc)
	for t := rollup.DayStart(day, loc); t.Before(end); {
		l := t.In(loc)
		if dateOf(t, loc).Equal(day) && (len(out) == 0 || out[len(out)-1].hour < l.Hour()) {
			out = append(out, localHour{hour: l.Hour(), start: t})
		}
		// The next local hour begins at the next :00 of this offset, or
		// where the offset changes, if sooner.
		next := t.Add(time.Hour - time.Duration(l.Minute())*time.Minute - time.Duration(l.Second())*time.Second - time.Duration(l.Nanosecond()))
		if _, change := l.ZoneBounds(); !change.IsZero() && change.After(t) && change.Before(next) {
			next = change
		}
		t = next
	}
	return out
}

// bucketIndex maps each day of r to the index of its bucket (day and
// coarser granularities).
func bucketIndex(r DateRange, bs []Bucket) map[time.Time]int {
	idx := map[time.Time]int{}
	b := -1
	for d := r.From; !d.After(r.To); d = addDays(d, 1) {
		if b+1 < len(bs) && bs[b+1].from.Equal(d) {
			b++
		}
		if b >= 0 {
			idx[d] = b
		}
	}
	return idx
}

// EarliestDate is the earliest day a report may name (from): no hit is
// older.
var EarliestDate = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)

// parseDate parses a YYYY-MM-DD date. A date of that form whose month or
// day does not exist says which: "use YYYY-MM-DD" would not help with
// 2026-02-30.
func parseDate(s string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err == nil {
		return t, nil
	}
	if y, m, d, ok := dateFields(s); ok {
		if m < 1 || m > 12 {
			return time.Time{}, fmt.Errorf("%q is not a date: there is no month %d (YYYY-MM-DD: the month comes before the day)", s, m)
		}
		days := time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
		return time.Time{}, fmt.Errorf("%q is not a date: %s %d has no day %d (it has days 1 to %d)", s, time.Month(m), y, d, days)
	}
	return time.Time{}, fmt.Errorf("%q is not a date; use YYYY-MM-DD (e.g. 2026-03-01)", s)
}

// dateFields splits a string of the form YYYY-MM-DD into its numbers,
// whether or not they make a date.
func dateFields(s string) (y, m, d int, ok bool) {
	if len(s) != len("2006-01-02") || s[4] != '-' || s[7] != '-' {
		return 0, 0, 0, false
	}
	num := func(part string) int {
		n := 0
		for _, c := range []byte(part) {
			if c < '0' || c > '9' {
				ok = false
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	ok = true
	y, m, d = num(s[:4]), num(s[5:7]), num(s[8:])
	return y, m, d, ok
}
