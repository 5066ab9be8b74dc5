package collect

import (
	"strconv"
	"time"

	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
)

// Timing and exception hits are queued as non-interaction events, as GA4
// made Universal Analytics' timing and exception hits events
// (timing_complete, exception): the reports of events show them, and
// processing's rules for events hold for them (they start sessions, and
// never cancel a bounce). docs/collection.md, "Timing and exception hits",
// says why each field goes where.
const (
	// timingCategory is a timing's category when it has none (utc, the
	// event_category of a timing_complete).
	timingCategory = "timing"
	// exceptionCategory is every exception's category.
	exceptionCategory = "exception"
	// notSet is an exception's action when it has no description, as
	// reports name a missing dimension.
	notSet = "(not set)"
	// dayMS bounds a timing (utt) and an engagement time (et): a longer
	// time is no page's, and would dominate the average of its row.
	dayMS = int64(24 * time.Hour / time.Millisecond)
)

// namedField is a field of a hit as sent, and its /collect name.
type namedField struct {
	name string
	get  func(*parse.Fields) string
}

// contentFields are the fields only a timing hit (the first four) or an
// exception hit (the last two) carries, and eventFields those of an event
// that such a hit may not carry (mapEvent sets them).
var (
	contentFields = []namedField{
		{"utc", func(f *parse.Fields) string { return f.TimingCategory }},
		{"utv", func(f *parse.Fields) string { return f.TimingVariable }},
		{"utt", func(f *parse.Fields) string { return f.TimingTime }},
		{"utl", func(f *parse.Fields) string { return f.TimingLabel }},
		{"exd", func(f *parse.Fields) string { return f.ExceptionDescription }},
		{"exf", func(f *parse.Fields) string { return f.ExceptionFatal }},
	}
	eventFields = []namedField{
		{"ec", func(f *parse.Fields) string { return f.Category }},
		{"ea", func(f *parse.Fields) string { return f.Action }},
		{"el", func(f *parse.Fields) string { return f.Label }},
		{"ev", func(f *parse.Fields) string { return f.Value }},
	}
)

// checkContent refuses a hit whose fields belong to another hit type: a
// timing's or an exception's on a pageview, an event or a ping (they
// would be silently lost), or an event's on a timing or an exception
// (which mapEvent fills; two categories would leave it to us to choose).
// A timing's fields on an exception, and the reverse, are refused too.
// Measurement API events never carry them (parse.Measurement sets only
// their own type's).
func checkContent(t hit.Type, f *parse.Fields) *parse.Error {
	timingOrException := t == hit.TypeTiming || t == hit.TypeException
	if !timingOrException && f.TimingCategory == "" && f.TimingVariable == "" && f.TimingTime == "" &&
		f.TimingLabel == "" && f.ExceptionDescription == "" && f.ExceptionFatal == "" {
		return nil // nearly every hit, without a call per field
	}
	if timingOrException {
		for _, e := range eventFields {
			if e.get(f) != "" {
				return parse.Errorf(parse.ReasonMalformed, e.name, "%s is an event's field; %s", e.name, ownFields(t))
			}
		}
	}
	for i, c := range contentFields {
		if c.get(f) == "" {
			continue
		}
		own := i < 4 && t == hit.TypeTiming || i >= 4 && t == hit.TypeException
		if !own {
			kind := "timing hits (t=timing)"
			if i >= 4 {
				kind = "exception hits (t=exception)"
			}
			return parse.Errorf(parse.ReasonMalformed, c.name, "%s is only for %s, not for t=%s", c.name, kind, t)
		}
	}
	return nil
}

func ownFields(t hit.Type) string {
	if t == hit.TypeTiming {
		return "a timing hit carries its own (utc, utv, utt, utl)"
	}
	return "an exception hit carries its own (exd, exf)"
}

// mapEvent makes h, a timing or an exception hit read from f, the
// non-interaction event reports show it as:
//
//   - timing: category utc (else "timing"), action utv (required), label
//     utl, value utt (required: whole milliseconds, 0 to one day);
//   - exception: category "exception", action exd (else "(not set)"),
//     label "fatal" or "non-fatal" (exf; absent, fatal on /collect as in
//     Universal Analytics, whose default it was, and non-fatal on the
//     Measurement API as in GA4, whose fatal is true or absent), no value.
//
// Its errors name /collect's fields (measurementError renames them).
func mapEvent(h *hit.Hit, f *parse.Fields, origin hit.Origin) *parse.Error {
	mp := origin == hit.OriginMeasurement
	malformed := func(field, format string, args ...any) *parse.Error {
		return parse.Errorf(parse.ReasonMalformed, field, format, args...)
	}
	switch h.Type {
	case hit.TypeTiming:
		if f.TimingVariable == "" {
			if mp {
				return malformed("utv", "a timing_complete event needs params.name, what was timed (e.g. load)")
			}
			return malformed("utv", "a timing hit needs the name of what was timed (utv, e.g. utv=load)")
		}
		if f.TimingTime == "" {
			if mp {
				return malformed("utt", "a timing_complete event needs params.value, the time in milliseconds")
			}
			return malformed("utt", "a timing hit needs the time in milliseconds (utt)")
		}
		ms, err := strconv.ParseInt(f.TimingTime, 10, 64)
		if err != nil || ms < 0 || ms > dayMS {
			return malformed("utt", "the timing must be a whole number of milliseconds between 0 and one day (%d); round a fraction", dayMS)
		}
		h.Category = f.TimingCategory
		if h.Category == "" {
			h.Category = timingCategory
		}
		h.Action, h.Label = f.TimingVariable, f.TimingLabel
		h.Value, h.HasValue = float64(ms), true
	case hit.TypeException:
		fatal := !mp
		switch f.ExceptionFatal {
		case "":
		case "1", "true":
			fatal = true
		case "0", "false":
			fatal = false
		default:
			return malformed("exf", "%.20q is not a flag: send 1 (or true in JSON) for a fatal exception, 0 (false) for another", f.ExceptionFatal)
		}
		h.Category, h.Action, h.Label = exceptionCategory, hit.CutUTF8(f.ExceptionDescription, maxActionBytes), "non-fatal"
		if h.Action == "" {
			h.Action = notSet
		}
		if fatal {
			h.Label = "fatal"
		}
	default:
		return nil
	}
	markNonInteraction(h)
	h.Type = hit.TypeEvent
	return nil
}

// markNonInteraction makes h a non-interaction event's hit: it never
// cancels a bounce.
func markNonInteraction(h *hit.Hit) {
	if h.Params == nil {
		h.Params = make(map[string]string, 1)
	}
	h.Params["non_interaction"] = "1"
}
