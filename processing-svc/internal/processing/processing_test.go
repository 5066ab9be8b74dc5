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
