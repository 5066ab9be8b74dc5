package flagenv

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Setenv("SVC_HTTP_ADDR", ":9999")
	t.Setenv("SVC_TIMEOUT", "3s")
	t.Setenv("SVC_LEVEL", "env")

	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	addr := fs.String("http-addr", ":8080", "listen address")
	timeout := fs.Duration("timeout", time.Second, "timeout")
	level := fs.String("level", "default", "level")
	if err := Parse(fs, "svc", []string{"-level=flag"}); err != nil {
		t.Fatal(err)
	}
	if *addr != ":9999" || *timeout != 3*time.Second || *level != "flag" {
		t.Fatalf("got addr=%q timeout=%v level=%q; want env for unset flags and the flag for set ones", *addr, *timeout, *level)
	}
}

func TestParseErrors(t *testing.T) {
	t.Setenv("SVC_TIMEOUT", "soon")
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Duration("timeout", time.Second, "timeout")
	err := Parse(fs, "svc", nil)
	if err == nil || !strings.Contains(err.Error(), "SVC_TIMEOUT") {
		t.Fatalf("Parse error = %v, want one naming SVC_TIMEOUT", err)
	}
	fs = flag.NewFlagSet("svc", flag.ContinueOnError)
	if err := Parse(fs, "svc", []string{"stray"}); err == nil {
		t.Fatal("Parse accepted a positional argument")
	}
}

func TestParseArgs(t *testing.T) {
	t.Setenv("CTL_URL", "http://env")
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	url := fs.String("url", "http://default", "base URL")
	secret := fs.String("secret", "", "secret")
	if err := ParseArgs(fs, "ctl", []string{"-secret", "s3", "changes", "-42"}); err != nil {
		t.Fatal(err)
	}
	if *url != "http://env" || *secret != "s3" {
		t.Fatalf("got url=%q secret=%q; want the environment's URL and the flag's secret", *url, *secret)
	}
	if got, want := strings.Join(fs.Args(), " "), "changes -42"; got != want {
		t.Fatalf("Args() = %q, want %q", got, want)
	}
}

// TestParseNamesEveryBadVariable: every variable whose value its flag
// refuses is named, in one line, not only the first.
func TestParseNamesEveryBadVariable(t *testing.T) {
	t.Setenv("SVC_TIMEOUT", "soon")
	t.Setenv("SVC_VERBOSE", "")
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	fs.Duration("timeout", time.Second, "timeout")
	fs.Bool("verbose", false, "verbose")
	err := Parse(fs, "svc", nil)
	var errs EnvErrors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("Parse error = %v, want EnvErrors of SVC_TIMEOUT and SVC_VERBOSE", err)
	}
	for _, want := range []string{"SVC_TIMEOUT", "SVC_VERBOSE"} {
		if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse error = %q, want one line naming %s", err, want)
		}
	}
}

// TestRefusedVariableKeepsTheDefault: a flag whose variable it refuses keeps
// its default, so that -check-config's validation, which runs after the
// refusal, judges the default and not the zero value the flag package
// leaves in a numeric or boolean flag it failed to set (COLLECTION_KAFKA_PARTITIONS=abc
// also reported "-kafka-partitions must be at least 1").
func TestRefusedVariableKeepsTheDefault(t *testing.T) {
	t.Setenv("SVC_PARTITIONS", "abc")
	t.Setenv("SVC_TIMEOUT", "soon")
	t.Setenv("SVC_ENSURE", "yes")
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	partitions := fs.Int("partitions", 12, "partitions")
	timeout := fs.Duration("timeout", time.Second, "timeout")
	ensure := fs.Bool("ensure", true, "ensure")
	var errs EnvErrors
	if err := Parse(fs, "svc", nil); !errors.As(err, &errs) || len(errs) != 3 {
		t.Fatalf("Parse error = %v, want EnvErrors of the three variables", err)
	}
	if *partitions != 12 || *timeout != time.Second || !*ensure {
		t.Fatalf("after the refusals partitions=%d timeout=%v ensure=%v; want the defaults 12, 1s, true", *partitions, *timeout, *ensure)
	}
}
