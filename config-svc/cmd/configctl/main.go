// Command configctl calls config-svc's internal endpoints for operators,
// signing each request as the service identity "operator" with the shared
// identity secret (the gateway never routes /internal).
//
//	configctl [-config-svc-url=http://127.0.0.1:8082] property AT-XXXXXXXXXX|<property id>
//	configctl set-shards <property id> <1..64>
//	configctl changes [since]
//	configctl properties [after]
//
// The secret comes from -identity-secret or CONFIGCTL_IDENTITY_SECRET.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/pkg/tenant"
)

// commands is the command line after the flags, for -help and errors.
const commands = "property <tracking or property id> | set-shards <property id> <n> | changes [since] | properties [after]"

// operands is what each command takes after its name.
var operands = map[string]string{
	"property":   "<tracking or property id>",
	"set-shards": "<property id> <n>",
	"changes":    "[since]",
	"properties": "[after]",
}

type config struct {
	BaseURL        string
	IdentitySecret string
	Command        []string // the command and its operands
}

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.BaseURL, "config-svc-url", "http://127.0.0.1:8082", "base URL of a config-svc instance")
	fs.StringVar(&c.IdentitySecret, "identity-secret", "", "the shared identity secret (required)")
}

func (c *config) ArgsUsage() string     { return commands }
func (c *config) SetArgs(args []string) { c.Command = args }

func (c *config) Validate() error {
	if len(c.IdentitySecret) < 16 {
		return errors.New("-identity-secret (or CONFIGCTL_IDENTITY_SECRET) must be the shared secret, at least 16 bytes")
	}
	return nil
}

func main() {
	var cfg config
	service.Main("configctl", "CONFIGCTL", &cfg, func(ctx context.Context) error { return run(ctx, cfg, os.Stdout) })
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	cmd := cfg.Command
	if len(cmd) == 0 {
		return errors.New("usage: configctl [flags] " + commands)
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
	case cmd[0] == "properties" && len(cmd) <= 2:
		method, path = "GET", "/internal/v1/properties"
		if len(cmd) == 2 {
			path += "?after=" + url.QueryEscape(cmd[1])
		}
	case operands[cmd[0]] != "":
		// A known command with too few or too many operands: say what it
		// takes (it read as an unknown command "set-shards <id>").
		return fmt.Errorf("%s takes %s; got %q", cmd[0], operands[cmd[0]], strings.Join(cmd[1:], " "))
	default:
		return fmt.Errorf("unknown command %q (property, set-shards, changes, properties)", strings.Join(cmd, " "))
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(cfg.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	tenant.Sign(req.Header, tenant.System("operator"), []byte(cfg.IdentitySecret), time.Now())
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
