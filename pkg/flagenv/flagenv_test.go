package flagenv

import (
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
