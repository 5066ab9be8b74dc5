package reporttest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/gocql/gocql"
)

// DailyKey addresses a rollup_daily row.
type DailyKey struct {
	Day       time.Time
	Report    string
	Dimension string
	Shard     int
}

// HourKey addresses a rollup_hourly row.
type HourKey struct {
	Day   time.Time
	Hour  int
	Shard int
}

// MinuteKey addresses a realtime row.
type MinuteKey struct {
	Minute time.Time
	Shard  int
}

// Cell is a row's metrics and users.
type Cell struct {
	rollup.Metrics
	Users sketch.Set
}

// RealtimeCell is a realtime row.
type RealtimeCell struct {
	Pageviews int64
	Users     sketch.Set
	Pages     map[string]int64
	Sources   map[string]int64
}

// Rows are the rows processing would have written for a data set.
type Rows struct {
	Daily    map[DailyKey]*Cell
	Hourly   map[HourKey]*Cell
	Realtime map[MinuteKey]*RealtimeCell
	Filtered []Filtered
}

// Derive returns the rows of ds, as processing-svc/internal/derive builds
// them (one contribution per session; see docs/processing.md).
func (ds *Dataset) Derive() *Rows {
	r := &Rows{Daily: map[DailyKey]*Cell{}, Hourly: map[HourKey]*Cell{}, Realtime: map[MinuteKey]*RealtimeCell{}, Filtered: ds.Filtered}
	daily := func(k DailyKey) *Cell {
		c := r.Daily[k]
		if c == nil {
			c = &Cell{}
			r.Daily[k] = c
		}
		return c
	}
	for _, s := range ds.Sessions {
		sm := rollup.Metrics{Sessions: 1, DurationMS: s.DurationMS, Pageviews: int64(len(s.Pageviews)), Events: int64(len(s.Events)),
			Conversions: int64(s.Conversions), ConversionValue: s.ConversionValue}
		if s.Engaged() {
			sm.EngagedSessions = 1
		}
		if s.Bounce() {
			sm.Bounces = 1
		}
		if s.New {
			sm.NewUsers = 1
		}
		for _, d := range [...]struct{ report, value string }{
			{rollup.Total, ""}, {rollup.Channel, s.Channel},
			{rollup.SourceMedium, rollup.JoinDimension(s.Source, s.Medium)}, {rollup.Campaign, s.Campaign},
			{rollup.Referrer, s.Referrer}, {rollup.LandingPage, s.Landing()}, {rollup.Country, s.Country},
			{rollup.Device, s.Device}, {rollup.Browser, s.Browser}, {rollup.OS, s.OS}, {rollup.UserType, s.UserType()},
		} {
			c := daily(DailyKey{s.Day, d.report, d.value, s.Shard})
			c.Metrics.Add(sm, 1)
			c.Users.Add(s.Client)
		}
		hk := HourKey{s.Day, s.Hour, s.Shard}
		hc := r.Hourly[hk]
		if hc == nil {
			hc = &Cell{}
			r.Hourly[hk] = hc
		}
		hc.Metrics.Add(sm, 1)
		hc.Users.Add(s.Client)

		viewed := map[string]bool{}
		for _, pv := range s.Pageviews {
			m := rollup.Metrics{Pageviews: 1}
			if pv.TimeMS >= 0 {
				m.TimeOnPageMS, m.TimeOnPageViews = pv.TimeMS, 1
			}
			if !viewed[pv.Path] {
				viewed[pv.Path] = true
				m.UniquePageviews = 1
			}
			daily(DailyKey{s.Day, rollup.Page, pv.Path, s.Shard}).Metrics.Add(m, 1)

			mk := MinuteKey{pv.At.UTC().Truncate(time.Minute), s.Shard}
			if ds.Now.Sub(mk.Minute) < 2*time.Hour {
				rc := r.Realtime[mk]
				if rc == nil {
					rc = &RealtimeCell{Pages: map[string]int64{}, Sources: map[string]int64{}}
					r.Realtime[mk] = rc
				}
				rc.Pageviews++
				rc.Pages[pv.Path]++
				rc.Sources[s.Source]++
				rc.Users.Add(s.Client)
			}
		}
		if len(s.Pageviews) > 0 {
			entry := rollup.Metrics{Entrances: 1, Sessions: 1}
			if s.Bounce() {
				entry.Bounces = 1
			}
			daily(DailyKey{s.Day, rollup.Page, s.Landing(), s.Shard}).Metrics.Add(entry, 1)
			daily(DailyKey{s.Day, rollup.Page, s.Exit(), s.Shard}).Metrics.Add(rollup.Metrics{Exits: 1}, 1)
		}
		seen := map[DailyKey]bool{}
		for _, e := range s.Events {
			category, action, event := rollup.EventDimensions(e.Category, e.Action, e.Label)
			for _, k := range [...]DailyKey{
				{s.Day, rollup.EventCategory, category, s.Shard},
				{s.Day, rollup.EventAction, action, s.Shard},
				{s.Day, rollup.Event, event, s.Shard},
			} {
				m := rollup.Metrics{Events: 1, EventValue: e.Value}
				if !seen[k] {
					seen[k] = true
					m.UniqueEvents = 1
				}
				daily(k).Metrics.Add(m, 1)
			}
		}
	}
	return r
}

// Write writes rows for property with session: every rollup_daily,
// rollup_hourly, realtime_minutes and filtered_hits row, in unlogged batches per
// partition, concurrently.
func Write(ctx context.Context, session *gocql.Session, property gocql.UUID, r *Rows) error {
	type stmt struct {
		cql  string
		args []any
	}
	parts := map[string][]stmt{}
	for k, c := range r.Daily {
		row := rollup.Row{Day: k.Day, Report: k.Report, Dimension: k.Dimension, Shard: k.Shard, Users: c.Users, Metrics: c.Metrics}
		vals, err := row.Values()
		if err != nil {
			return err
		}
		p := "d" + k.Day.String() + k.Report
		parts[p] = append(parts[p], stmt{rollup.InsertDaily, append(append([]any{property}, vals...), int64(1), nil)})
	}
	for k, c := range r.Hourly {
		users, err := c.Users.MarshalBinary()
		if err != nil {
			return err
		}
		m := &c.Metrics
		p := "h" + k.Day.String()
		parts[p] = append(parts[p], stmt{"INSERT INTO rollup_hourly (property_id, day, hour, shard, users_hll, new_users, sessions, engaged_sessions, bounces, session_duration_ms, pageviews, events, conversions, conversion_value, through_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			[]any{property, k.Day, int16(k.Hour), int16(k.Shard), users, m.NewUsers, m.Sessions, m.EngagedSessions, m.Bounces, m.DurationMS, m.Pageviews, m.Events, m.Conversions, m.ConversionValue, int64(1)}})
	}
	for k, c := range r.Realtime {
		users, err := c.Users.MarshalBinary()
		if err != nil {
			return err
		}
		parts["r"] = append(parts["r"], stmt{"INSERT INTO realtime_minutes (property_id, minute, shard, pageviews, users_hll, pages, sources, through_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			[]any{property, k.Minute, int16(k.Shard), c.Pageviews, users, c.Pages, c.Sources, int64(1)}})
	}
	for _, f := range r.Filtered {
		p := "f" + f.Day.String()
		parts[p] = append(parts[p], stmt{"INSERT INTO filtered_hits (property_id, day, reason, shard, hits, through_offset) VALUES (?, ?, ?, ?, ?, ?)",
			[]any{property, f.Day, f.Reason, int16(f.Shard), f.Hits, int64(1)}})
	}
	jobs := make(chan []stmt)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				b := session.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
				for _, s := range job {
					b.Query(s.cql, s.args...)
				}
				if err := session.ExecuteBatch(b); err != nil {
					select {
					case errc <- fmt.Errorf("write %d rows: %w", len(job), err):
					default:
					}
				}
			}
		}()
	}
	for _, list := range parts {
		for len(list) > 0 {
			n := min(len(list), 200)
			jobs <- list[:n]
			list = list[n:]
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
