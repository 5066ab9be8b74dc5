// Command configctl calls config-svc's internal endpoints for operators,
// signing each request as the service identity "operator" with the shared
// identity secret (the gateway never routes /internal).
//
//	configctl [-config-svc-url=http://127.0.0.1:8082] property AT-XXXXXXXXXX|<property id>
//	configctl set-shards <property id> <1..64>
//	configctl changes [since]
//
// The secret comes from -identity-secret or CONFIGCTL_IDENTITY_SECRET.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/flagenv"
	"github.com/acme/analytics/pkg/tenant"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "configctl: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("configctl", flag.ContinueOnError)
	base := fs.String("config-svc-url", "http://127.0.0.1:8082", "base URL of a config-svc instance")
	secret := fs.String("identity-secret", "", "the shared identity secret (required)")
	// Flags first, then the command and its arguments.
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		i++
	}
	if err := flagenv.Parse(fs, "CONFIGCTL", args[:i]); err != nil {
		return err
	}
	if len(*secret) < 16 {
		return errors.New("-identity-secret (or CONFIGCTL_IDENTITY_SECRET) must be the shared secret, at least 16 bytes")
	}
	cmd := args[i:]
	if len(cmd) == 0 {
		return errors.New("usage: configctl [flags] property <tracking or property id> | set-shards <property id> <n> | changes [since]")
	}
	var method, path string
	var body []byte
	switch {
	case cmd[0] == "property" && len(cmd) == 2:
		method, path = "GET", "/internal/v1/properties/"+cmd[1]
		if configclient.ValidTrackingID(cmd[1]) {
			path = "/internal/v1/properties/by-tracking-id/" + cmd[1]
		}
	case cmd[0] == "set-shards" && len(cmd) == 3:
		n, err := strconv.Atoi(cmd[2])
		if err != nil {
			return fmt.Errorf("set-shards: %q is not a number", cmd[2])
		}
		method, path = "PUT", "/internal/v1/properties/"+cmd[1]+"/processing-shards"
		body = []byte(fmt.Sprintf(`{"processing_shards": %d}`, n))
	case cmd[0] == "changes" && len(cmd) <= 2:
		method, path = "GET", "/internal/v1/changes"
		if len(cmd) == 2 {
			path += "?wait=0s&since=" + cmd[1]
		}
	default:
		return fmt.Errorf("unknown command %q (property, set-shards, changes)", strings.Join(cmd, " "))
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(*base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	tenant.Sign(req.Header, tenant.System("operator"), []byte(*secret), time.Now())
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, strings.TrimSpace(string(b)))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}
