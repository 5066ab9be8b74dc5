// Command deadletters reads the dead-letter topic (hits-dead-letter) for an
// operator investigating a merchant's missing hits, and re-sends to the
// hits topic the hits processing rejected once the cause is fixed:
//
//	deadletters list [-since=24h | -from=RFC3339] [-tracking-id=AT-...] [-reason=...] [-stage=collection|processing] [-summary | -follow]
//	deadletters replay [-since=... | -from=...] [filters] [-dry-run] -identity-secret=... (-config-svc-url=... | -consul-addr=...)
//
// Flags may come before or after the command. It reads partitions without
// a consumer group, so it commits nothing and disturbs no consumer.
// docs/operations.md ("Investigating missing hits: the dead-letter topic")
// describes what it does and does not do; it exits 0 when done, 1 with the
// reason otherwise (a flag that is wrong, Kafka or config-svc not
// answering).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/discovery"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/processing-svc/internal/deadletters"
)

const commands = "list | replay (flags may also follow the command)"

type config struct {
	Kafka          kafka.Config
	ConfigSvc      configclient.Config
	Discovery      discovery.Config
	IdentitySecret string
	Since, From    string
	Filter         deadletters.Filter
	Summary        bool
	Follow         bool
	DryRun         bool

	Command  string
	since    time.Time // from -since or -from, set by Validate
	fs       *flag.FlagSet
	argsErr  error
	now      func() time.Time
	operands []string
}

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	c.fs = fs
	c.Kafka.RegisterFlags(fs)
	c.ConfigSvc.RegisterFlags(fs)
	c.Discovery.RegisterLookupFlags(fs, "Consul agent HTTP address, where replay finds config-svc when -config-svc-url is empty")
	fs.StringVar(&c.IdentitySecret, "identity-secret", "", "shared secret of internal calls to config-svc (replay: required)")
	fs.StringVar(&c.Since, "since", "", "read dead letters published in this long before now, e.g. 24h or 90m (the default, without -from: 24h)")
	fs.StringVar(&c.From, "from", "", "read dead letters published at or after this time, RFC 3339 (2026-12-05T08:00:00Z); instead of -since")
	fs.StringVar(&c.Filter.TrackingID, "tracking-id", "", "only the dead letters of this tracking ID (AT-...)")
	fs.StringVar(&c.Filter.Reason, "reason", "", "only the dead letters of this reason (unknown_tracking_id, malformed, unknown_property, ...)")
	fs.StringVar(&c.Filter.Stage, "stage", "", "only the dead letters of this stage: collection or processing (replay: processing only)")
	fs.BoolVar(&c.Summary, "summary", false, "list: print counts by stage, reason and tracking ID instead of the dead letters")
	fs.BoolVar(&c.Follow, "follow", false, "list: go on printing dead letters as they are published, until interrupted")
	fs.BoolVar(&c.DryRun, "dry-run", false, "replay: print what would be re-sent, send nothing")
}

func (c *config) ArgsUsage() string { return commands }

// SetArgs takes the command and parses the flags after it (an operator
// writes `deadletters list -since=2h`): they override the environment as
// those before it do.
func (c *config) SetArgs(args []string) {
	c.argsErr, c.Command, c.operands = nil, "", nil
	if len(args) == 0 {
		return
	}
	c.Command = args[0]
	if c.fs != nil {
		if err := c.fs.Parse(args[1:]); err != nil {
			c.argsErr = fmt.Errorf("after %s: %w (see -help)", c.Command, err)
			return
		}
		c.operands = c.fs.Args()
	}
}

func (c *config) Validate() error {
	if c.argsErr != nil {
		return c.argsErr
	}
	switch c.Command {
	case "list", "replay":
	case "":
		return fmt.Errorf("no command: give %s", commands)
	default:
		return fmt.Errorf("unknown command %q: give %s", c.Command, commands)
	}
	if len(c.operands) > 0 {
		return fmt.Errorf("unexpected argument %q after %s (flags must come as -name=value)", c.operands[0], c.Command)
	}
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	switch {
	case c.Since != "" && c.From != "":
		return errors.New("-since and -from both given: give one (-since 24h, or -from 2026-12-05T08:00:00Z)")
	case c.From != "":
		t, err := time.Parse(time.RFC3339, c.From)
		if err != nil {
			return fmt.Errorf("-from %q is not an RFC 3339 time, e.g. 2026-12-05T08:00:00Z", c.From)
		}
		if t.After(now()) {
			return fmt.Errorf("-from %s is in the future", c.From)
		}
		c.since = t
	default:
		s := c.Since
		if s == "" {
			s = "24h"
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("-since %q is not a positive duration, e.g. 24h or 90m", c.Since)
		}
		c.since = now().Add(-d)
	}
	if st := c.Filter.Stage; st != "" && st != hit.StageCollection && st != hit.StageProcessing {
		return fmt.Errorf("-stage %q: want collection or processing", st)
	}
	if c.Command == "list" {
		switch {
		case c.Summary && c.Follow:
			return errors.New("-summary and -follow together: a summary is printed at the end, and a follow has none")
		case c.DryRun:
			return errors.New("-dry-run is for replay; list sends nothing")
		}
		return nil
	}
	// replay
	switch {
	case c.Filter.Stage == hit.StageCollection:
		return errors.New("-stage collection: collection-stage dead letters are invalid input, not hits, and are never replayed; the sender must send them again, fixed (list shows them)")
	case c.Follow:
		return errors.New("-follow is for list; replay stops at the end of the topic")
	case c.Summary:
		return errors.New("-summary is for list; replay prints what it did with each dead letter and the totals")
	case len(c.IdentitySecret) < 16:
		return errors.New("-identity-secret must be the shared secret of internal calls, at least 16 bytes (replay asks config-svc for each hit's property)")
	case c.ConfigSvc.BaseURL == "" && !c.Discovery.Enabled():
		return errors.New("give -config-svc-url or a Consul agent (-consul-addr) to find config-svc (replay asks it for each hit's property)")
	}
	if err := c.Discovery.Validate(); err != nil {
		return err
	}
	if c.ConfigSvc.BaseURL != "" {
		cc := c.configSvc()
		if err := cc.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// configSvc is the configuration of replay's config-svc client.
func (c *config) configSvc() configclient.Config {
	cc := c.ConfigSvc
	cc.Caller, cc.IdentitySecret = "deadletters", []byte(c.IdentitySecret)
	return cc
}

func main() {
	var cfg config
	service.Main("deadletters", "DEADLETTERS", &cfg, func(ctx context.Context) error { return run(ctx, &cfg, os.Stdout, os.Stderr) })
}

func run(ctx context.Context, cfg *config, out, errOut io.Writer) error {
	kcfg := cfg.Kafka
	kcfg.ClientID = "deadletters"
	// A plain client and partition consumers, no group: nothing is
	// committed and no consumer's partitions move. One attempt: a person
	// runs it and wants to see an outage at once.
	client, err := sarama.NewClient(kcfg.BrokerList(), kcfg.ConsumerConfig())
	if err != nil {
		return fmt.Errorf("connect to kafka at %s: %w", kcfg.Brokers, err)
	}
	defer client.Close()
	// A -follow that loses Kafka logs each failed read on stderr and reads
	// on when it is back, until interrupted.
	r := deadletters.Range{Since: cfg.since, Follow: cfg.Follow, Log: slog.New(slog.NewTextHandler(errOut, nil))}
	if cfg.Command == "list" {
		return list(ctx, cfg, client, r, out, errOut)
	}
	return replay(ctx, cfg, client, &kcfg, r, out, errOut)
}

func list(ctx context.Context, cfg *config, client sarama.Client, r deadletters.Range, out, errOut io.Writer) error {
	enc := json.NewEncoder(out)
	var sum deadletters.Summary
	read, matched := 0, 0
	reasons := map[string]bool{} // of the letters read, for a -reason that matched none
	err := deadletters.Read(ctx, client, hit.TopicDeadLetter, r, func(l *deadletters.Letter) error {
		read++
		if l.Reason != "" {
			reasons[l.Reason] = true
		}
		if !cfg.Filter.Match(l) {
			return nil
		}
		matched++
		if cfg.Summary {
			sum.Add(l)
			return nil
		}
		return enc.Encode(l)
	})
	if err != nil {
		return err
	}
	if cfg.Summary {
		if err := sum.Print(out); err != nil {
			return err
		}
	}
	fmt.Fprintf(errOut, "%d of the %d dead letters published since %s matched\n", matched, read, cfg.since.UTC().Format(time.RFC3339))
	if want := cfg.Filter.Reason; want != "" && !reasons[want] && len(reasons) > 0 {
		// A misspelt reason (malformd) matched nothing, as if there were
		// no such dead letters.
		fmt.Fprintf(errOut, "no dead letter read has the reason %q; those read have %s\n", want, strings.Join(slices.Sorted(maps.Keys(reasons)), ", "))
	}
	return nil
}

func replay(ctx context.Context, cfg *config, client sarama.Client, kcfg *kafka.Config, r deadletters.Range, out, errOut io.Writer) error {
	cc := cfg.configSvc()
	if err := cc.Locate(&cfg.Discovery); err != nil {
		return err
	}
	props, err := configclient.New(cc)
	if err != nil {
		return err
	}
	if cc.BaseURL == "" {
		// Lookups need config-svc's instances from Consul.
		go func() { _ = props.Run(ctx) }()
	}
	rp := &deadletters.Replayer{Properties: props, DryRun: cfg.DryRun}
	if !cfg.DryRun {
		// Durable and idempotent, as collection's: a retried send is not
		// written twice.
		producer, err := sarama.NewSyncProducer(kcfg.BrokerList(), kcfg.ProducerConfig())
		if err != nil {
			return fmt.Errorf("kafka producer: %w", err)
		}
		defer producer.Close()
		rp.Producer = producer
	}
	enc := json.NewEncoder(out)
	totals := map[string]int{}
	skipped := map[string]int{}
	err = deadletters.Read(ctx, client, hit.TopicDeadLetter, r, func(l *deadletters.Letter) error {
		if !cfg.Filter.Match(l) {
			return nil
		}
		o, err := rp.Replay(ctx, l)
		if err != nil {
			return err
		}
		totals[o.Action]++
		if o.Skipped != "" {
			skipped[o.Skipped]++
		}
		return enc.Encode(o)
	})
	fmt.Fprintln(errOut, replaySummary(cfg.DryRun, totals, skipped))
	return err
}

// replaySummary is the last line of a replay: how many were re-sent (or
// would be) and skipped, by why.
func replaySummary(dry bool, totals, skipped map[string]int) string {
	var b strings.Builder
	if dry {
		fmt.Fprintf(&b, "dry run: %d would be re-sent", totals["would_send"])
	} else {
		fmt.Fprintf(&b, "%d re-sent", totals["sent"])
	}
	fmt.Fprintf(&b, ", %d skipped", totals["skipped"])
	whys := make([]string, 0, len(skipped))
	for why := range skipped {
		whys = append(whys, why)
	}
	slices.Sort(whys)
	for i, why := range whys {
		sep := ", "
		if i == 0 {
			sep = " ("
		}
		fmt.Fprintf(&b, "%s%d %s", sep, skipped[why], why)
	}
	if len(whys) > 0 {
		b.WriteString(")")
	}
	return b.String()
}
