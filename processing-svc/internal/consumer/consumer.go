// Package consumer runs the processing engine on the partitions of the
// hits topic that this instance's consumer group session claims.
//
// Per claimed partition it applies messages in batches and flushes on a
// timer; only after a flush has written everything derived does it mark and
// commit the offset. A batch or flush that fails (Cassandra or config-svc
// unreachable) is retried with backoff, holding the partition: nothing is
// skipped and nothing committed early. When the partition is revoked
// (rebalance, shutdown) it flushes and commits before letting go.
//
// The group rebalances cooperatively by default (pkg/kafka,
// RebalanceCooperative): a rebalance revokes only the partitions that
// move, and the others go on applying and flushing throughout. Under
// the eager protocol (RebalanceEager) every rebalance revokes every
// partition. The consumer does the same under both: a revoked partition
// (its Messages channel closed, or the session's end) is handed over, and
// a partition claimed starts warm or cold.
//
// A partition handed over cleanly is kept in memory, warm: when the group
// gives it back to this member in the generation right after (eager: its
// sticky strategy makes that the rule; cooperative: rare, a partition
// whose new owner left before taking it), its visitors and rows go on
// from where they were instead of being read again from Cassandra
// (Consumer.ConsumeClaim says when exactly).
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Consumer.
type Config struct {
	Group         sarama.ConsumerGroup
	Topic         string
	Session       *gocql.Session
	Properties    engine.Properties
	DeadLetter    func(ctx context.Context, dl []hit.DeadLetter) error
	FlushInterval time.Duration      // how often derived rows are written (freshness; default DefaultFlushInterval)
	State         engine.StatePolicy // when visitors are written
	BatchSize     int                // messages applied at once
	// HandOver bounds the final flush of a partition being revoked or shut
	// down, which is tried again (backing off) until it passes (0: no
	// bound in time, three tries). Past it the flush gives up: the group has
	// moved the partition on (the rebalance timeout) or the process is
	// about to leave it (the shutdown timeout), and a write landing after
	// the next owner's would overwrite newer rows with older ones. The
	// next owner replays from the last commit, so giving up loses nothing.
	HandOver time.Duration
	Log      *slog.Logger
	Metrics  *Metrics
}

// Metrics are the consumer's Prometheus metrics.
type Metrics struct {
	Hits        *prometheus.CounterVec
	Flushes     *prometheus.CounterVec
	FlushTime   prometheus.Histogram
	Freshness   prometheus.Histogram
	Partitions  prometheus.Gauge
	DeadLetters prometheus.Counter
	Statements  prometheus.Counter
	Requests    prometheus.Counter
	Bytes       prometheus.Counter
	Fallbacks   prometheus.Counter
	GroupErrors prometheus.Counter
	// JoinsRefused counts the group's refusals of this member
	// (INCONSISTENT_GROUP_PROTOCOL: no rebalance strategy in common with
	// the members in it), each also logged.
	JoinsRefused prometheus.Counter
	// Claims counts the partitions claimed, by start: warm (its state kept
	// in memory from this member's previous session) or cold.
	Claims *prometheus.CounterVec
	// VisitorReads counts the visitors read from the store because they
	// were not in memory (engine.Stats.VisitorReads).
	VisitorReads prometheus.Counter
	// RowReads counts the queries reading rollup rows that were not in
	// memory (engine.Stats.RowReads).
	RowReads prometheus.Counter
}

// NewMetrics registers the consumer's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "processing_hits_total", Help: "Hits processed, by outcome (applied, duplicate, excluded, too_late, visitor_limit, skipped).",
		}, []string{"outcome"}),
		Flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "processing_flushes_total", Help: "Flushes of derived rows, by result.",
		}, []string{"result"}),
		FlushTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "processing_flush_seconds", Help: "Time to write one flush.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		Freshness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "processing_freshness_seconds",
			Help:    "Time from a hit's acceptance by collection to its rollups being written.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600},
		}),
		Partitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "processing_partitions", Help: "Hits-topic partitions this instance owns.",
		}),
		DeadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "processing_dead_letters_total", Help: "Messages sent to the dead-letter topic by processing.",
		}),
		Statements: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "processing_statements_total", Help: "CQL statements written by flushes (rows, deletes, archive blocks).",
		}),
		Requests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "processing_write_requests_total", Help: "Requests to Cassandra those statements were written in (batches of one partition's statements, or single statements).",
		}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "processing_written_bytes_total", Help: "Bytes of the text and blob values in those statements (visitor states, sketches, strings): the bulk of what processing sends Cassandra.",
		}),
		Fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "processing_rule_fallbacks_total", Help: "Hits derived under another rules version than the one collection stamped on them: processing's copy of the property's rule history did not have it yet (or, in a replay, an earlier owner of the partition recorded so).",
		}),
		GroupErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "processing_consumer_errors_total", Help: "Errors the Kafka consumer group reported (failed offset commits, fetch and rebalance errors), each also logged.",
		}),
		JoinsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "processing_group_joins_refused_total", Help: "Joins of the consumer group refused with INCONSISTENT_GROUP_PROTOCOL: this instance offers no rebalance strategy the group's members all offer (a rollout's first step skipped: docs/operations.md, \"Cooperative rebalancing: the two-step upgrade\"). It holds no partition meanwhile, and tries again every 10 s.",
		}),
		Claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "processing_partition_claims_total", Help: "Hits-topic partitions claimed in a consumer group session, by start: warm (kept in memory from this instance's previous session, nothing read again) or cold (visitors and rows read from Cassandra as hits need them).",
		}, []string{"start"}),
		VisitorReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "processing_visitor_reads_total", Help: "Visitors looked up in Cassandra (visitor_state) because they were not in memory: new visitors, visitors evicted when idle, and every active visitor of a partition claimed cold.",
		}),
		RowReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "processing_row_reads_total", Help: "Queries reading rollup rows that were not in memory (new rows, and every row a partition claimed cold touches): one for a day's new rollup_daily rows of a property and shard (up to 256 at once), one for each other row.",
		}),
	}
	for _, start := range []string{"warm", "cold"} {
		m.Claims.WithLabelValues(start)
	}
	reg.MustRegister(m.Hits, m.Flushes, m.FlushTime, m.Freshness, m.Partitions, m.DeadLetters, m.Statements, m.Requests, m.Bytes, m.Fallbacks, m.GroupErrors, m.JoinsRefused, m.Claims, m.VisitorReads, m.RowReads)
	return m
}

// Consumer is the consumer group member.
type Consumer struct {
	cfg  Config
	kept kept
	// session is the state of the group session running (Setup sets it),
	// nil before the first.
	session atomic.Pointer[session]
}

// kept holds the Partitions whose hand-over succeeded, each with the
// generation it was handed over in, for a claim in the generation right
// after to resume.
type kept struct {
	mu    sync.Mutex
	parts map[int32]keptPartition
}

type keptPartition struct {
	gen int32
	p   *engine.Partition
}

// keep keeps p, of partition, handed over cleanly in generation gen:
// the one the member's session was in when the hand-over ended. Under
// the eager protocol it is the generation the member owned the partition
// in. Under the cooperative one, a partition revoked mid-session is
// handed over in the generation whose assignment revoked it (sarama
// moves the session to a generation before it revokes what that
// generation took away), in which the partition has no owner: the
// cooperative protocol gives it to its new owner only in the next
// generation, once this member has let it go. Either way no other member
// owned it in gen.
func (k *kept) keep(gen, partition int32, p *engine.Partition) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.parts == nil {
		k.parts = map[int32]keptPartition{}
	}
	k.parts[partition] = keptPartition{gen: gen, p: p}
}

// expire drops, the session being in generation gen with claims, what no
// claim can resume any more: partitions kept from before the generation
// just before gen, and those kept from the generation just before gen
// that gen does not give this member. Those kept in gen itself (under the
// cooperative protocol, revoked by gen's assignment, and given to their
// new owner by the next) stay.
func (k *kept) expire(gen int32, claims []int32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for part, e := range k.parts {
		if gen > e.gen+1 || (gen == e.gen+1 && !slices.Contains(claims, part)) {
			delete(k.parts, part)
		}
	}
}

// take returns the Partition kept of partition, if the claim of it in
// generation gen, starting at offset, may resume it, and otherwise nil
// and why not; either way it is no longer kept.
func (k *kept) take(gen, partition int32, offset int64) (*engine.Partition, string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.parts[partition]
	delete(k.parts, partition)
	switch {
	case !ok:
		return nil, "not kept"
	case gen != e.gen+1:
		return nil, fmt.Sprintf("kept from generation %d, claimed in %d", e.gen, gen)
	case !e.p.CanResume(offset):
		return nil, fmt.Sprintf("claimed from offset %d, not the one after its hand-over", offset)
	}
	return e.p, ""
}

// len returns how many Partitions are kept.
func (k *kept) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.parts)
}

// clear drops everything kept.
func (k *kept) clear() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.parts = nil
}

// session is what the consumer keeps for one group session: the
// committer of its flushes' offsets.
type session struct {
	s sarama.ConsumerGroupSession
	// commit asks the committer to commit what is marked.
	commit chan struct{}
}

// run commits the session's marked offsets when asked, and drops the
// kept Partitions that no claim can resume any more (kept.expire) once a
// second, until the session ends.
//
// Flushes commit through it, not by calling Commit themselves, because
// sarama's Commit waits while the member joins a new generation (the
// offset manager's generation lock, held through JoinGroup and
// SyncGroup): under the cooperative protocol the partitions that stay
// would pause for the whole join, each at its next flush. A hand-over
// commits itself, and at once, with the marks of the flushes before it
// (worker.queued): sarama drops a revoked partition's offset manager, and
// its marks, as soon as its ConsumeClaim returns, and commits nothing as
// a session ends; run stops at the session's end without committing.
//
// Expiring kept Partitions here matters under the cooperative protocol,
// whose Setup runs once per session: the generations change within it.
// A generation is acted on once it has been seen twice a second apart,
// because sarama moves the session to a new generation before it updates
// its claims. That is a heuristic: sarama updates them only after the
// partitions the generation revokes are handed over (up to the rebalance
// timeout), so a slow hand-over lets run expire with the claims of the
// generation before, and drop a Partition the new one gives back to this
// member (kept in the generation before it). That costs a cold start,
// never a number: expire only drops.
func (ss *session) run(k *kept, topic string) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	seen := ss.s.GenerationID()
	for {
		select {
		case <-ss.s.Context().Done():
			return
		case <-ss.commit:
			ss.s.Commit()
		case <-tick.C:
			if gen := ss.s.GenerationID(); gen != seen {
				seen = gen
			} else {
				k.expire(gen, ss.s.Claims()[topic])
			}
		}
	}
}

// DefaultFlushInterval is how often a partition's derived rows are
// written by default (processing's -flush-interval). Each flush rewrites
// every rollup row its hits touched, so a longer interval writes fewer
// statements and bytes per hit for less fresh reports (docs/benchmarks.md,
// "Flush interval").
const DefaultFlushInterval = 2 * time.Second

// New returns a Consumer.
func New(cfg Config) *Consumer {
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 2000
	}
	return &Consumer{cfg: cfg}
}

// Run consumes until ctx is done. It also logs and counts the errors the
// group reports (Consumer.Return.Errors is on in pkg/kafka), until it
// returns: those of the last commit too.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.kept.clear()
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() { defer close(watched); c.watchErrors(stop) }()
	defer func() { close(stop); <-watched }()
	for {
		if err := c.cfg.Group.Consume(ctx, []string{c.cfg.Topic}, c); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
				return nil
			}
			wait := time.Second
			if errors.Is(err, sarama.ErrInconsistentGroupProtocol) {
				// Nothing is lost: the members in the group keep every
				// partition. Until they leave, joining again fails the same.
				wait = 10 * time.Second
				c.cfg.Metrics.JoinsRefused.Inc()
				c.cfg.Log.Error("consumer group refused this member (INCONSISTENT_GROUP_PROTOCOL): members of an earlier build are in the group, "+
					"which offer no rebalance strategy in common with it (this one rebalances cooperatively); "+
					"roll out with -kafka-rebalance=eager (PROCESSING_KAFKA_REBALANCE=eager) first, then without it "+
					"(docs/operations.md, \"Cooperative rebalancing: the two-step upgrade\"); rejoining",
					slog.Any("error", err), slog.Duration("retry", wait))
			} else {
				c.cfg.Log.Warn("consumer group session ended; rejoining", slog.Any("error", err))
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// watchErrors logs and counts the group's errors until stop is closed,
// then those already reported. A failed commit stays marked and goes with
// the partition's next commit, and a partition handed over before that is
// replayed from its last committed offset (replays change no number): a
// warning to watch, not a failure of the consumer.
func (c *Consumer) watchErrors(stop <-chan struct{}) {
	errs := c.cfg.Group.Errors()
	for {
		select {
		case err, ok := <-errs:
			if !ok {
				return
			}
			c.groupError(err)
		case <-stop:
			for {
				select {
				case err, ok := <-errs:
					if !ok {
						return
					}
					c.groupError(err)
				default:
					return
				}
			}
		}
	}
}

func (c *Consumer) groupError(err error) {
	c.cfg.Metrics.GroupErrors.Inc()
	attrs := []slog.Attr{slog.Any("error", err)}
	if ce := (*sarama.ConsumerError)(nil); errors.As(err, &ce) {
		attrs = append(attrs, slog.String("topic", ce.Topic), slog.Int("partition", int(ce.Partition)))
	}
	c.cfg.Log.LogAttrs(context.Background(), slog.LevelWarn, "consumer group error", attrs...)
}

// Setup implements sarama.ConsumerGroupHandler. It drops the Partitions
// kept that this session will not resume, and starts the session's
// committer (session.run). Under the eager protocol it runs at every
// rebalance; under the cooperative one once, as the member joins.
func (c *Consumer) Setup(s sarama.ConsumerGroupSession) error {
	c.cfg.Log.Info("consumer group session started", slog.Any("claims", s.Claims()), slog.Int("generation", int(s.GenerationID())))
	c.kept.expire(s.GenerationID(), s.Claims()[c.cfg.Topic])
	ss := &session{s: s, commit: make(chan struct{}, 1)}
	c.session.Store(ss)
	go ss.run(&c.kept, c.cfg.Topic)
	return nil
}

// Cleanup implements sarama.ConsumerGroupHandler.
func (c *Consumer) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim processes one partition until it is revoked, and hands it
// over: writes every visitor and commits, before returning (sarama drops
// the partition's offset manager as soon as it returns). Revoked is its
// Messages channel closed (the cooperative protocol revokes the
// partitions that move, the others go on) or the session's end (every
// partition under the eager protocol, and at shutdown).
//
// It starts warm, resuming the engine.Partition this member kept from a
// hand-over, when resuming changes no number: the claim comes in the
// generation right after the one the hand-over was in, in which no other
// member owned the partition (kept.keep says why, under either protocol;
// so no other member can have applied a message of it since), the
// hand-over succeeded (kept only then), and the Partition may resume at
// this claim's first offset (engine.Partition.CanResume: nothing
// pending, and the offset, the one the broker holds as committed, is the
// one after the last it applied, so the hand-over's commit reached the
// broker). Otherwise it starts cold, with a new Partition that reads
// visitors and rows from the store as hits need them.
//
// Under the cooperative protocol the session's context does not end when
// a partition is revoked: sarama closes its Messages channel, and that
// alone. A revoked partition whose apply or flush is retrying against a
// failing store sees the close while it waits out a backoff
// (worker.wait, which takes the messages queued before it, pausing the
// partition's fetching past a batch), stops retrying and hands over (bounded by Config.HandOver), as
// under the eager protocol; an attempt already running ends first (a
// store that does not answer at all: gocql's timeout). Meanwhile the
// partition has no owner: the group gives it to its new one only once
// this member has let it go.
func (c *Consumer) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	m := c.cfg.Metrics
	m.Partitions.Inc()
	defer m.Partitions.Dec()
	gen := s.GenerationID()
	log := c.cfg.Log.With(slog.Int("partition", int(claim.Partition())))
	p, why := c.kept.take(gen, claim.Partition(), claim.InitialOffset())
	if p == nil {
		p = engine.New(engine.Config{
			Topic: claim.Topic(), Partition: claim.Partition(), Session: c.cfg.Session,
			Properties: c.cfg.Properties, DeadLetter: c.deadLetter, Log: log, State: c.cfg.State,
		})
		m.Claims.WithLabelValues("cold").Inc()
		log.Info("partition claimed", slog.Int("generation", int(gen)), slog.String("start", "cold"),
			slog.String("reason", why), offsetAttr(claim.InitialOffset()))
	} else {
		m.Claims.WithLabelValues("warm").Inc()
		log.Info("partition claimed", slog.Int("generation", int(gen)), slog.String("start", "warm"),
			offsetAttr(claim.InitialOffset()))
	}
	// What p counted before is in the metrics already.
	w := &worker{c: c, s: s, ss: c.session.Load(), p: p, topic: claim.Topic(), partition: claim.Partition(), log: log, stats: p.Stats(), committed: claim.InitialOffset(),
		highWater: claim.HighWaterMarkOffset, claimedHighWater: claim.HighWaterMarkOffset()}
	defer w.resume()
	err := w.consume(claim.Messages())
	if err != nil && !w.failing && s.Context().Err() != nil && errors.Is(err, context.Canceled) {
		// Revoked or shutting down while an apply or a flush waited on the
		// store, which had not failed: the session's end cut the work
		// short, no failure. The hand-over below writes what was applied;
		// returned, it would be a group error (logged at warn, counted in
		// processing_consumer_errors_total) at every rebalance with traffic.
		log.Debug("work cut short by the end of the session", slog.Any("error", err))
		err = nil
	}
	// Revoked, shutting down, or the session ended mid-retry: write what
	// was applied, commit it.
	start, cause := time.Now(), "revoked"
	if s.Context().Err() != nil {
		cause = "session ended"
	}
	handOver := w.flush(context.WithoutCancel(s.Context()), true)
	if w.queued {
		// A regular flush's mark left to the session's committer, which
		// may not have committed it yet (busy, or waiting out a join),
		// and the final flush did not (nothing left to write, or it
		// failed): sarama drops the mark once this returns, and the
		// session's offset manager commits nothing as it closes.
		s.Commit()
		w.queued = false
	}
	attrs := []slog.Attr{slog.Int("generation", int(s.GenerationID())), slog.String("cause", cause),
		offsetAttr(w.committed), slog.Duration("took", time.Since(start))}
	if handOver == nil {
		c.kept.keep(s.GenerationID(), claim.Partition(), p)
		log.LogAttrs(context.Background(), slog.LevelInfo, "partition handed over", attrs...)
	} else {
		log.LogAttrs(context.Background(), slog.LevelWarn, "partition hand-over failed; the next owner replays from the last commit",
			append(attrs, slog.Any("error", handOver))...)
	}
	return errors.Join(err, handOver)
}

// offsetAttr logs the offset the group holds as committed for a partition,
// which a claim starts from and a hand-over leaves: "none" where the group
// holds none (a partition nothing was ever committed for; sarama's
// OffsetOldest, -2, which a claim then starts from, is no offset).
func offsetAttr(offset int64) slog.Attr {
	if offset < 0 {
		return slog.String("offset", "none")
	}
	return slog.Int64("offset", offset)
}

// consume applies msgs and flushes on the timer until the session ends,
// msgs is closed, or a retry is cut short by the session's end (its
// error).
func (w *worker) consume(msgs <-chan *sarama.ConsumerMessage) error {
	c, s := w.c, w.s
	ticker := time.NewTicker(c.cfg.FlushInterval)
	defer ticker.Stop()
	w.msgs = msgs
	defer func() { w.msgs = nil }()
	for {
		if w.revoked {
			return nil
		}
		if len(w.held) == 0 {
			w.resume()
		}
		if len(w.held) > 0 {
			// Taken while a retry waited (worker.wait): they come first.
			n := min(len(w.held), c.cfg.BatchSize)
			batch := slices.Clone(w.held[:n])
			w.held = slices.Delete(w.held, 0, n)
			if err := w.apply(batch); err != nil {
				return err
			}
			continue
		}
		select {
		case msg, ok := <-msgs:
			if !ok {
				return nil
			}
			batch := []*sarama.ConsumerMessage{msg}
		drain:
			for len(batch) < c.cfg.BatchSize {
				select {
				case more, ok := <-msgs:
					if !ok {
						break drain
					}
					batch = append(batch, more)
				default:
					break drain
				}
			}
			if err := w.apply(batch); err != nil {
				return err
			}
		case <-ticker.C:
			if err := w.flush(s.Context(), false); err != nil {
				return err
			}
		case <-s.Context().Done():
			return nil
		}
	}
}

type worker struct {
	c         *Consumer
	s         sarama.ConsumerGroupSession
	ss        *session // nil: the claim runs without Setup (tests), and commits itself
	p         *engine.Partition
	topic     string
	partition int32
	log       *slog.Logger
	received  []time.Time // receive times of hits applied since the last flush
	// failing is true while an operation retry runs has failed and not yet
	// succeeded: a session ending then ends a failure, not only work.
	failing bool
	stats   engine.Stats
	// committed is the offset the group holds for the partition once
	// what is marked is committed: the claim's first, until a flush marks
	// the one after what it wrote.
	committed int64
	// queued is true once a flush has left its mark to the session's
	// committer (session.run), until a commit of this worker's own: the
	// hand-over commits it, whatever the committer has done.
	queued bool
	// msgs is the claim's Messages while consume runs. A retry waiting
	// out its backoff takes from it (into held; past a batch it pauses
	// the partition's fetching) to see the channel close: under the cooperative protocol that is the only
	// sign of a revoke, the session's context going on (worker.wait).
	msgs    <-chan *sarama.ConsumerMessage
	held    []*sarama.ConsumerMessage
	revoked bool // msgs closed while a retry waited
	// paused is true while the partition's fetching is paused, held
	// having reached its bound (worker.wait); consume resumes it once
	// held is applied, ConsumeClaim before it returns.
	paused bool
	// highWater is the claim's high water mark, until the first batch
	// has read it for the partition's SettleFrom: every message an
	// earlier owner applied lies below it (the partition's marks say
	// which it may have written rows for, engine/marks.go, but an owner
	// of a build before them wrote none). claimedHighWater is the one it
	// had as the claim began (sarama asks the broker for the newest
	// offset then): a fetch since may have been answered by a leader just
	// elected, which learns the high water mark of the one before it a
	// moment late, and the partition takes the higher of the two.
	highWater        func() int64
	claimedHighWater int64
}

// heldMin is the least number of messages worker.wait takes before it
// pauses the partition's fetching: four times sarama's queue of a claim's
// messages (Config.ChannelBufferSize, 256).
const heldMin = 1024

// errRevoked ends a retry whose partition was revoked while it waited.
var errRevoked = errors.New("partition revoked while retrying")

// apply applies a batch, retrying while the session lasts.
func (w *worker) apply(batch []*sarama.ConsumerMessage) error {
	if w.highWater != nil {
		// Sarama reads it from the broker as the claim starts, and again
		// with every fetch.
		if hw := max(w.claimedHighWater, w.highWater()); hw > 0 {
			w.p.SettleFrom(hw)
			w.highWater = nil
		}
	}
	msgs := make([]engine.Message, len(batch))
	for i, m := range batch {
		msgs[i] = engine.Message{Offset: m.Offset, Value: m.Value}
	}
	err := w.retry(w.s.Context(), 0, func(ctx context.Context) error { return w.p.Apply(ctx, msgs) }, "apply batch")
	if err != nil {
		return err
	}
	now := time.Now()
	for _, m := range batch {
		// The message timestamp is set by collection's producer, right
		// after it accepted the hit.
		if !m.Timestamp.IsZero() && m.Timestamp.Before(now) {
			w.received = append(w.received, m.Timestamp)
		}
	}
	return nil
}

// flush writes the partition's derived rows and the visitors due, and
// marks the offset after them, then commits it: a final flush at once, the
// others through the session's committer (session.run). final flushes
// write every visitor and are retried a bounded number of times: the
// partition is being handed over, and the next owner recovers whatever is
// not written.
func (w *worker) flush(ctx context.Context, final bool) error {
	if !w.p.Pending() {
		w.p.Evict() // a partition gone quiet lets its idle visitors and rows go
		return nil
	}
	m := w.c.cfg.Metrics
	start := time.Now()
	var through int64
	op := func(ctx context.Context) error {
		var err error
		if final {
			through, err = w.p.FlushAll(ctx)
		} else {
			through, err = w.p.Flush(ctx)
		}
		return err
	}
	var err error
	if final {
		tries := 3 // without a bound in time
		if h := w.c.cfg.HandOver; h > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, h)
			defer cancel()
			tries = 0 // until the bound: an outage of a moment costs the next owner no replay
		}
		err = w.retry(ctx, tries, op, "hand-over flush")
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("hand-over not written within %s (the next owner replays it): %w", w.c.cfg.HandOver, err)
		}
	} else {
		err = w.retry(ctx, 0, op, "flush")
	}
	if err != nil {
		m.Flushes.WithLabelValues("error").Inc()
		return fmt.Errorf("flush partition %d: %w", w.partition, err)
	}
	m.Flushes.WithLabelValues("ok").Inc()
	m.FlushTime.Observe(time.Since(start).Seconds())
	w.s.MarkOffset(w.topic, w.partition, through+1, "")
	w.committed = through + 1
	if final || w.ss == nil {
		w.s.Commit()
		w.queued = false
	} else {
		w.queued = true
		select {
		case w.ss.commit <- struct{}{}:
		default: // a commit is due already, and takes this mark too
		}
	}
	now := time.Now()
	for _, t := range w.received {
		m.Freshness.Observe(now.Sub(t).Seconds())
	}
	w.received = w.received[:0]
	st := w.p.Stats()
	m.Hits.WithLabelValues("applied").Add(float64(st.Applied - w.stats.Applied))
	m.Hits.WithLabelValues("duplicate").Add(float64(st.Duplicates - w.stats.Duplicates))
	m.Hits.WithLabelValues("excluded").Add(float64(st.Excluded - w.stats.Excluded))
	m.Hits.WithLabelValues("too_late").Add(float64(st.TooLate - w.stats.TooLate))
	m.Hits.WithLabelValues("visitor_limit").Add(float64(st.OverLimit - w.stats.OverLimit))
	m.Hits.WithLabelValues("skipped").Add(float64(st.Skipped - w.stats.Skipped))
	m.DeadLetters.Add(float64(st.DeadLetters - w.stats.DeadLetters))
	m.Statements.Add(float64(st.Statements - w.stats.Statements))
	m.Requests.Add(float64(st.Requests - w.stats.Requests))
	m.Bytes.Add(float64(st.Bytes - w.stats.Bytes))
	m.Fallbacks.Add(float64(st.Fallbacks - w.stats.Fallbacks))
	m.VisitorReads.Add(float64(st.VisitorReads - w.stats.VisitorReads))
	m.RowReads.Add(float64(st.RowReads - w.stats.RowReads))
	w.stats = st
	return nil
}

// retry runs op until it succeeds, ctx ends or, with tries above 0, it
// has failed that many times, backing off.
func (w *worker) retry(ctx context.Context, tries int, op func(ctx context.Context) error, what string) error {
	backoff := 100 * time.Millisecond
	for i := 1; ; i++ {
		err := ctx.Err() // past the deadline already: nothing is tried
		if err == nil {
			if err = op(ctx); err == nil {
				w.failing = false
				return nil
			}
		}
		if ctx.Err() != nil || i == tries {
			if ctx.Err() == nil {
				w.failing = true
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		w.failing = true
		w.log.Warn(what+" failed; retrying", slog.Any("error", err), slog.Duration("backoff", backoff))
		if werr := w.wait(ctx, backoff); werr != nil {
			return fmt.Errorf("%s: %w (last error: %w)", what, werr, err)
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// wait waits d, or until ctx ends or the partition is revoked (its error).
//
// Meanwhile it takes the claim's messages into held (consume applies them
// first, in order), so as to see the channel close: under the cooperative
// protocol the session's context goes on when a partition is revoked, and
// a revoked partition must be let go within the rebalance timeout, or
// sarama ends the member's whole session. Messages go on coming while the
// store fails, revoked or not, so once held has a batch (2,000 by
// default), and at least heldMin, it pauses the partition's fetching
// (ConsumerGroup.Pause) and goes on taking what sarama fetched already
// (its queue of 256, Config.ChannelBufferSize, and the fetch it is
// handing out): few more, and then the close, if it comes.
func (w *worker) wait(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		var msgs <-chan *sarama.ConsumerMessage // nil: not watched
		if !w.revoked {
			if len(w.held) >= max(w.c.cfg.BatchSize, heldMin) {
				w.pause()
			}
			msgs = w.msgs
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return nil
		case msg, ok := <-msgs:
			if !ok {
				w.revoked = true
				return errRevoked
			}
			w.held = append(w.held, msg)
		}
	}
}

// pause stops the group fetching the partition's messages, if it has not
// already (no group: a test's claim, whose messages are all there).
func (w *worker) pause() {
	if w.paused || w.c.cfg.Group == nil {
		return
	}
	w.c.cfg.Group.Pause(map[string][]int32{w.topic: {w.partition}})
	w.paused = true
}

// resume lifts pause. Sarama keeps a partition paused across its
// reassignment, so a claim resumes before it returns.
func (w *worker) resume() {
	if !w.paused {
		return
	}
	w.c.cfg.Group.Resume(map[string][]int32{w.topic: {w.partition}})
	w.paused = false
}

// deadLetter publishes processing's rejected messages.
func (c *Consumer) deadLetter(ctx context.Context, dls []hit.DeadLetter) error {
	if c.cfg.DeadLetter == nil {
		return nil
	}
	return c.cfg.DeadLetter(ctx, dls)
}
