package processing

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/acme/analytics/pkg/flagenv"
	"github.com/acme/analytics/pkg/kafka"
)

// TestKafkaRebalanceFlag: -kafka-rebalance is cooperative unless the flag
// or PROCESSING_KAFKA_REBALANCE says eager, and any other value is an
// error naming the flag (or the variable) and the values it takes.
func TestKafkaRebalanceFlag(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		env     string
		want    kafka.RebalanceMode
		invalid bool
	}{
		{name: "default", want: kafka.RebalanceCooperative},
		{name: "flag", args: []string{"-kafka-rebalance=eager"}, want: kafka.RebalanceEager},
		{name: "environment", env: "eager", want: kafka.RebalanceEager},
		{name: "flag over environment", args: []string{"-kafka-rebalance=cooperative"}, env: "eager", want: kafka.RebalanceCooperative},
		{name: "invalid", args: []string{"-kafka-rebalance=incremental"}, invalid: true},
		{name: "empty", args: []string{"-kafka-rebalance="}, invalid: true},
		{name: "invalid environment", env: "Eager", invalid: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.env != "" {
				t.Setenv("PROCESSING_KAFKA_REBALANCE", c.env)
			}
			var cfg Config
			fs := flag.NewFlagSet("processing", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg.RegisterFlags(fs)
			args := append([]string{"-identity-secret=0123456789abcdef", "-config-svc-url=http://127.0.0.1:1"}, c.args...)
			err := flagenv.Parse(fs, "PROCESSING", args)
			if c.invalid {
				name := "-kafka-rebalance"
				if c.env != "" {
					name = "PROCESSING_KAFKA_REBALANCE"
				}
				if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), `want "cooperative" or "eager"`) {
					t.Fatalf("parse = %v, want an error naming %s and its values", err, name)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if cfg.Kafka.Rebalance != c.want {
				t.Fatalf("rebalance mode %q, want %q", cfg.Kafka.Rebalance, c.want)
			}
		})
	}
}

// TestStateEncodingFlag: -state-encoding is 3 unless set to 2, the first
// step of the upgrade; any other value is refused, naming the flag.
func TestStateEncodingFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int
	}{
		{nil, 3},
		{[]string{"-state-encoding=2"}, 2},
		{[]string{"-state-encoding=3"}, 3},
		{[]string{"-state-encoding=1"}, 0},
		{[]string{"-state-encoding=4"}, 0},
	} {
		var cfg Config
		fs := flag.NewFlagSet("processing", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg.RegisterFlags(fs)
		if err := flagenv.Parse(fs, "PROCESSING", append([]string{"-identity-secret=0123456789abcdef", "-config-svc-url=http://127.0.0.1:1"}, c.args...)); err != nil {
			t.Fatal(err)
		}
		err := cfg.Validate()
		if c.want == 0 {
			if err == nil || !strings.Contains(err.Error(), "-state-encoding must be 2 or 3") {
				t.Errorf("%v: validate = %v, want the flag refused", c.args, err)
			}
			continue
		}
		if err != nil || cfg.StateEncoding != c.want {
			t.Errorf("%v: encoding %d (%v), want %d", c.args, cfg.StateEncoding, err, c.want)
		}
	}
}

// TestReprocessMaxRunningFlag: -reprocess-max-running is at least 1. The
// runner took 0 for its default, 2 (so setting 0 to keep jobs off an
// instance ran two there), and a negative bound refused every job.
func TestReprocessMaxRunningFlag(t *testing.T) {
	for _, c := range []struct {
		value string
		ok    bool
	}{{"0", false}, {"-1", false}, {"1", true}, {"4", true}} {
		var cfg Config
		fs := flag.NewFlagSet("processing", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg.RegisterFlags(fs)
		if err := flagenv.Parse(fs, "PROCESSING", []string{"-identity-secret=0123456789abcdef", "-config-svc-url=http://127.0.0.1:1", "-reprocess-max-running=" + c.value}); err != nil {
			t.Fatal(err)
		}
		err := cfg.Validate()
		if c.ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "-reprocess-max-running must be at least 1") {
			t.Errorf("-reprocess-max-running=%s: %v", c.value, err)
		}
	}
}
