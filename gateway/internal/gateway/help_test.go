package gateway_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/acme/analytics/gateway/internal/gateway"
	"github.com/acme/analytics/pkg/flagenv"
	"github.com/acme/analytics/pkg/service"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestHelp keeps the operator's view of the flags (-help) in
// testdata/help.golden, so that a change to it shows in review. Regenerate
// with: go test ./internal/gateway/ -run TestHelp -update
func TestHelp(t *testing.T) {
	var cfg gateway.Config
	fs := service.FlagSet("gateway", &cfg) // as Main parses them
	for _, env := range []string{"GATEWAY_IDENTITY_SECRET", "GATEWAY_CONSUL_ADDR"} {
		t.Setenv(env, "") // the environment must not change the defaults shown
		os.Unsetenv(env)
	}
	if err := flagenv.Parse(fs, "GATEWAY", nil); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	fs.SetOutput(&got)
	fs.PrintDefaults()
	golden := filepath.Join("testdata", "help.golden")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("-help output changed; if intended, run with -update and review the diff.\ngot:\n%s", got.String())
	}
}
