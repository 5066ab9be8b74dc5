package engine

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/acme/analytics/processing-svc/internal/visitor"
	"github.com/gocql/gocql"
)

// CQL of the processor's reads and writes. Every write is a whole-row
// upsert (or a delete) keyed by IDs and windows: idempotent. The archive,
// sessions, pageviews and events are written to the tables partitioned by
// hour (cql/0017_hourly_partitions.cql) only (but for the delete of a
// session's row in the old table too, sessionDeletes); reprocessing reads
// the tables they replaced too (reprocess.go).
const (
	cqlLoadVisitors     = "SELECT client_id, kafka_partition, applied_offset, state FROM visitor_state WHERE property_id = ? AND client_id IN ?"
	cqlSaveVisitor      = "INSERT INTO visitor_state (property_id, client_id, kafka_partition, applied_offset, state) VALUES (?, ?, ?, ?, ?)"
	cqlArchive          = "UPDATE raw_hit_blocks_by_hour SET hits = hits + ? WHERE property_id = ? AND day = ? AND shard = ? AND hour = ? AND block = ?"
	cqlLoadUsers        = "SELECT client_id, first_seen, last_seen, session_count, first_source, first_medium, first_campaign, first_channel, day_sessions, day_last_seen FROM site_users WHERE property_id = ? AND client_id IN ?"
	cqlUser             = "INSERT INTO site_users (property_id, client_id, first_seen, last_seen, session_count, first_source, first_medium, first_campaign, first_channel, rule_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	cqlUserActivity     = "INSERT INTO site_users (property_id, client_id, last_seen, session_count, rule_version) VALUES (?, ?, ?, ?, ?)"
	cqlUserFirst        = "INSERT INTO site_users (property_id, client_id, first_seen, first_source, first_medium, first_campaign, first_channel) VALUES (?, ?, ?, ?, ?, ?, ?)"
	cqlUserDays         = "UPDATE site_users SET day_sessions = day_sessions + ?, day_last_seen = day_last_seen + ? WHERE property_id = ? AND client_id = ?"
	cqlUserDayDelete    = "DELETE day_sessions[?], day_last_seen[?] FROM site_users WHERE property_id = ? AND client_id = ?"
	cqlDeleteOldSession = "DELETE FROM sessions WHERE property_id = ? AND day = ? AND shard = ? AND session_id = ?"
	cqlDeleteSession    = "DELETE FROM sessions_by_hour WHERE property_id = ? AND day = ? AND shard = ? AND hour = ? AND session_id = ?"
	cqlSession          = "INSERT INTO sessions_by_hour (property_id, day, shard, hour, session_id, client_id, started_at, ended_at, landing_page, exit_page, pageviews, events, bounce, engaged, source, medium, campaign, referrer, channel, country, device, browser, os, new_user, conversions, conversion_value, rule_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	cqlDeletePageview   = "DELETE FROM pageviews_by_hour WHERE property_id = ? AND day = ? AND shard = ? AND hour = ? AND hit_id = ?"
	cqlDeleteEvent      = "DELETE FROM events_by_hour WHERE property_id = ? AND day = ? AND shard = ? AND hour = ? AND hit_id = ?"
	cqlPageview         = "INSERT INTO pageviews_by_hour (property_id, day, shard, hour, hit_id, ts, session_id, client_id, path, title, time_on_page_ms, rule_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	cqlEvent            = "INSERT INTO events_by_hour (property_id, day, shard, hour, hit_id, ts, session_id, client_id, category, action, label, value, path, rule_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

	// cqlLoadDaily reads rollup_daily rows of one property, day and
	// shard: every combination of the reports and dimensions asked for,
	// so some rows that were not asked for may come too.
	cqlLoadDaily  = "SELECT report, dimension, " + rollup.MetricColumns + ", through_offset, through_partition FROM rollup_daily WHERE property_id = ? AND day = ? AND report IN ? AND dimension IN ? AND shard = ?"
	cqlHourlyCols = "users_hll, new_users, sessions, engaged_sessions, bounces, session_duration_ms, pageviews, events, conversions, conversion_value"
	cqlLoadHourly = "SELECT " + cqlHourlyCols + ", through_offset, through_partition FROM rollup_hourly WHERE property_id = ? AND day = ? AND hour = ? AND shard = ?"
	cqlHourly     = "INSERT INTO rollup_hourly (property_id, day, hour, shard, " + cqlHourlyCols + ", through_offset, through_partition) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	cqlLoadRT     = "SELECT pageviews, users_hll, pages, sources, through_offset, through_partition FROM realtime_minutes WHERE property_id = ? AND minute = ? AND shard = ?"
	cqlRealtime   = "INSERT INTO realtime_minutes (property_id, minute, shard, pageviews, users_hll, pages, sources, through_offset, through_partition) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
	cqlLoadFilter = "SELECT hits, through_offset, through_partition FROM filtered_hits WHERE property_id = ? AND day = ? AND reason = ? AND shard = ?"
	cqlFiltered   = "INSERT INTO filtered_hits (property_id, day, reason, shard, hits, through_offset, through_partition) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

// reprocessed is the through_partition of rows reprocessing writes: no
// Kafka partition's (their through_offset, FinalOffset, is past every
// offset anyway).
const reprocessed = -1

// stmt is one write, grouped with others of the same partition into an
// unlogged batch (one round trip, one partition), and, by a writer that
// shares batches (writer.shareBytes), with a few other small partitions
// of the same tenant.
type stmt struct {
	// partition names the table and the partition key, "/"-separated:
	// a label of the table, then the key's columns, the first of which
	// is the property for every table of a tenant's data (sharedKey).
	partition string
	cql       string
	args      []any
	// keys is how many of args, first, are the row's key (its partition
	// key's and clustering columns' values), which Cassandra's measure of
	// a mutation counts bare or not at all (mutationBytes); 0 counts
	// every value as a cell, more than Cassandra does.
	keys int
}

// writer executes statements grouped by partition, concurrently.
type writer struct {
	session     *gocql.Session
	concurrency int
	batchSize   int // statements
	// batchBytes, when not 0, bounds a batch's statements by their size
	// (stmtBytes); a statement larger than it goes alone.
	batchBytes int
	// shareBytes, when not 0, lets the statements of several partitions
	// of one property share a batch (sharedBatches), up to that size
	// (mutationBytes) and sharePartitions partitions. Not for a writer
	// whose batches must each be one partition's, applied in isolation
	// (reprocessing's replacer).
	shareBytes int
	// beforeJob, when set (tests), runs before each batch (its
	// statements) and fails it with its error: a crash at an exact point
	// of a flush.
	beforeJob func(job []stmt) error
	// statements, requests and bytes count what exec wrote.
	statements, requests, bytes int64
}

func (w *writer) exec(ctx context.Context, stmts []stmt) error {
	jobs := w.batches(stmts)
	if w.shareBytes > 0 {
		jobs = sharedBatches(jobs, w.shareBytes)
	}
	err := parallel(ctx, w.concurrency, len(jobs), func(ctx context.Context, i int) error {
		job := jobs[i]
		if w.beforeJob != nil {
			if err := w.beforeJob(job); err != nil {
				return err
			}
		}
		if len(job) == 1 {
			if err := w.session.Query(job[0].cql, job[0].args...).WithContext(ctx).Exec(); err != nil {
				return fmt.Errorf("write %s: %w", job[0].partition, err)
			}
			return nil
		}
		b := w.session.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
		b.Entries = make([]gocql.BatchEntry, 0, len(job)) // not grown entry by entry
		for _, s := range job {
			b.Query(s.cql, s.args...)
		}
		if err := w.session.ExecuteBatch(b); err != nil {
			if last := job[len(job)-1].partition; last != job[0].partition {
				return fmt.Errorf("write batch of %d to %s ... %s: %w", len(job), job[0].partition, last, err)
			}
			return fmt.Errorf("write batch of %d to %s: %w", len(job), job[0].partition, err)
		}
		return nil
	})
	if err == nil {
		w.statements += int64(len(stmts))
		w.requests += int64(len(jobs))
		for _, s := range stmts {
			w.bytes += valueBytes(s.args)
		}
	}
	return err
}

// boundSize describes a bound value: text is its text and blob bytes (a
// map's keys and values, 8 for each number in it), cells the cells
// Cassandra makes of it (one; one an entry for a map; none when unset),
// and number whether it is a number, a time, a UUID or a flag. A type of
// value it does not know would pass for a number, small, and could go
// into a shared batch (sharedBatches) past Cassandra's
// batch_size_fail_threshold: every type a statement binds is here.
func boundSize(a any) (text, cells int, number bool) {
	switch v := a.(type) {
	case string:
		return len(v), 1, false
	case []byte:
		return len(v), 1, false
	case map[string]int64:
		for k := range v {
			text += len(k) + 8
		}
		return text, len(v), false
	case archiveHits:
		return boundSize(map[string][]byte(v))
	case map[string][]byte:
		for k, b := range v {
			text += len(k) + len(b)
		}
		return text, len(v), false
	case map[string]int: // a record of fallbacks: up to 500 hit IDs
		for k := range v {
			text += len(k) + 8
		}
		return text, len(v), false
	case dayCounts: // a users row's sessions by day
		return 16 * len(v), len(v), false
	case dayLasts: // and when each day's last ended
		return 16 * len(v), len(v), false
	}
	if a == gocql.UnsetValue {
		return 0, 0, false
	}
	return 0, 1, true
}

// dayFigures are a users row's figures of some days (visitor.DaySessions),
// bound as its day_sessions (dayCounts: map<date, int>) or its
// day_last_seen (dayLasts: map<date, timestamp>). They encode themselves
// (gocql.Marshaler) in one allocation, where gocql's encoding of a Go map
// walks it by reflection (userWrites, once a visit: it was a third of
// their cost).
type (
	dayFigures []visitor.DaySessions
	dayCounts  dayFigures
	dayLasts   dayFigures
)

// MarshalCQL encodes the days' session counts as a CQL map<date, int>.
func (d dayCounts) MarshalCQL(info gocql.TypeInfo) ([]byte, error) {
	return dayFigures(d).marshal(info, false, func(b []byte, f visitor.DaySessions) []byte {
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(b, 4), uint32(int32(f.Sessions)))
	})
}

// MarshalCQL encodes when the days' last sessions ended as a CQL
// map<date, timestamp> (milliseconds, as gocql writes a time; the zero
// time as an empty value, as gocql does).
func (d dayLasts) MarshalCQL(info gocql.TypeInfo) ([]byte, error) {
	return dayFigures(d).marshal(info, true, func(b []byte, f visitor.DaySessions) []byte {
		if f.Last.IsZero() {
			return binary.BigEndian.AppendUint32(b, 0)
		}
		return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(b, 8), uint64(f.Last.UnixMilli()))
	})
}

// marshal encodes a CQL map of the days to what value appends of each,
// its size and bytes (native protocol 3 and later: 32-bit sizes; earlier
// ones take gocql's own encoding of lasts or of the counts). A date is the
// days since the epoch plus 2^31, in 4 bytes.
func (d dayFigures) marshal(info gocql.TypeInfo, lasts bool, value func([]byte, visitor.DaySessions) []byte) ([]byte, error) {
	if info.Version() < 3 {
		counts, ends := make(map[time.Time]int, len(d)), make(map[time.Time]time.Time, len(d))
		for _, f := range d {
			counts[f.Day], ends[f.Day] = f.Sessions, f.Last
		}
		if lasts {
			return gocql.Marshal(info, ends)
		}
		return gocql.Marshal(info, counts)
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(d)*20), uint32(len(d)))
	for _, f := range d {
		b = binary.BigEndian.AppendUint32(b, 4)
		b = binary.BigEndian.AppendUint32(b, uint32(f.Day.Unix()/86400+1<<31))
		b = value(b, f)
	}
	return b, nil
}

// valueBytes is the size of a statement's text and blob values (boundSize):
// the bulk of what it sends (numbers, times and UUIDs are a few bytes each).
func valueBytes(args []any) int64 {
	var n int
	for _, a := range args {
		text, _, _ := boundSize(a)
		n += text
	}
	return int64(n)
}

// batches groups stmts by partition, in the order of their first
// statements, into batches of at most batchSize statements and, when set,
// batchBytes.
func (w *writer) batches(stmts []stmt) [][]stmt {
	// The statements are put in partition order in one array (a counting
	// sort), where a slice per partition grew statement by statement.
	index := map[string]int{} // partitions numbered in order of appearance
	of := make([]int, len(stmts))
	var bounds []int // a partition's count, then where it starts in sorted, then where it ends
	for i, s := range stmts {
		p, ok := index[s.partition]
		if !ok {
			p = len(bounds)
			index[s.partition] = p
			bounds = append(bounds, 0)
		}
		of[i] = p
		bounds[p]++
	}
	at := 0
	for p, n := range bounds {
		bounds[p], at = at, at+n
	}
	sorted := make([]stmt, len(stmts))
	for i, s := range stmts {
		sorted[bounds[of[i]]] = s
		bounds[of[i]]++
	}
	var jobs [][]stmt
	start := 0
	for _, end := range bounds {
		g := sorted[start:end:end]
		start = end
		for len(g) > 0 {
			n := min(len(g), w.batchSize)
			if w.batchBytes > 0 {
				size := stmtBytes(g[0])
				for i := 1; i < n; i++ {
					if size += stmtBytes(g[i]); size > w.batchBytes {
						n = i
						break
					}
				}
			}
			jobs = append(jobs, g[:n])
			g = g[n:]
		}
	}
	return jobs
}

// sharePartitions is the most partitions a shared batch spans:
// Cassandra's unlogged_batch_across_partitions_warn_threshold, past which
// it logs a warning for every such batch.
const sharePartitions = 10

// shareBatchBytes is the most a shared batch holds (mutationBytes):
// Cassandra's batch_size_warn_threshold, 5 KiB. A batch of several
// partitions larger than its batch_size_fail_threshold (50 KiB) is
// refused; one of a single partition is never held to either.
const shareBatchBytes = 5 << 10

// sharedBatches puts the batches of small partitions of one property
// (their partition keys' first column, sharedKey) together in batches of
// up to sharePartitions partitions and maxBytes (mutationBytes), so that
// a flush sends a small property's rows in two or three requests where it
// sent one per partition: a hit of a property with a hit every few
// seconds touches some 15 rollup partitions (each report's day, its hours, its minutes),
// each written for that hit alone. Cassandra applies a multi-partition
// unlogged batch as one mutation per partition, each in isolation as a
// batch of its own would be; its coordinator forwards those it does not
// hold, a hop each, against a request each from us
// (docs/benchmarks.md, "Shared batches and reads"). Batches of larger partitions,
// and those with a statement too large, stay as they are.
func sharedBatches(jobs [][]stmt, maxBytes int) [][]stmt {
	type open struct {
		job   []stmt
		parts int
		bytes int
	}
	var out [][]stmt
	byKey := map[string]*open{}
	var keys []string
	for _, job := range jobs {
		size := 0
		for _, s := range job {
			size += mutationBytes(s)
		}
		key, ok := sharedKey(job[0].partition)
		if !ok || size > maxBytes/2 {
			out = append(out, job)
			continue
		}
		o := byKey[key]
		if o == nil || o.parts == sharePartitions || o.bytes+size > maxBytes {
			if o != nil {
				out = append(out, o.job)
			} else {
				keys = append(keys, key)
			}
			o = &open{}
			byKey[key] = o
		}
		o.job = append(o.job, job...)
		o.parts++
		o.bytes += size
	}
	for _, key := range keys {
		out = append(out, byKey[key].job)
	}
	return out
}

// sharedKey returns the first column of a partition's key (its property,
// for every table of a tenant's data), and whether it has one.
func sharedKey(partition string) (string, bool) {
	_, rest, ok := strings.Cut(partition, "/")
	if !ok {
		return "", false
	}
	key, _, _ := strings.Cut(rest, "/")
	return key, key != ""
}

// mutationBytes is at least what Cassandra counts of a statement against
// its batch size thresholds (IMutation.dataSize, which sharedBatches keeps
// under batch_size_warn_threshold): the row's key values (s.keys) bare,
// then a cell for each value, 16 bytes (timestamp, TTL, local deletion
// time) and its own, a cell for each entry of a map, and the row's
// liveness and deletion, 20 bytes. stmtBytes, the bytes sent, is well
// under it for a row of many numbers (a rollup_daily row has 17 cells:
// some 380 bytes counted, 310 sent). Cassandra does not count the
// partition key's values at all, a margin of a few dozen bytes.
func mutationBytes(s stmt) int {
	n := 20
	for i, a := range s.args {
		text, cells, number := boundSize(a)
		switch {
		case i < s.keys && number:
			n += 16 // a UUID at most
		case i < s.keys:
			n += text
		case number:
			n += 16 + 8
		default:
			n += 16*cells + text
		}
	}
	return n
}

// stmtBytes is about the size of a statement as sent: its text and blob
// values (valueBytes) and, for its numbers, times and framing, 256 bytes.
func stmtBytes(s stmt) int { return int(valueBytes(s.args)) + 256 }

// parallel runs fn for 0..n-1 with at most limit at once and returns the
// first error.
func parallel(ctx context.Context, limit, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// storedVisitor is a visitor as loaded: applied is the offset through
// which its stored state includes hits, -1 for none.
type storedVisitor struct {
	v       *visitor.Visitor
	applied int64
}

// visitorsPerRead bounds the client IDs of one read of visitor states.
const visitorsPerRead = 50

// loadVisitors reads the durable state of a property's visitors (at most
// visitorsPerRead), in one query: a new visitor, applied -1, for each that
// has none, or whose state was written by another partition (the topic was
// repartitioned: its offsets say nothing here). A new visitor counts its
// sessions per day (visitor.PerDay) when perDay (StatePolicy.Encoding).
func loadVisitors(ctx context.Context, s *gocql.Session, property string, clients []string, partition int32, perDay bool) (map[string]storedVisitor, error) {
	out := make(map[string]storedVisitor, len(clients))
	iter := s.Query(cqlLoadVisitors, property, clients).WithContext(ctx).Iter()
	var client string
	var part int
	var applied int64
	var state []byte
	for iter.Scan(&client, &part, &applied, &state) {
		v, err := visitor.Unmarshal(state)
		if err != nil {
			iter.Close()
			return nil, fmt.Errorf("visitor %s/%s: %w", property, client, err)
		}
		if int32(part) != partition {
			applied = -1
		}
		out[client] = storedVisitor{v, applied}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("load visitor states: %w", err)
	}
	var missing []string
	stateless := map[string]bool{}
	for _, c := range clients {
		if sv, ok := out[c]; !ok {
			missing = append(missing, c)
			stateless[c] = true
			v := visitor.New(c)
			v.PerDay = perDay
			out[c] = storedVisitor{v, -1}
		} else if sv.v.FrozenSessions == 0 && len(sv.v.Hits) == 0 {
			// No session in its state (every hit excluded so far): a
			// reprocessing job may have derived one since.
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	if err := loadKnownUsers(ctx, s, property, missing, stateless, perDay, out); err != nil {
		return nil, err
	}
	return out, nil
}

// loadKnownUsers starts the visitors among clients that have no state
// (stateless) but a users row from what that row says: their sessions so
// far, first and last seen, first touch. A visitor's state expires 396
// days after its last write (visitor_state's TTL); its users row does not,
// so a user back after 13 months is returning, with the first touch of
// their first visit, not a new user. The others of clients have a state
// without a session: a first session in their users row is one a
// reprocessing job derived from hits live processing excluded (live
// processing writes one only with a session), and they are returning
// users with it, as for the job, not new users whose first session
// overwrites it.
//
// A visitor started from its users row counts its sessions per day when
// perDay or when the row does already (another instance converted it),
// with the row's base as its own.
func loadKnownUsers(ctx context.Context, s *gocql.Session, property string, clients []string, stateless map[string]bool, perDay bool, out map[string]storedVisitor) error {
	users, err := readUsers(ctx, s, property, clients)
	if err != nil {
		return fmt.Errorf("load users of visitors without state: %w", err)
	}
	for client, u := range users {
		if u.sessions <= 0 && u.first.IsZero() {
			continue
		}
		if !stateless[client] {
			if !u.first.IsZero() {
				v := out[client].v
				v.FrozenSessions, v.FirstSeen, v.FirstTouch = max(u.sessions, 1), u.first, u.touch
				if v.LastSeen.IsZero() {
					// Its sessions ended by last, or, where the row has
					// none (a job before per-day counts wrote first_seen
					// alone), the first started on first's day: what
					// ConvertPerDay takes as the end of its base, so that
					// a job does not count that day again (userRow.inBase).
					if v.LastSeen = u.last; v.LastSeen.IsZero() {
						v.LastSeen = u.first
					}
				}
				if !v.PerDay && len(u.days) > 0 {
					// The job counted them per day: so does the visitor,
					// or its one figure would count them twice.
					v.PerDay, v.BaseSessions, v.BaseLast = true, u.base.Sessions, u.base.Last
				}
			}
			continue
		}
		v := visitor.New(client)
		v.FrozenSessions, v.FirstSeen, v.FirstTouch = max(u.sessions, 1), u.first, u.touch
		// Its sessions ended by last (with none recorded, a job before
		// per-day counts wrote first_seen alone: its session started at
		// first): no hit can be placed before it.
		last := u.last
		if last.IsZero() {
			last = u.first
		}
		v.LastSeen, v.FrozenUntil = last, last
		if v.PerDay = perDay || len(u.days) > 0; v.PerDay {
			// Its base is what the row counts beyond its days: the
			// row's, or the first session alone that it counts as one.
			v.BaseSessions, v.BaseLast = v.FrozenSessions-(u.sessions-u.base.Sessions), u.base.Last
			if v.BaseSessions > u.base.Sessions {
				v.BaseLast = last
			}
		}
		out[client] = storedVisitor{v, -1}
	}
	return nil
}

// userRow is a site_users row as read: sessions and last are the user's
// session count and last seen, its base (session_count and last_seen,
// what the row counted before it counted per day) with its days.
type userRow struct {
	first, last time.Time
	sessions    int
	touch       visitor.Touch
	base        visitor.DaySessions // Day unset
	days        map[time.Time]int
	lasts       map[time.Time]time.Time
}

// total sums a row's base and days into sessions and last.
func (u *userRow) total() {
	u.sessions, u.last = u.base.Sessions, u.base.Last
	for day, n := range u.days {
		if n <= 0 {
			continue // a day that has none (any more)
		}
		u.sessions += n
		if t := u.lasts[day]; t.After(u.last) {
			u.last = t
		}
	}
}

// holds reports whether a row has d's figures for d's day (none, for a
// day without sessions). Days are midnight UTC (session.LocalDay), as
// gocql reads a date, so a day is its key.
func (u *userRow) holds(d visitor.DaySessions) bool {
	n := u.days[d.Day]
	if n <= 0 {
		return d.Sessions == 0
	}
	return n == d.Sessions && u.lasts[d.Day].Equal(d.Last)
}

// inBase reports whether a day's sessions may be counted in the row's
// base: the days up to the base's last. A job does not count such a day
// again (its sessions were counted, by live processing, before the row
// counted per day).
func (u *userRow) inBase(day time.Time, loc *time.Location) bool {
	return u.base.Sessions > 0 && !day.After(session.LocalDay(u.base.Last, loc))
}

// readUsers reads the site_users rows of clients that have one.
func readUsers(ctx context.Context, s *gocql.Session, property string, clients []string) (map[string]userRow, error) {
	return readByClient(ctx, clients, func(ctx context.Context, part []string, into map[string]userRow) error {
		iter := s.Query(cqlLoadUsers, property, part).WithContext(ctx).Iter()
		var client string
		var u userRow
		for iter.Scan(&client, &u.first, &u.base.Last, &u.base.Sessions, &u.touch.Source, &u.touch.Medium, &u.touch.Campaign, &u.touch.Channel, &u.days, &u.lasts) {
			u.total()
			into[client] = u
			u = userRow{} // the maps are the row's
		}
		return iter.Close()
	})
}

// readByClient runs read over clients in parts of at most visitorsPerRead
// (a query each, `client_id IN ?`), in parallel, each filling a map of its
// own, and returns what they found, merged.
func readByClient[T any](ctx context.Context, clients []string, read func(ctx context.Context, part []string, into map[string]T) error) (map[string]T, error) {
	chunks := (len(clients) + visitorsPerRead - 1) / visitorsPerRead
	found := make([]map[string]T, chunks)
	err := parallel(ctx, 32, chunks, func(ctx context.Context, i int) error {
		part := clients[i*visitorsPerRead : min(len(clients), (i+1)*visitorsPerRead)]
		found[i] = make(map[string]T, len(part))
		return read(ctx, part, found[i])
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]T, len(clients))
	for _, m := range found {
		maps.Copy(out, m)
	}
	return out, nil
}

// dailyReadCombinations bounds the rows one read of rollup_daily rows
// asks for: its reports times its dimensions (loadDailyRows).
const dailyReadCombinations = 256

// rowReads groups the keys of rows to read into reads: the rollup_daily
// rows of one property, day and shard together, as many as one query
// finds (dailyReadCombinations), every other row alone.
func rowReads(keys []rowKey) [][]rowKey {
	var reads [][]rowKey
	daily := make([]rowKey, 0, len(keys))
	for _, k := range keys {
		if k.kind != kindDaily {
			reads = append(reads, []rowKey{k})
			continue
		}
		daily = append(daily, k)
	}
	// By property, day and shard (a read's), then by report, so that a
	// busy report's new values go together.
	slices.SortFunc(daily, func(a, b rowKey) int {
		return cmp.Or(strings.Compare(a.property, b.property), a.daily.Day.Compare(b.daily.Day), cmp.Compare(a.shard, b.shard),
			strings.Compare(a.daily.Report, b.daily.Report), strings.Compare(a.daily.Dimension, b.daily.Dimension))
	})
	reports, dims := map[string]bool{}, map[string]bool{}
	start := 0
	for i, k := range daily {
		nr, nd := len(reports), len(dims)
		if !reports[k.daily.Report] {
			nr++
		}
		if !dims[k.daily.Dimension] {
			nd++
		}
		if first := daily[start]; i > start && (k.property != first.property || !k.daily.Day.Equal(first.daily.Day) || k.shard != first.shard || nr*nd > dailyReadCombinations) {
			reads = append(reads, daily[start:i])
			start = i
			clear(reports)
			clear(dims)
		}
		reports[k.daily.Report], dims[k.daily.Dimension] = true, true
	}
	if start < len(daily) {
		reads = append(reads, daily[start:])
	}
	return reads
}

// loadDailyRows reads the stored state of the rollup_daily rows at keys,
// all of one property, day and shard, in one query (rowReads), into the
// rows get finds for them. A small property's hit that starts a session
// creates some 15 rows of its day (one per report), which were a query
// each.
func loadDailyRows(ctx context.Context, s *gocql.Session, partition int32, keys []rowKey, get func(rowKey) *row) error {
	k0 := keys[0]
	asked := make(map[[2]string]rowKey, len(keys))
	var reports, dims []string
	for _, k := range keys {
		if !slices.Contains(reports, k.daily.Report) {
			reports = append(reports, k.daily.Report)
		}
		if !slices.Contains(dims, k.daily.Dimension) {
			dims = append(dims, k.daily.Dimension)
		}
		asked[[2]string{k.daily.Report, k.daily.Dimension}] = k
	}
	iter := s.Query(cqlLoadDaily, k0.property, k0.daily.Day, reports, dims, int16(k0.shard)).WithContext(ctx).Iter()
	var report, dim string
	var users []byte
	var m rollup.Metrics
	var through int64
	var from *int32
	dest := append(append([]any{&report, &dim, &users}, m.Pointers()...), &through, &from)
	for iter.Scan(dest...) {
		k, ok := asked[[2]string{report, dim}]
		if !ok {
			continue // a combination not asked for
		}
		delete(asked, [2]string{report, dim})
		stored := m
		if err := loadStored(get(k), users, baseOf(through, from, partition), func(r *row) { r.metrics = stored }); err != nil {
			iter.Close()
			return err
		}
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("load rollup rows: %w", err)
	}
	for _, k := range asked {
		loadAbsent(get(k))
	}
	return nil
}

// loadAbsent marks r loaded as a row the store does not have: its first
// write stores its sketch, even empty (row.load).
func loadAbsent(r *row) { r.load(-1, func(*row) {}) }

// baseOf is the offset of the hits of partition through which a row counts
// that was written through offset of partition from: none (-1) when from is
// another partition. Offsets are a partition's own: a property shard moved
// to a new partition (partitions added to the hits topic, the topic made
// anew) brought offsets from 0, below the row's, and the row skipped every
// hit of it until they passed (the rest of the day). Processing is drained
// before partitions are added (docs/operations.md), so the row counts none
// of the new partition's hits. A row of before migration 22 has no
// partition: taken as partition's, as before. A reprocessed row's offset is
// final, from whatever partition.
func baseOf(through int64, from *int32, partition int32) int64 {
	if from != nil && *from != partition && through < FinalOffset {
		return -1
	}
	return through
}

// loadStored loads into r the stored state of its row: its users sketch,
// the offset of the partition's hits through which it includes them
// (baseOf), and the rest (stored).
func loadStored(r *row, users []byte, through int64, stored func(r *row)) error {
	var existing sketch.Set
	if err := existing.UnmarshalBinary(users); err != nil {
		return fmt.Errorf("load rollup row: %w", err)
	}
	// The stored users go in before the pending changes are folded in:
	// a pending change may take a reference away.
	r.load(through, func(r *row) {
		stored(r)
		r.users = existing
	})
	return nil
}

// loadRow reads the stored state of an additive row into r: an hourly,
// realtime or filtered one (loadDailyRows reads rollup_daily's).
func loadRow(ctx context.Context, s *gocql.Session, partition int32, k rowKey, r *row) error {
	var through int64
	var from *int32
	var users []byte
	var err error
	var stored func(r *row)
	switch k.kind {
	case kindHourly:
		var m rollup.Metrics
		err = s.Query(cqlLoadHourly, k.property, k.hourly.Day, int16(k.hourly.Hour), int16(k.shard)).WithContext(ctx).
			Scan(append(append([]any{&users}, hourlyPointers(&m)...), &through, &from)...)
		stored = func(r *row) { r.metrics = m }
	case kindRealtime:
		var pv int64
		var pages, sources map[string]int64
		err = s.Query(cqlLoadRT, k.property, k.minute.Minute, int16(k.shard)).WithContext(ctx).Scan(&pv, &users, &pages, &sources, &through, &from)
		stored = func(r *row) {
			r.metrics.Pageviews = pv
			r.pages, r.sources = pages, sources
			if r.pages == nil {
				r.pages, r.sources = map[string]int64{}, map[string]int64{}
			}
			if r.sources == nil {
				r.sources = map[string]int64{}
			}
			r.pageBytes, r.sourceBytes = keyBytes(r.pages), keyBytes(r.sources)
		}
	case kindFiltered:
		var hits int64
		err = s.Query(cqlLoadFilter, k.property, k.filtered.Day, k.filtered.Reason, int16(k.shard)).WithContext(ctx).Scan(&hits, &through, &from)
		stored = func(r *row) { r.hits = hits }
	}
	if errors.Is(err, gocql.ErrNotFound) {
		loadAbsent(r)
		return nil
	}
	if err != nil {
		return fmt.Errorf("load rollup row: %w", err)
	}
	return loadStored(r, users, baseOf(through, from, partition), stored)
}

func hourlyPointers(m *rollup.Metrics) []any {
	return []any{&m.NewUsers, &m.Sessions, &m.EngagedSessions, &m.Bounces, &m.DurationMS, &m.Pageviews, &m.Events, &m.Conversions, &m.ConversionValue}
}

// rowWrite returns the statement that writes r whole, through offset,
// but for its users sketch when it did not change since the row was last
// written (row.usersChanged): that is bound unset, leaving the
// stored sketch, the same, in place. Most writes of a busy row are of a
// hit that extends a session, which changes the session-level rows'
// metrics only, and a sketch is up to 16 KiB.
func rowWrite(k rowKey, r *row, through int64, partition int32) (stmt, error) {
	var users any = gocql.UnsetValue
	if r.usersChanged && k.kind != kindFiltered {
		b, err := r.users.MarshalBinary()
		if err != nil {
			return stmt{}, err
		}
		users = b
	}
	sh := int16(k.shard)
	switch k.kind {
	case kindDaily:
		args := append(make([]any, 0, 8+rollup.MetricCount), k.property, k.daily.Day, k.daily.Report, k.daily.Dimension, sh, users)
		args = append(r.metrics.AppendFields(args), through, partition)
		return stmt{partition: "d/" + k.property + "/" + dayString(k.daily.Day) + "/" + k.daily.Report, cql: rollup.InsertDaily, args: args, keys: 5}, nil
	case kindHourly:
		m := &r.metrics
		return stmt{partition: "h/" + k.property + "/" + dayString(k.hourly.Day), cql: cqlHourly, args: []any{
			k.property, k.hourly.Day, int16(k.hourly.Hour), sh, users, m.NewUsers, m.Sessions, m.EngagedSessions, m.Bounces,
			m.DurationMS, m.Pageviews, m.Events, m.Conversions, m.ConversionValue, through, partition}, keys: 4}, nil
	case kindRealtime:
		return stmt{partition: "r/" + k.property, cql: cqlRealtime, args: []any{
			k.property, k.minute.Minute, sh, r.metrics.Pageviews, users, r.pages, r.sources, through, partition}, keys: 3}, nil
	default:
		return stmt{partition: "f/" + k.property + "/" + dayString(k.filtered.Day), cql: cqlFiltered, args: []any{
			k.property, k.filtered.Day, k.filtered.Reason, sh, r.hits, through, partition}, keys: 4}, nil
	}
}

// rowDelete returns the statement that deletes the row at k (not
// realtime: those expire).
func rowDelete(k rowKey) stmt {
	sh := int16(k.shard)
	switch k.kind {
	case kindDaily:
		return stmt{partition: "d/" + k.property + "/" + dayString(k.daily.Day) + "/" + k.daily.Report,
			cql:  "DELETE FROM rollup_daily WHERE property_id = ? AND day = ? AND report = ? AND dimension = ? AND shard = ?",
			args: []any{k.property, k.daily.Day, k.daily.Report, k.daily.Dimension, sh}}
	case kindHourly:
		return stmt{partition: "h/" + k.property + "/" + dayString(k.hourly.Day),
			cql:  "DELETE FROM rollup_hourly WHERE property_id = ? AND day = ? AND hour = ? AND shard = ?",
			args: []any{k.property, k.hourly.Day, int16(k.hourly.Hour), sh}}
	case kindFiltered:
		return stmt{partition: "f/" + k.property + "/" + dayString(k.filtered.Day),
			cql:  "DELETE FROM filtered_hits WHERE property_id = ? AND day = ? AND reason = ? AND shard = ?",
			args: []any{k.property, k.filtered.Day, k.filtered.Reason, sh}}
	}
	panic(fmt.Sprintf("rowDelete of a row of kind %d", k.kind))
}

func dayString(t time.Time) string { return t.Format(time.DateOnly) }

// dayHours are the hours of a day, 0 to 23, bound to "hour IN ?" to read
// the partitions of a (day, shard) of a table partitioned by hour in one
// query.
var dayHours = func() []int16 {
	out := make([]int16, 24)
	for i := range out {
		out[i] = int16(i)
	}
	return out
}()

// selectDayShard returns a query of columns of a property's rows of
// table in a (day, shard), and its values. The tables partitioned by hour
// (named *_by_hour) are read in the 24 partitions of the (day, shard) at
// once (dayHours), so that a day costs a query per (table, shard) either
// way.
func selectDayShard(columns, table, property string, day time.Time, shard int) (string, []any) {
	cql := "SELECT " + columns + " FROM " + table + " WHERE property_id = ? AND day = ? AND shard = ?"
	args := []any{property, day, int16(shard)}
	if strings.HasSuffix(table, "_by_hour") {
		cql += " AND hour IN ?"
		args = append(args, dayHours)
	}
	return cql, args
}

// hourPartition is the label (stmt.partition) of the partition of table
// at (day, shard, hour) of the tables partitioned by hour: statements
// are batched by it, so a batch never spans two hours.
func hourPartition(table, property string, day time.Time, shard, hour int) string {
	return table + "/" + property + "/" + dayString(day) + "/" + strconv.Itoa(shard) + "/" + strconv.Itoa(hour)
}

// sessionDeletes returns the statements deleting the session row ref (in
// the partition of its day and hour), and its row in sessions, the table
// partitioned by day that builds before migration 17 wrote: a session
// that was in progress at the upgrade and has since merged away or been
// renamed (a late hit became its first) must not stay there, where only
// a newer copy in sessions_by_hour tells a stale row from a current one.
// (A session's deletes are rare: they cost a second statement.)
func sessionDeletes(property string, shard int, ref visitor.SessionRef) []stmt {
	return []stmt{
		{partition: hourPartition("s", property, ref.Day, shard, ref.Hour),
			cql: cqlDeleteSession, args: []any{property, ref.Day, int16(shard), int16(ref.Hour), ref.ID}},
		{partition: "sessions/" + property + "/" + dayString(ref.Day) + "/" + strconv.Itoa(shard),
			cql: cqlDeleteOldSession, args: []any{property, ref.Day, int16(shard), ref.ID}},
	}
}

// hitRow is what a pageview's or an event's row was last written with:
// its signature (the session it is in, and a pageview's time on page),
// and the day and hour whose partition holds it.
type hitRow struct {
	sig  string
	day  time.Time
	hour int
}

// sessionWrites returns the rows of a session: the session itself, in the
// partition of the hour it started in, and its pageviews and events, each
// in the partition of its own hour (session.LocalHour, in the session's
// zone). written, when not nil, holds what was last written for each hit:
// hits whose row would not change, in the same partition, are skipped,
// and the new rows of the others are added to sigs, for the caller to
// record once the writes succeeded. A row written in another partition
// than its hit's now (the session was derived again under another zone,
// which moves its hits' hours, or day) is deleted there.
func sessionWrites(property string, shard int, client string, first bool, s *session.Session, written, sigs map[string]hitRow) []stmt {
	sh := int16(shard)
	t := s.Touch
	out := []stmt{{partition: hourPartition("s", property, s.Day, shard, s.Hour), cql: cqlSession, args: []any{
		property, s.Day, sh, int16(s.Hour), s.ID, client, s.Start, s.End, s.Landing, s.Exit, s.Pageviews, s.Events, s.Bounce, s.Engaged,
		t.Source, t.Medium, t.Campaign, t.Referrer, s.Channel, s.Country, s.Device, s.Browser, s.OS, first,
		s.Conversions, s.ConversionValue, s.RuleVersion}}}
	i := 0
	// unchanged reports whether h's row is written as now already; if
	// not, it records now in sigs and deletes the row where it was
	// written, if that is another partition (label, cql: its table's).
	unchanged := func(h *session.Hit, now hitRow, label, cql string) bool {
		if written == nil {
			return false
		}
		prior, ok := written[h.ID]
		moved := ok && (!prior.day.Equal(now.day) || prior.hour != now.hour)
		if ok && !moved && prior.sig == now.sig {
			return true
		}
		sigs[h.ID] = now
		if moved {
			out = append(out, stmt{partition: hourPartition(label, property, prior.day, shard, prior.hour), cql: cql,
				args: []any{property, prior.day, sh, int16(prior.hour), h.ID}})
		}
		return false
	}
	for _, h := range s.Hits {
		switch h.Type {
		case hit.TypePageview:
			pt := s.PageTimesMS[i]
			i++
			hour := session.LocalHour(h.Time, s.Location)
			if unchanged(h, hitRow{s.ID + "/" + strconv.FormatInt(pt, 10), s.Day, hour}, "p", cqlDeletePageview) {
				continue
			}
			out = append(out, stmt{partition: hourPartition("p", property, s.Day, shard, hour), cql: cqlPageview, args: []any{
				property, s.Day, sh, int16(hour), h.ID, h.Time, s.ID, client, h.Path, h.Title, pt, h.RuleVersion}})
		case hit.TypeEvent:
			hour := session.LocalHour(h.Time, s.Location)
			if unchanged(h, hitRow{s.ID, s.Day, hour}, "e", cqlDeleteEvent) {
				continue
			}
			out = append(out, stmt{partition: hourPartition("e", property, s.Day, shard, hour), cql: cqlEvent, args: []any{
				property, s.Day, sh, int16(hour), h.ID, h.Time, s.ID, client, h.Category, h.Action, h.Label, h.Value, h.Path, h.RuleVersion}})
		}
	}
	return out
}
