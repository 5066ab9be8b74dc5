// Command configctl calls config-svc's internal endpoints for operators,
// signing each request as the service identity "operator" with the shared
// identity secret (the gateway never routes /internal).
//
//	configctl [-config-svc-url=http://127.0.0.1:8082] property AT-XXXXXXXXXX|<property id>
//	configctl set-shards <property id> <1..64>
//	configctl changes [since]
//	configctl properties [after]
//	configctl costly-rules [after]
//	configctl refused-rules [after]
//
// costly-rules lists the rule versions config-svc would now refuse for their
// cost (pkg/rules.MaxCost: versions stored under an earlier cost model are
// evaluated as they are), walking every property from after on;
// refused-rules those it would now refuse for any reason (a check added
// since they were stored: a replacement template referring to no group,
// which writes nothing there), with every reason.
//
// The secret comes from -identity-secret or CONFIGCTL_IDENTITY_SECRET.
package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/pkg/tenant"
)

// commands is the command line after the flags, for -help and errors.
const commands = "property <tracking or property id> | set-shards <property id> <n> | changes [since] | properties [after] | costly-rules [after] | refused-rules [after]"

// operands is what each command takes after its name.
var operands = map[string]string{
	"property":      "<tracking or property id>",
	"set-shards":    "<property id> <n>",
	"changes":       "[since]",
	"properties":    "[after]",
	"costly-rules":  "[after]",
	"refused-rules": "[after]",
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
	if (cmd[0] == "costly-rules" || cmd[0] == "refused-rules") && len(cmd) <= 2 {
		return refusedRules(ctx, cfg, out, cmd[1:], cmd[0] == "costly-rules")
	}
	var method, path string
	var body []byte
	switch {
	case cmd[0] == "property" && len(cmd) == 2:
		method, path = "GET", "/internal/v1/properties/"+url.PathEscape(cmd[1])
		if configclient.ValidTrackingID(cmd[1]) {
			path = "/internal/v1/properties/by-tracking-id/" + url.PathEscape(cmd[1])
		}
	case cmd[0] == "set-shards" && len(cmd) == 3:
		n, err := strconv.Atoi(cmd[2])
		if err != nil {
			return fmt.Errorf("set-shards: %q is not a number", cmd[2])
		}
		method, path = "PUT", "/internal/v1/properties/"+url.PathEscape(cmd[1])+"/processing-shards"
		body = []byte(fmt.Sprintf(`{"processing_shards": %d}`, n))
	case cmd[0] == "changes" && len(cmd) <= 2:
		method, path = "GET", "/internal/v1/changes"
		if len(cmd) == 2 {
			path += "?wait=0s&since=" + url.QueryEscape(cmd[1])
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
		return fmt.Errorf("unknown command %q (property, set-shards, changes, properties, costly-rules, refused-rules)", strings.Join(cmd, " "))
	}
	b, err := call(ctx, cfg, method, path, body)
	fmt.Fprintln(out, strings.TrimSpace(string(b)))
	return err
}

// call sends one request to config-svc and returns its answer's body,
// with an error when its status is not a success.
func call(ctx context.Context, cfg config, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(cfg.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	tenant.Sign(req.Header, tenant.System("operator"), []byte(cfg.IdentitySecret), time.Now())
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return b, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return b, nil
}

// refusedRules writes a line for each rule version, of each property from
// after on (every one without), that config-svc would now refuse (for its
// cost alone when costOnly): the property's ID and tracking ID, the
// version, and why. Every version kept counts, not only the one in
// effect: processing applies a version to the hits it was in effect for,
// late ones, replays and reprocessing. Then how many properties it
// checked.
func refusedRules(ctx context.Context, cfg config, out io.Writer, after []string, costOnly bool) error {
	path := "/internal/v1/properties"
	if len(after) == 1 {
		path += "?after=" + url.QueryEscape(after[0])
	}
	checked, refused := 0, 0
	for {
		var page struct {
			IDs  []string `json:"property_ids"`
			Next string   `json:"next_after"`
		}
		if err := get(ctx, cfg, path, &page); err != nil {
			return err
		}
		for _, id := range page.IDs {
			var p configclient.Property
			var h configclient.RuleVersions
			err := get(ctx, cfg, "/internal/v1/properties/"+url.PathEscape(id), &p)
			if err == nil {
				err = get(ctx, cfg, "/internal/v1/properties/"+url.PathEscape(id)+"/rules/versions", &h)
			}
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			if err != nil {
				// Deleted since it was listed, or not readable: say so
				// and go on.
				fmt.Fprintf(out, "%s: %v\n", id, err)
				continue
			}
			checked++
			found := false
			for _, v := range h.Versions {
				if reasons := refusedNow(v, costOnly); len(reasons) > 0 {
					found = true
					fmt.Fprintf(out, "%s %s v%d: %s\n", p.PropertyID, p.TrackingID, v.Version, strings.Join(reasons, "; "))
				}
			}
			if found {
				refused++
			}
		}
		if page.Next == "" {
			break
		}
		path = "/internal/v1/properties?after=" + url.QueryEscape(page.Next)
	}
	what := "config-svc would now refuse"
	if costOnly {
		what = "over the cost limit"
	}
	fmt.Fprintf(out, "%d properties checked, %d with rule versions %s\n", checked, refused, what)
	return nil
}

// get reads the JSON document at path into v.
func get(ctx context.Context, cfg config, path string, v any) error {
	b, err := call(ctx, cfg, "GET", path, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// refusedNow is what about v's rules config-svc would refuse if they were
// saved now (for their cost alone when costOnly).
func refusedNow(v configclient.RuleVersion, costOnly bool) []string {
	_, err := rules.Validate(v.Rules, v.Hostnames)
	var ve *rules.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	var reasons []string
	for _, f := range ve.Fields {
		if !costOnly || errors.Is(f.Err, rules.ErrTooExpensive) {
			reasons = append(reasons, f.Field+": "+f.Reason)
		}
	}
	return reasons
}
