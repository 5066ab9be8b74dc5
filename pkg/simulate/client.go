package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/rules"
)

// Merchant is a signed-up tenant with one property, created through the
// public API as a real merchant would.
type Merchant struct {
	Gateway     string // base URL
	AccessToken string
	TenantID    string
	PropertyID  string
	TrackingID  string
}

// Password is the password of every merchant SignUp makes: demo data, not
// a secret. make dev prints it with the demo merchant's e-mail address, so
// that a newcomer can sign in and read the demo's reports.
const Password = "simulated-password-1"

// Rules returns the rules of the simulated property: the plan's goals and
// session timeout, its internal-traffic CIDR, bot filtering on.
func (c Config) Rules() rules.Rules {
	r := rules.Defaults()
	r.SessionTimeoutMinutes = int(SessionTimeout / time.Minute)
	if c.ExcludedCIDR != "" {
		r.Exclusions.IP = []string{c.ExcludedCIDR}
	}
	v := GoalPurchaseValue
	r.Goals = []rules.Goal{
		{ID: "purchase", Name: "Purchase", PagePath: "^" + GoalPurchasePath + "$", Value: &v},
		{ID: "signup", Name: "Newsletter sign-up", Event: &rules.EventMatch{Category: GoalSignupCat, Action: GoalSignupAction}},
	}
	return r
}

// SignUp creates a merchant (tenant, admin user, property with the plan's
// host, time zone and rules) through the gateway. It can be called again
// after a failure: an existing account is logged into, and an existing
// property of the same name is reused.
func SignUp(ctx context.Context, client *http.Client, gateway, email string, cfg Config) (*Merchant, error) {
	m := &Merchant{Gateway: strings.TrimRight(gateway, "/")}
	var tok struct {
		AccessToken string `json:"access_token"`
		TenantID    string `json:"tenant_id"`
	}
	creds := map[string]string{"email": email, "password": Password}
	err := m.call(ctx, client, "POST", "/v1/signup", map[string]string{"email": email, "password": creds["password"], "company": "Simulated " + email}, &tok)
	if errors.Is(err, errConflict) {
		err = m.call(ctx, client, "POST", "/v1/login", creds, &tok)
	}
	if err != nil {
		return nil, fmt.Errorf("sign up: %w", err)
	}
	m.AccessToken, m.TenantID = tok.AccessToken, tok.TenantID

	type property struct {
		ID         string `json:"id"`
		Name       string `json:"name"`
		TrackingID string `json:"tracking_id"`
	}
	const name = "Simulated shop"
	// The list is paged: every page is looked through, or a merchant
	// with more properties than a page would get a second shop.
	var prop property
	for after := ""; prop.ID == ""; {
		var page struct {
			Properties []property `json:"properties"`
			NextAfter  string     `json:"next_after"`
		}
		path := "/v1/properties?limit=500"
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		if err := m.call(ctx, client, "GET", path, nil, &page); err != nil {
			return nil, fmt.Errorf("list properties: %w", err)
		}
		for _, p := range page.Properties {
			if p.Name == name {
				prop = p
			}
		}
		if page.NextAfter == "" {
			break
		}
		after = page.NextAfter
	}
	if prop.ID == "" {
		body := map[string]any{"name": name, "hostnames": []string{cfg.Host}, "time_zone": cfg.Location.String(), "currency": "EUR"}
		if err := m.call(ctx, client, "POST", "/v1/properties", body, &prop); err != nil {
			return nil, fmt.Errorf("create property: %w", err)
		}
	}
	m.PropertyID, m.TrackingID = prop.ID, prop.TrackingID
	if err := m.call(ctx, client, "PUT", "/v1/properties/"+prop.ID+"/rules", cfg.Rules(), nil); err != nil {
		return nil, fmt.Errorf("set rules: %w", err)
	}
	return m, nil
}

var errConflict = errors.New("conflict")

// call sends a JSON request with the merchant's token and decodes the
// answer into out. A 503 (a part of the stack still starting, or
// restarting) is retried for up to 30 seconds.
func (m *Merchant) call(ctx context.Context, client *http.Client, method, path string, in, out any) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := m.callOnce(ctx, client, method, path, in, out)
		if !errors.Is(err, errUnavailable) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

var errUnavailable = errors.New("unavailable")

func (m *Merchant) callOnce(ctx context.Context, client *http.Client, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.Gateway+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if m.AccessToken != "" {
		req.Header.Set("Authorization", "Bearer "+m.AccessToken)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusServiceUnavailable {
		return fmt.Errorf("%s %s: %w: %s", method, path, errUnavailable, strings.TrimSpace(string(b)))
	}
	if resp.StatusCode == http.StatusConflict {
		return fmt.Errorf("%s %s: %w: %s", method, path, errConflict, strings.TrimSpace(string(b)))
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}
