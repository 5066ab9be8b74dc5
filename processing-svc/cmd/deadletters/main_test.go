package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/flagenv"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
	"github.com/acme/analytics/pkg/service"
)

var now = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// parse parses args as service.Main does, flags before and after the
// command, and validates them.
func parse(t *testing.T, args ...string) (*config, error) {
	t.Helper()
	cfg := &config{now: func() time.Time { return now }}
	fs := service.FlagSet("deadletters", cfg)
	if err := flagenv.ParseArgs(fs, "DEADLETTERS", args); err != nil {
		return cfg, err
	}
	cfg.SetArgs(fs.Args())
	return cfg, cfg.Validate()
}

// TestFlags: each wrong flag is refused naming the flag and what was
// wrong; flags after the command count as those before it.
func TestFlags(t *testing.T) {
	secret := "-identity-secret=0123456789abcdef"
	for _, tc := range []struct {
		args []string
		want string // "" for valid
	}{
		{[]string{"list"}, ""},
		{[]string{"-since=2h", "list", "-tracking-id=AT-1", "-summary"}, ""},
		{[]string{"list", "-from=2026-12-05T08:00:00Z", "-stage=processing", "-follow"}, ""},
		{[]string{"replay", secret, "-config-svc-url=http://127.0.0.1:8082", "-dry-run", "-reason=unknown_property"}, ""},
		{nil, "no command"},
		{[]string{"show"}, `unknown command "show"`},
		{[]string{"list", "extra"}, `unexpected argument "extra"`},
		{[]string{"list", "-bogus"}, "-bogus"},
		{[]string{"list", "-since=yesterday"}, `-since "yesterday" is not a positive duration`},
		{[]string{"list", "-since=-2h"}, `-since "-2h" is not a positive duration`},
		{[]string{"list", "-from=2026-12-05"}, `-from "2026-12-05" is not an RFC 3339 time`},
		{[]string{"list", "-from=2026-12-06T00:00:00Z"}, "is in the future"},
		{[]string{"list", "-since=2h", "-from=2026-12-05T08:00:00Z"}, "-since and -from both given"},
		{[]string{"list", "-stage=queue"}, `-stage "queue": want collection or processing`},
		{[]string{"list", "-summary", "-follow"}, "-summary and -follow together"},
		{[]string{"list", "-dry-run"}, "-dry-run is for replay"},
		{[]string{"list", "-kafka-brokers=kafka"}, `-kafka-brokers entry "kafka" is not host:port`},
		{[]string{"replay", secret, "-stage=collection"}, "collection-stage dead letters are invalid input"},
		{[]string{"replay", secret, "-follow"}, "-follow is for list"},
		{[]string{"replay", secret, "-summary"}, "-summary is for list"},
		{[]string{"replay"}, "-identity-secret must be"},
		{[]string{"replay", secret, "-config-svc-url=ftp://x"}, `-config-svc-url "ftp://x" is not an http(s) URL`},
	} {
		_, err := parse(t, tc.args...)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v, want valid", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	cfg, err := parse(t, "list", "-since=90m")
	if err != nil || !cfg.since.Equal(now.Add(-90*time.Minute)) {
		t.Errorf("-since=90m: from %s (%v), want %s", cfg.since, err, now.Add(-90*time.Minute))
	}
	if cfg, _ := parse(t, "list"); !cfg.since.Equal(now.Add(-24 * time.Hour)) {
		t.Errorf("no -since or -from: from %s, want 24 hours before now", cfg.since)
	}
}

// TestListPrints: list prints one JSON line per matching dead letter, with
// where it is in the dead-letter topic, or with -summary the counts.
func TestListPrints(t *testing.T) {
	cl := kafkatest.Start(t)
	kcfg := kafka.Config{Brokers: cl.Brokers()[0]}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, &kcfg, kafka.Topic{Name: hit.TopicDeadLetter, Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducer(kcfg.BrokerList(), kcfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range []hit.DeadLetter{
		{Stage: "collection", Reason: "unknown_tracking_id", TrackingID: "AT-1111111111", Payload: "v=1&tid=AT-1111111111"},
		{Stage: "collection", Reason: "malformed", TrackingID: "AT-2222222222"},
	} {
		v, _ := json.Marshal(dl)
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: hit.TopicDeadLetter, Key: sarama.StringEncoder(dl.TrackingID), Value: sarama.ByteEncoder(v)}); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()

	var out, errOut bytes.Buffer
	cfg, err := parse(t, "list", "-kafka-brokers="+kcfg.Brokers, "-since=1h", "-tracking-id=AT-1111111111")
	cfg.since = time.Now().Add(-time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, cfg, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output %q: %v, want one JSON line", out.String(), err)
	}
	at, _ := got["at"].(map[string]any)
	if got["reason"] != "unknown_tracking_id" || got["payload"] != "v=1&tid=AT-1111111111" || at == nil || at["offset"] == nil || at["partition"] == nil {
		t.Errorf("printed %v, want the dead letter with its partition and offset", got)
	}
	if !strings.HasPrefix(errOut.String(), "1 of the 2 dead letters") {
		t.Errorf("stderr %q, want the count matched", errOut.String())
	}

	// A reason no letter has (misspelt) says which reasons there are: it
	// said only that nothing matched.
	out.Reset()
	errOut.Reset()
	cfg, _ = parse(t, "list", "-kafka-brokers="+kcfg.Brokers, "-reason=malformd")
	cfg.since = time.Now().Add(-time.Hour)
	if err := run(ctx, cfg, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if want := `no dead letter read has the reason "malformd"; those read have malformed, unknown_tracking_id`; out.Len() != 0 || !strings.Contains(errOut.String(), want) {
		t.Errorf("a reason no letter has: stdout %q, stderr %q, want %q", out.String(), errOut.String(), want)
	}

	out.Reset()
	cfg, _ = parse(t, "-summary", "list", "-kafka-brokers="+kcfg.Brokers)
	cfg.since = time.Now().Add(-time.Hour)
	if err := run(ctx, cfg, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "collection  malformed            AT-2222222222  1") || !strings.Contains(out.String(), "total") {
		t.Errorf("summary:\n%s", out.String())
	}
}

// TestHelpAfterCommand: -help after the command asks for the help, as
// before it: Validate says so (flag.ErrHelp), and service.Main prints the
// help and exits 0 instead of calling it an error.
func TestHelpAfterCommand(t *testing.T) {
	for _, args := range [][]string{{"list", "-help"}, {"replay", "-h"}, {"list", "-since=2h", "--help"}} {
		if _, err := parse(t, args...); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%q: %v, want flag.ErrHelp", args, err)
		}
	}
}

// TestHelpListsOnlyItsFlags: -help shows no flag of a service's Consul
// registration, which the command never does.
func TestHelpListsOnlyItsFlags(t *testing.T) {
	cfg := &config{}
	fs := service.FlagSet("deadletters", cfg)
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	for _, name := range []string{"advertise-host", "consul-check-interval"} {
		if fs.Lookup(name) != nil {
			t.Errorf("-%s is registered: the command never registers in Consul", name)
		}
	}
	if got := b.String(); strings.Contains(got, "do not register") || !strings.Contains(got, "-consul-addr") {
		t.Errorf("-help:\n%s\nwant -consul-addr, described as where replay finds config-svc", got)
	}
}

func TestReplaySummary(t *testing.T) {
	got := replaySummary(false, map[string]int{"sent": 3, "skipped": 3}, map[string]int{"unknown_property_now": 1, "collection_stage": 2})
	if want := "3 re-sent, 3 skipped (2 collection_stage, 1 unknown_property_now)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := replaySummary(true, map[string]int{"would_send": 1}, nil), "dry run: 1 would be re-sent, 0 skipped"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
