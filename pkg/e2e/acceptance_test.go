package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/localstack"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/simulate"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/gocql/gocql"
)

// size reads the test's size from the environment (make e2e sets a full
// size; make test a reduced one).
func size(t *testing.T) (visitors int, play time.Duration) {
	t.Helper()
	visitors, play = 60, 15*time.Second
	if v := os.Getenv("E2E_VISITORS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("E2E_VISITORS=%q: %v", v, err)
		}
		visitors = n
	}
	if v := os.Getenv("E2E_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("E2E_DURATION=%q: %v", v, err)
		}
		play = d
	}
	return visitors, play
}

// startStack starts the product on free ports, with env (each entry without
// the service's prefix: localstack.Config.Env) in every service's environment.
func startStack(t *testing.T, env ...string) (*localstack.Stack, localstack.Config) {
	t.Helper()
	bin := os.Getenv("E2E_BIN_DIR")
	if bin == "" {
		t.Skip("E2E_BIN_DIR is not set: the acceptance test runs the built binaries; use `make e2e-short` or `make e2e`")
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		// Below Linux's ephemeral ports (32768 and up), so that no
		// outgoing connection holds a port the stack is about to listen on.
		base := 20000 + rand.IntN(12000)
		cfg := localstack.Config{BinDir: bin, DataDir: dataDir(t), ConsulPort: base + 500, KafkaPort: base + 600, CQLPort: base + 700,
			ServicePortBase: base, Collections: 2, Env: env, Out: testWriter{t}}
		s, err := localstack.Start(context.Background(), cfg)
		if err == nil {
			t.Cleanup(func() {
				if t.Failed() {
					logWarnings(t, filepath.Join(cfg.DataDir, "logs"))
					t.Logf("logs of the failed run are in %s/logs", cfg.DataDir)
				}
				s.Stop()
			})
			return s, cfg
		}
		lastErr = err
		if !strings.Contains(err.Error(), "in use") {
			break
		}
	}
	t.Fatalf("start the local stack: %v", lastErr)
	return nil, localstack.Config{}
}

// logWarnings logs the last warnings and errors of each process of a failed
// run: the logs are in a temporary directory, gone with the test, and CI
// keeps only what the test printed.
func logWarnings(t *testing.T, dir string) {
	t.Helper()
	const perLog, width = 15, 500
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Logf("%s: %v", path, err)
			continue
		}
		var warnings []string
		for line := range strings.Lines(string(b)) {
			line = strings.TrimRight(line, "\n")
			if strings.Contains(line, "WARN") || strings.Contains(line, "ERROR") {
				warnings = append(warnings, line[:min(len(line), width)])
			}
		}
		if len(warnings) == 0 {
			continue
		}
		t.Logf("%s: %d warnings and errors, the last %d:\n%s", filepath.Base(path), len(warnings), min(len(warnings), perLog),
			strings.Join(warnings[max(0, len(warnings)-perLog):], "\n"))
	}
}

// dataDir is where the stack keeps its data and logs: a temporary directory,
// or with E2E_KEEP set one that outlives the test, for a post-mortem.
func dataDir(t *testing.T) string {
	t.Helper()
	if os.Getenv("E2E_KEEP") == "" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("", "e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("E2E_KEEP: the stack's data and logs stay in %s", dir)
	return dir
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestAcceptance plays a plan through the running product and compares
// every rollup, and the reports read through the gateway, with the plan's
// expectation.
func TestAcceptance(t *testing.T) {
	stack, cfg := startStack(t)
	visitors, play := size(t)
	run(t, stack, cfg, visitors, play, variant{})
}

// TestAcceptanceWithFaults does the same while processing is killed with
// SIGKILL and restarted, a collection instance is stopped, and Consul is
// restarted. The numbers must still match exactly.
func TestAcceptanceWithFaults(t *testing.T) {
	stack, cfg := startStack(t)
	visitors, play := size(t)
	run(t, stack, cfg, visitors, play, variant{faults: func(ctx context.Context) {
		step := play / 5
		sleep := func() bool {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(step):
				return true
			}
		}
		if !sleep() {
			return
		}
		t.Log("fault: SIGKILL processing")
		must(t, stack.Kill("processing"))
		if !sleep() {
			return
		}
		must(t, stack.Restart(ctx, "processing"))
		t.Log("fault: stop collection-2")
		must(t, stack.Terminate("collection-2"))
		if !sleep() {
			return
		}
		t.Log("fault: restart consul")
		must(t, stack.Kill("consul"))
		must(t, stack.Restart(ctx, "consul"))
	}})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Error(err)
	}
}

// variant is what a test adds to run's plan, traffic and comparison.
type variant struct {
	// setUp runs once the merchant has signed up, before the first hit.
	setUp func(ctx context.Context, m *simulate.Merchant)
	// faults runs while the traffic plays, on the test's goroutine; its
	// context ends with the play, and run waits for both.
	faults func(ctx context.Context)
	// played runs once the traffic has played, with the expectation of
	// what was played, before processing is waited for.
	played func(e *simulate.Expectation)
}

func run(t *testing.T, stack *localstack.Stack, cfg localstack.Config, visitors int, play time.Duration, v variant) {
	ctx := context.Background()
	client := &http.Client{Timeout: 30 * time.Second}
	plan := simulate.New(simulate.Config{Seed: uint64(time.Now().UnixNano()), Visitors: visitors, End: time.Now(), ExcludedCIDR: "203.0.113.0/24"})
	t.Logf("plan: seed %d, %d visitors, %d hits, time zone %s; sessions by case: %v", plan.Config.Seed, visitors, len(plan.Hits), plan.Config.Location, plan.Expect.Cases)
	m, err := simulate.SignUp(ctx, client, stack.GatewayURL(), fmt.Sprintf("e2e-%d@shop.example", plan.Config.Seed), plan.Config)
	if err != nil {
		t.Fatal(err)
	}
	if v.setUp != nil {
		v.setUp(ctx, m)
	}
	// The traffic plays apart, and the faults on the test's goroutine, so
	// that they may stop the test at once (t.Fatal).
	fctx, stopFaults := context.WithCancel(ctx)
	played := make(chan struct{})
	var res simulate.Result
	go func() {
		defer close(played)
		defer stopFaults()
		res, err = simulate.Play(ctx, client, m, plan, play, 8)
	}()
	if v.faults != nil {
		v.faults(fctx)
	}
	<-played
	if err != nil {
		t.Fatalf("play: %v (%+v)", err, res)
	}
	t.Logf("played: %+v", res)
	plan = plan.Rebased(res.Started) // the times the hits were really dated with
	var malformed int64
	for _, n := range plan.Expect.DeadLetters {
		malformed += n
	}
	if res.Rejected != malformed {
		t.Errorf("collection rejected %d hits, the plan has %d malformed", res.Rejected, malformed)
	}
	if v.played != nil {
		v.played(plan.Expect)
	}

	session := connect(t, cfg)
	waitForProcessing(t, cfg, 2*time.Minute)
	if !compareRollups(t, session, m.PropertyID, plan.Expect, res.MaxLatency) {
		traceHits(t, cfg, session, m.PropertyID, plan)
	}
	compareReports(t, client, m, plan.Expect)
	compareDeadLetters(t, cfg, plan.Expect)
}

func connect(t *testing.T, cfg localstack.Config) *gocql.Session {
	t.Helper()
	c := gocql.NewCluster("127.0.0.1:" + strconv.Itoa(cfg.CQLPort))
	c.Keyspace = "analytics"
	c.Timeout = 10 * time.Second
	s, err := c.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// rows reads one report of one day, merged over shards.
func rows(t *testing.T, s *gocql.Session, property, day, report string) map[string]*merged {
	t.Helper()
	d, _ := time.Parse(time.DateOnly, day)
	out := map[string]*merged{}
	iter := s.Query(rollup.SelectDaily, property, d, report).Iter()
	for {
		var r rollup.Row
		ok, err := r.Scan(iter)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		m := out[r.Dimension]
		if m == nil {
			m = &merged{}
			out[r.Dimension] = m
		}
		m.Add(r.Metrics, 1)
		if err := m.users.Merge(&r.Users); err != nil {
			t.Fatal(err)
		}
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

type merged struct {
	rollup.Metrics
	users sketch.Set
}

// waitForProcessing waits until processing has caught up: its consumer
// group has committed, on every partition of the hits topic, the offset
// the partition had when the wait began. Processing commits only after a
// flush has written everything up to that offset, so every accepted hit is
// then in the tables. (Waiting for totals to match instead would return
// early when the last hits change no total, such as a late event.)
func waitForProcessing(t *testing.T, cfg localstack.Config, limit time.Duration) {
	t.Helper()
	client := kafkaClient(t, cfg)
	defer client.Close()
	parts, err := client.Partitions(hit.TopicHits)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	for _, p := range parts {
		if want[p], err = client.GetOffset(hit.TopicHits, p, sarama.OffsetNewest); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, limit, "processing caught up", func() error {
		resp, err := admin.ListConsumerGroupOffsets("processing", map[string][]int32{hit.TopicHits: parts})
		if err != nil {
			return fmt.Errorf("list the group's offsets: %w", err)
		}
		behind := map[int32]int64{}
		for _, p := range parts {
			committed := int64(-1)
			if b := resp.GetBlock(hit.TopicHits, p); b != nil {
				committed = b.Offset
			}
			if want[p] > 0 && committed < want[p] {
				behind[p] = want[p] - max(committed, 0)
			}
		}
		if len(behind) > 0 {
			return fmt.Errorf("messages behind per partition %v", behind)
		}
		return nil
	})
}

// compareRollups compares every expected row: counts exactly, users within
// the sketch's error (exact below its exact limit), times within the
// latency of the requests that carried the hits (at most latency, the
// longest the play measured).
func compareRollups(t *testing.T, s *gocql.Session, property string, e *simulate.Expectation, latency time.Duration) bool {
	t.Helper()
	mismatches := 0
	report := func(format string, args ...any) {
		mismatches++
		if mismatches <= 30 {
			t.Errorf(format, args...)
		}
	}
	for _, day := range e.SortedDays() {
		reports := make([]string, 0, len(e.Days[day]))
		for r := range e.Days[day] {
			if !slices.Contains(rollup.RetiredReports, r) { // reports read from source_medium's rows
				reports = append(reports, r)
			}
		}
		sort.Strings(reports)
		for _, r := range reports {
			got := rows(t, s, property, day, r)
			for dim, want := range e.Days[day][r] {
				g := got[dim]
				if g == nil {
					g = &merged{}
				}
				for _, c := range []struct {
					name      string
					got, want int64
				}{
					{"sessions", g.Sessions, want.Sessions}, {"bounces", g.Bounces, want.Bounces}, {"engaged sessions", g.EngagedSessions, want.Engaged},
					{"new users", g.NewUsers, want.NewUsers}, {"pageviews", g.Pageviews, want.Pageviews}, {"events", g.Events, want.Events},
					{"conversions", g.Conversions, want.Conversions}, {"unique pageviews", g.UniquePageviews, want.UniquePageviews},
					{"entrances", g.Entrances, want.Entrances}, {"exits", g.Exits, want.Exits}, {"unique events", g.UniqueEvents, want.UniqueEvents},
					{"measured page views", g.TimeOnPageViews, want.TimeOnPageViews},
				} {
					if c.got != c.want {
						report("%s %s %q: %s = %d, want %d", day, r, dim, c.name, c.got, c.want)
					}
				}
				if math.Abs(g.ConversionValue-want.ConversionValue) > 1e-6 || math.Abs(g.EventValue-want.EventValue) > 1e-6 {
					report("%s %s %q: values %v/%v, want %v/%v", day, r, dim, g.ConversionValue, g.EventValue, want.ConversionValue, want.EventValue)
				}
				// Each hit is dated by collection as its receive time minus
				// the queue time the player sent, so its time is off by the
				// request's latency: allow a quarter second per interval,
				// or the longest latency measured where a request took
				// longer (a stack starting instances on a busy machine).
				if tol := max(250, latency.Milliseconds()+1) * (want.Sessions + want.TimeOnPageViews + 1); abs(g.DurationMS-want.DurationMS) > tol || abs(g.TimeOnPageMS-want.TimeOnPageMS) > tol {
					report("%s %s %q: duration %d ms, time on page %d ms; want %d, %d (±%d)", day, r, dim, g.DurationMS, g.TimeOnPageMS, want.DurationMS, want.TimeOnPageMS, tol)
				}
				if len(want.Users) > 0 {
					wu, gu := float64(len(want.Users)), float64(g.users.Count())
					if len(want.Users) <= sketch.ExactLimit && gu != wu || math.Abs(gu-wu) > 4*sketch.StandardError*wu+0.5 {
						report("%s %s %q: users %v, want %v", day, r, dim, gu, wu)
					}
				}
			}
		}
	}
	// Filtered traffic, by reason.
	for day, reasons := range e.Filtered {
		d, _ := time.Parse(time.DateOnly, day)
		got := map[string]int64{}
		iter := s.Query("SELECT reason, hits FROM filtered_hits WHERE property_id = ? AND day = ?", property, d).Iter()
		var reason string
		var n int64
		for iter.Scan(&reason, &n) {
			got[reason] += n
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		for reason, want := range reasons {
			if got[reason] != want {
				report("%s filtered %s: %d, want %d (all reasons that day: %v)", day, reason, got[reason], want, got)
			}
		}
		for reason, n := range got {
			if _, ok := reasons[reason]; !ok && n != 0 {
				report("%s filtered %s: %d, want none", day, reason, n)
			}
		}
	}
	if mismatches > 0 {
		t.Errorf("%d mismatches with the expectation", mismatches)
	}
	return mismatches == 0
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// compareDeadLetters reads the dead-letter topic: every malformed hit of
// the plan is there once per time it was sent (the plan sends each once).
func compareDeadLetters(t *testing.T, cfg localstack.Config, e *simulate.Expectation) {
	t.Helper()
	var want int64
	for _, n := range e.DeadLetters {
		want += n
	}
	got := map[string]int64{}
	var total int64
	readTopic(t, cfg, hit.TopicDeadLetter, func(msg *sarama.ConsumerMessage) {
		var dl hit.DeadLetter
		if err := json.Unmarshal(msg.Value, &dl); err == nil && dl.Stage == "collection" {
			got[dl.Reason]++
			total++
		}
	})
	if total != want {
		t.Errorf("dead letters from collection: %d (%v), want %d (%v)", total, got, want, e.DeadLetters)
	}
}

// kafkaClient connects to the stack's broker with the product's consumer
// settings.
func kafkaClient(t *testing.T, cfg localstack.Config) sarama.Client {
	t.Helper()
	kcfg := &kafka.Config{Brokers: "127.0.0.1:" + strconv.Itoa(cfg.KafkaPort)}
	client, err := sarama.NewClient(kcfg.BrokerList(), kcfg.ConsumerConfig())
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// readTopic calls f with every message of a topic, from the oldest to the
// high-water mark each partition has when the read starts.
func readTopic(t *testing.T, cfg localstack.Config, topic string, f func(*sarama.ConsumerMessage)) {
	t.Helper()
	client := kafkaClient(t, cfg)
	defer client.Close()
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if hwm == 0 {
			continue
		}
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < hwm; {
			select {
			case msg := <-pc.Messages():
				f(msg)
				off = msg.Offset + 1
			case <-time.After(10 * time.Second):
				t.Fatalf("%s partition %d: stuck before offset %d of %d", topic, p, off, hwm)
			}
		}
		pc.Close()
	}
}
