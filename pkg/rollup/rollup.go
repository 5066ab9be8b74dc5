// Package rollup is the contract between the processing service, which
// writes report rollups, and the report services, which read them: the
// report names, how dimension values are encoded, the metric set, and the
// rollup rows' CQL.
//
// A rollup row holds whole values for one (property, day, report,
// dimension value, processing shard). Values are never incremented in
// Cassandra: the processing shard that owns the row writes its current
// total, so a retried or replayed write leaves the same row.
package rollup

import (
	"math"
	"time"

	"github.com/acme/analytics/pkg/sketch"
)

// Reports, the "report" column of rollup_daily. Acquisition reports hold
// session-scoped metrics and users; page and event reports hold hit-scoped
// ones.
const (
	Total        = "total"         // one row per day, dimension ""
	Channel      = "channel"       // default or custom channel group
	SourceMedium = "source_medium" // JoinDimension(source, medium)
	Campaign     = "campaign"
	Referrer     = "referrer"     // external referrer host and path, or "(none)"
	LandingPage  = "landing_page" // path of the session's first pageview
	Country      = "country"      // ISO 3166-1 alpha-2, or "(not set)"
	Device       = "device"       // desktop, mobile, tablet, smart tv, other
	Browser      = "browser"
	OS           = "os"
	UserType     = "user_type" // "new" or "returning"

	Page          = "page"           // page path: pageviews, unique pageviews, time, entrances, exits, bounces
	EventCategory = "event_category" // event category
	EventAction   = "event_action"   // JoinDimension(category, action)
	Event         = "event"          // JoinDimension(category, action, label)
)

// AcquisitionReports are the session-scoped reports, in a fixed order.
// The session source and medium alone are read from SourceMedium's rows
// (a session has one of each, so its metrics add up and its users'
// sketches merge exactly over the other part): no report of their own.
var AcquisitionReports = []string{Total, Channel, SourceMedium, Campaign, Referrer, LandingPage, Country, Device, Browser, OS, UserType}

// Reports retired: processing wrote rows of these before 2026-12-06 and
// writes none since; nothing reads them, and reprocessing a day deletes
// them with the day's other rows.
const (
	RetiredSource = "source" // the session source, now read from SourceMedium
	RetiredMedium = "medium" // the session medium, now read from SourceMedium
)

// RetiredReports lists the reports retired.
var RetiredReports = []string{RetiredSource, RetiredMedium}

// User types.
const (
	NewUser       = "new"
	ReturningUser = "returning"
)

// NotSet is a dimension value a session or hit does not have.
const NotSet = "(not set)"

// OrNotSet returns v, or NotSet when it is empty.
func OrNotSet(v string) string {
	if v == "" {
		return NotSet
	}
	return v
}

// EventDimensions returns the values an event has in the EventCategory,
// EventAction and Event reports; a category or label it does not have is
// NotSet, as GA shows it (an action too: collection requires one, but an
// archived hit of an older version may lack it). The category is stored
// as it is, the other two as JoinDimension encodes them.
func EventDimensions(category, action, label string) (categoryValue, actionValue, eventValue string) {
	category, action, label = OrNotSet(category), OrNotSet(action), OrNotSet(label)
	return category, JoinDimension(category, action), JoinDimension(category, action, label)
}

// Metrics are the additive measures of a rollup row. Rates and averages are
// computed at query time from these sums (bounce rate = Bounces/Sessions,
// average time on page = TimeOnPageMS/TimeOnPageViews...).
type Metrics struct {
	NewUsers        int64
	Sessions        int64
	EngagedSessions int64
	Bounces         int64
	DurationMS      int64
	Pageviews       int64
	UniquePageviews int64
	Entrances       int64
	Exits           int64
	TimeOnPageMS    int64
	TimeOnPageViews int64
	Events          int64
	UniqueEvents    int64
	EventValue      float64
	Conversions     int64
	ConversionValue float64
}

// Add adds sign*o to m.
func (m *Metrics) Add(o Metrics, sign int64) {
	m.NewUsers += sign * o.NewUsers
	m.Sessions += sign * o.Sessions
	m.EngagedSessions += sign * o.EngagedSessions
	m.Bounces += sign * o.Bounces
	m.DurationMS += sign * o.DurationMS
	m.Pageviews += sign * o.Pageviews
	m.UniquePageviews += sign * o.UniquePageviews
	m.Entrances += sign * o.Entrances
	m.Exits += sign * o.Exits
	m.TimeOnPageMS += sign * o.TimeOnPageMS
	m.TimeOnPageViews += sign * o.TimeOnPageViews
	m.Events += sign * o.Events
	m.UniqueEvents += sign * o.UniqueEvents
	if o.EventValue != 0 {
		m.EventValue = AddValue(m.EventValue, float64(sign)*o.EventValue)
	}
	m.Conversions += sign * o.Conversions
	if o.ConversionValue != 0 {
		m.ConversionValue = AddValue(m.ConversionValue, float64(sign)*o.ConversionValue)
	}
}

// AddValue adds the value v to the sum of values sum, both rounded to a
// millionth (RoundValue): every sum of values, in a session, a row or a
// report, is made with it.
func AddValue(sum, v float64) float64 { return RoundValue(sum + RoundValue(v)) }

// RoundValue rounds a sum of values to a millionth. Sums of values are
// floating point, so without it adding and taking away the same values in
// another order (a late hit that reshapes sessions, a replay, reprocessing)
// could leave a different last bit, or 5e-17 in a row that is otherwise
// zero. With every value and every sum rounded, a sum is the same whatever
// the order, up to about a billion.
func RoundValue(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// IsZero reports whether every metric is zero.
func (m Metrics) IsZero() bool { return m == Metrics{} }

// Row is one rollup_daily row.
type Row struct {
	Day       time.Time // property-local date as midnight UTC
	Report    string
	Dimension string
	Shard     int
	Users     sketch.Set
	Metrics
}

// MetricColumns are the columns of rollup_daily after the key, in the
// order Values and Scan use.
const MetricColumns = "users_hll, new_users, sessions, engaged_sessions, bounces, session_duration_ms, pageviews, unique_pageviews, entrances, exits, time_on_page_ms, time_on_page_views, events, unique_events, event_value, conversions, conversion_value"

// InsertDaily is the CQL that writes a whole rollup_daily row; bind with
// the property ID, Values, and the row's through_offset and
// through_partition (the Kafka partition its hits came from; nil for none
// recorded; see cql/).
const InsertDaily = "INSERT INTO rollup_daily (property_id, day, report, dimension, shard, " + MetricColumns +
	", through_offset, through_partition) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

// SelectDaily is the CQL that reads one report's rows for one day; bind
// property ID, day and report, and scan with Scan.
const SelectDaily = "SELECT dimension, shard, " + MetricColumns + " FROM rollup_daily WHERE property_id = ? AND day = ? AND report = ?"

// Values returns the bind values of r after the property ID.
func (r *Row) Values() ([]any, error) {
	users, err := r.Users.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return r.Metrics.AppendFields(append(make([]any, 0, 5+MetricCount), r.Day, r.Report, r.Dimension, int16(r.Shard), users)), nil
}

// Scanner is satisfied by *gocql.Iter.
type Scanner interface{ Scan(dest ...any) bool }

// Scan reads the next SelectDaily row into r (Day and Report are left as
// they are: the caller knows them). It returns false at the end.
func (r *Row) Scan(sc Scanner) (bool, error) {
	var shard int16
	var users []byte
	m := &r.Metrics
	if !sc.Scan(append([]any{&r.Dimension, &shard, &users}, m.Pointers()...)...) {
		return false, nil
	}
	r.Shard = int(shard)
	return true, r.Users.UnmarshalBinary(users)
}

// Pointers returns pointers to m's fields in the order of MetricColumns
// after users_hll, for scanning.
func (m *Metrics) Pointers() []any {
	return []any{&m.NewUsers, &m.Sessions, &m.EngagedSessions, &m.Bounces, &m.DurationMS, &m.Pageviews, &m.UniquePageviews,
		&m.Entrances, &m.Exits, &m.TimeOnPageMS, &m.TimeOnPageViews, &m.Events, &m.UniqueEvents, &m.EventValue,
		&m.Conversions, &m.ConversionValue}
}

// MetricCount is the number of m's values AppendFields appends.
const MetricCount = 16

// AppendFields appends m's values to dst in the order of MetricColumns
// after users_hll (MetricCount of them), so that a row's bind values take
// one allocation.
func (m *Metrics) AppendFields(dst []any) []any {
	return append(dst, m.NewUsers, m.Sessions, m.EngagedSessions, m.Bounces, m.DurationMS, m.Pageviews, m.UniquePageviews,
		m.Entrances, m.Exits, m.TimeOnPageMS, m.TimeOnPageViews, m.Events, m.UniqueEvents, m.EventValue,
		m.Conversions, m.ConversionValue)
}
