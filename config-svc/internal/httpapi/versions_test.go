package httpapi

import (
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/hit"
	"github.com/gocql/gocql"
)

// testClock is a server clock the test moves; it starts at the real time,
// so that tokens signed with the real clock stay valid.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now().UTC().Truncate(time.Millisecond)} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// putVersion changes the rules (another session timeout) at time at of
// the server's clock and returns the version made.
func (e *env) putVersion(a account, propertyID string, clock *testClock, at time.Time) configclient.RuleVersion {
	e.t.Helper()
	clock.set(at)
	var v configclient.RuleVersion
	e.do(a.as(), "GET", "/v1/properties/"+propertyID+"/rules", nil).decode(e.t, &v)
	e.must(http.StatusOK, a.as(), "PUT", "/v1/properties/"+propertyID+"/rules",
		map[string]any{"session_timeout_minutes": v.Rules.SessionTimeoutMinutes%480 + 1}).decode(e.t, &v)
	if !v.EffectiveAt.Equal(at) {
		e.t.Fatalf("version %d took effect at %s, want %s", v.Version, v.EffectiveAt, at)
	}
	return v
}

// versionAt is the version among versions (in any order) in effect at t,
// found the plain way, as the tests' reference: the highest-numbered that
// took effect at or before t; false when none did.
func versionAt(versions []configclient.RuleVersion, t time.Time) (configclient.RuleVersion, bool) {
	var in configclient.RuleVersion
	for _, v := range versions {
		if !v.EffectiveAt.After(t) && v.Version > in.Version {
			in = v
		}
	}
	return in, in.Version > 0
}

// historyVersions is the version numbers of the public history (one page
// of up to 1000).
func (e *env) historyVersions(a account, propertyID string) []int {
	e.t.Helper()
	var page struct{ Versions []RuleVersionSummary }
	e.must(http.StatusOK, a.as(), "GET", "/v1/properties/"+propertyID+"/rules/versions?limit=1000", nil).decode(e.t, &page)
	var got []int
	for _, v := range page.Versions {
		got = append(got, v.Version)
	}
	return got
}

// TestRuleVersionsPrunedPastRetention: a version replaced longer ago than
// the raw archive keeps hits is deleted when the next version is made; the
// version in effect at the retention's start, and every later one, stay,
// so every hit the archive still holds finds the version of its time.
func TestRuleVersionsPrunedPastRetention(t *testing.T) {
	clock := newTestClock()
	e := newEnv(t, func(o *Options) { o.Now = clock.now })
	a := e.signup("Pruned")
	p := e.createProperty(a, map[string]any{"name": "Site"})
	base := "/v1/properties/" + p.ID + "/rules"
	const day = 24 * time.Hour
	t0 := clock.now()
	var v1 configclient.RuleVersion
	e.must(http.StatusOK, a.as(), "GET", base, nil).decode(t, &v1)
	vs := map[int]configclient.RuleVersion{1: v1}
	vs[2] = e.putVersion(a, p.ID, clock, t0.Add(1*day))
	vs[3] = e.putVersion(a, p.ID, clock, t0.Add(2*day))
	vs[4] = e.putVersion(a, p.ID, clock, t0.Add(10*day))

	// Whatever pruning drops, the versions it keeps give every time from
	// the retention's start on the version the whole history gives.
	checkHistory := func(t *testing.T, now time.Time) {
		t.Helper()
		var kept configclient.RuleVersions
		e.must(http.StatusOK, service("processing"), "GET", "/internal/v1/properties/"+p.ID+"/rules/versions", nil).decode(t, &kept)
		h, err := configclient.NewHistory(kept.Versions)
		if err != nil {
			t.Fatal(err)
		}
		var full []configclient.RuleVersion
		for _, v := range vs {
			full = append(full, v)
		}
		start := now.Add(-hit.ArchiveRetention)
		for _, v := range full {
			for _, at := range []time.Time{start, v.EffectiveAt.Add(-time.Millisecond), v.EffectiveAt, v.EffectiveAt.Add(time.Millisecond), now} {
				if at.Before(start) {
					continue
				}
				want, _ := versionAt(full, at)
				if got := h.At(at); got == nil || got.Version() != want.Version {
					t.Errorf("at %s the kept versions give another version than the whole history's %d", at, want.Version)
				}
			}
		}
	}

	tests := []struct {
		name    string
		now     time.Time // when the next version is made
		history []int     // then, newest first
	}{
		// Version 2 was in effect at the retention's start (version 3
		// replaced it later): only version 1 goes.
		{"just before version 3 is as old as the retention", vs[3].EffectiveAt.Add(hit.ArchiveRetention - time.Millisecond), []int{5, 4, 3, 2}},
		// Version 4 took effect exactly at the retention's start: 2 and 3
		// go, 4 stays.
		{"version 4 exactly as old as the retention", vs[4].EffectiveAt.Add(hit.ArchiveRetention), []int{6, 5, 4}},
	}
	next := 5
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := e.putVersion(a, p.ID, clock, tt.now)
			if v.Version != next {
				t.Fatalf("made version %d, want %d", v.Version, next)
			}
			vs[next] = v
			next++
			if got := e.historyVersions(a, p.ID); !reflect.DeepEqual(got, tt.history) {
				t.Fatalf("history = %v, want %v", got, tt.history)
			}
			oldest := tt.history[len(tt.history)-1]
			for n := 1; n < oldest; n++ {
				r := e.must(http.StatusNotFound, a.as(), "GET", base+"/versions/"+strconv.Itoa(n), nil)
				if r.apiError().Code != "not_found" || !strings.Contains(r.apiError().Message, "no longer kept") {
					t.Errorf("pruned version %d: %s", n, r.body)
				}
			}
			e.must(http.StatusOK, a.as(), "GET", base+"/versions/"+strconv.Itoa(oldest), nil)
			checkHistory(t, tt.now)
			// The oldest kept version is the one in effect at the
			// retention's start.
			var at configclient.RuleVersion
			e.must(http.StatusOK, a.as(), "GET", base+"?at="+url.QueryEscape(tt.now.Add(-hit.ArchiveRetention).Format(time.RFC3339Nano)), nil).decode(t, &at)
			if at.Version != oldest {
				t.Errorf("rules at the retention's start = version %d, want %d", at.Version, oldest)
			}
			if oldest > 1 {
				before := vs[oldest].EffectiveAt.Add(-time.Millisecond)
				r := e.must(http.StatusNotFound, a.as(), "GET", base+"?at="+url.QueryEscape(before.Format(time.RFC3339Nano)), nil)
				if !strings.Contains(r.apiError().Message, "no longer kept") {
					t.Errorf("rules at a pruned version's time: %s", r.body)
				}
			}
		})
	}

	// A property whose rules stopped changing prunes nothing, but the
	// pipeline is sent only the versions it can need.
	clock.set(clock.now().Add(hit.ArchiveRetention + day))
	var kept configclient.RuleVersions
	e.must(http.StatusOK, service("processing"), "GET", "/internal/v1/properties/"+p.ID+"/rules/versions", nil).decode(t, &kept)
	if len(kept.Versions) != 1 || kept.Versions[0].Version != 6 {
		var got []int
		for _, v := range kept.Versions {
			got = append(got, v.Version)
		}
		t.Fatalf("internal history of an idle property = %v, want [6]", got)
	}
}

// TestRuleVersionBounds: a version past a bound on the property's versions
// (per 24 hours, or kept in its history) is refused with 429
// too_many_versions, saying the bound and when the next version can be
// made, and nothing is written; an unchanged document is not refused (it
// makes no version); at the time the answer gave, the version is made.
// Past both bounds, the answer is the bound lifted later, whichever is
// checked first: a client retrying at Retry-After is not refused again.
func TestRuleVersionBounds(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		name        string
		perDay, max int
		gaps        []time.Duration // between versions 1, 2, ...: the property has len(gaps)+1 versions
		refusedAt   time.Duration   // after the last version
		allowedFrom time.Duration   // after version 1
		message     string
		history     []int // once the next version is made
	}{
		{"per day", 3, 0, []time.Duration{time.Hour, time.Hour}, time.Hour, day,
			"has made 3 rule versions in the last 24 hours", []int{4, 3, 2, 1}},
		{"kept", 0, 5, []time.Duration{day, day, day, day}, day, day + hit.ArchiveRetention,
			"rule history holds 5 versions", []int{6, 5, 4, 3, 2}},
		// Versions 3 to 5 in the last 24 hours, and version 2 kept for
		// another 395 days: the history bound is lifted later.
		{"both, history later", 3, 5, []time.Duration{time.Hour, day, time.Hour, time.Hour}, time.Hour, time.Hour + hit.ArchiveRetention,
			"rule history holds 5 versions", []int{6, 5, 4, 3, 2}},
		// Version 2 is past use a day before the 24 hours of versions 3
		// to 5 end: the day bound is lifted later.
		{"both, day later", 3, 5, []time.Duration{time.Hour, hit.ArchiveRetention - day/2, time.Hour, time.Hour}, time.Hour, time.Hour + hit.ArchiveRetention + day/2,
			"has made 3 rule versions in the last 24 hours", []int{6, 5, 4, 3, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newTestClock()
			e := newEnv(t, func(o *Options) {
				o.Now, o.MaxRuleVersionsPerDay, o.MaxRuleVersions = clock.now, tt.perDay, tt.max
			})
			a := e.signup("Bounded")
			p := e.createProperty(a, map[string]any{"name": "Site", "hostnames": []string{"example.com"}})
			base := "/v1/properties/" + p.ID + "/rules"
			t0 := clock.now()
			last := t0
			for _, g := range tt.gaps {
				last = last.Add(g)
				e.putVersion(a, p.ID, clock, last)
			}
			n := len(tt.gaps) + 1
			var cur configclient.RuleVersion
			e.must(http.StatusOK, a.as(), "GET", base, nil).decode(t, &cur)
			before := e.historyVersions(a, p.ID)

			refused := func(t *testing.T, r response, at time.Time) {
				t.Helper()
				// Both said to the second, rounded up: not before it.
				from := t0.Add(tt.allowedFrom)
				wantAfter := int((from.Sub(at) + time.Second - 1) / time.Second)
				wantFrom := from.Add(time.Second - 1).Truncate(time.Second).Format(time.RFC3339)
				if r.code != http.StatusTooManyRequests || r.apiError().Code != "too_many_versions" ||
					!strings.Contains(r.apiError().Message, tt.message) || !strings.Contains(r.apiError().Message, "made from "+wantFrom+".") ||
					r.header.Get("Retry-After") != strconv.Itoa(wantAfter) {
					t.Fatalf("= %d %s (Retry-After %s); want 429 too_many_versions saying %q and %s, Retry-After %d",
						r.code, r.body, r.header.Get("Retry-After"), tt.message, wantFrom, wantAfter)
				}
				if got := e.historyVersions(a, p.ID); !reflect.DeepEqual(got, before) {
					t.Fatalf("history after a refusal = %v, want %v", got, before)
				}
				var now configclient.RuleVersion
				e.must(http.StatusOK, a.as(), "GET", base, nil).decode(t, &now)
				if !reflect.DeepEqual(now, cur) {
					t.Fatalf("the rules after a refusal = %+v, want %+v", now, cur)
				}
			}
			for _, at := range []time.Time{last.Add(tt.refusedAt), t0.Add(tt.allowedFrom - time.Millisecond)} {
				clock.set(at)
				refused(t, e.do(a.as(), "PUT", base, map[string]any{"session_timeout_minutes": cur.Rules.SessionTimeoutMinutes + 1}), at)
				// A hostname change makes a version too: refused the same
				// way, with none of the PATCH's settings changed.
				refused(t, e.do(a.as(), "PATCH", "/v1/properties/"+p.ID, map[string]any{"name": "Renamed", "hostnames": []string{"example.org"}}), at)
				var prop PropertyJSON
				e.must(http.StatusOK, a.as(), "GET", "/v1/properties/"+p.ID, nil).decode(t, &prop)
				if prop.Name != "Site" || !reflect.DeepEqual(prop.Hostnames, []string{"example.com"}) {
					t.Fatalf("property after a refused PATCH: %+v", prop)
				}
				// The current document again is no new version: not refused.
				var same configclient.RuleVersion
				e.must(http.StatusOK, a.as(), "PUT", base, cur.Rules).decode(t, &same)
				if same.Version != n {
					t.Fatalf("an unchanged document made version %d", same.Version)
				}
			}
			if v := e.putVersion(a, p.ID, clock, t0.Add(tt.allowedFrom)); v.Version != n+1 {
				t.Fatalf("made version %d, want %d", v.Version, n+1)
			}
			if got := e.historyVersions(a, p.ID); !reflect.DeepEqual(got, tt.history) {
				t.Fatalf("history = %v, want %v", got, tt.history)
			}
		})
	}
}

// TestRuleVersionsPaged: following next_before from the first page lists
// every version exactly once, newest first, whatever the page size, and
// says nothing more follows only on the last page.
func TestRuleVersionsPaged(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Paged")
	p := e.createProperty(a, map[string]any{"name": "Site"})
	base := "/v1/properties/" + p.ID + "/rules/versions"
	const versions = 12
	for i := 2; i <= versions; i++ {
		e.must(http.StatusOK, a.as(), "PUT", "/v1/properties/"+p.ID+"/rules", map[string]any{"session_timeout_minutes": i})
	}
	var want []int
	for v := versions; v >= 1; v-- {
		want = append(want, v)
	}
	for _, limit := range []string{"1", "5", "11", "12", "13", ""} {
		t.Run("limit="+limit, func(t *testing.T) {
			var got []int
			before := ""
			for pages := 0; ; pages++ {
				if pages > versions {
					t.Fatalf("more pages than versions: %v", got)
				}
				q := url.Values{}
				if limit != "" {
					q.Set("limit", limit)
				}
				if before != "" {
					q.Set("before", before)
				}
				var page RuleVersionPage
				e.must(http.StatusOK, a.as(), "GET", base+"?"+q.Encode(), nil).decode(t, &page)
				n, _ := strconv.Atoi(limit)
				if limit != "" && len(page.Versions) > n || len(page.Versions) == 0 {
					t.Fatalf("page after %q has %d versions, limit %s", before, len(page.Versions), limit)
				}
				for _, v := range page.Versions {
					got = append(got, v.Version)
				}
				if page.NextBefore == 0 {
					break
				}
				if page.NextBefore != got[len(got)-1] {
					t.Fatalf("next_before = %d after version %d", page.NextBefore, got[len(got)-1])
				}
				before = strconv.Itoa(page.NextBefore)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("versions listed = %v, want %v", got, want)
			}
		})
	}
	// before need not be a page's end: the versions below it.
	var page RuleVersionPage
	e.must(http.StatusOK, a.as(), "GET", base+"?before=4", nil).decode(t, &page)
	if len(page.Versions) != 3 || page.Versions[0].Version != 3 || page.NextBefore != 0 {
		t.Fatalf("versions before 4 = %+v", page)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "before=0", "before=-1", "before=2147483648", "before=x"} {
		r := e.must(http.StatusBadRequest, a.as(), "GET", base+"?"+q, nil)
		if field := strings.SplitN(q, "=", 2)[0]; r.apiError().Code != "invalid_field" || r.apiError().Field != field {
			t.Errorf("?%s = %s, want invalid_field %s", q, r.body, field)
		}
	}
}

// TestRulesAtPointInTime: ?at= answers the version the whole history
// gives (versionAt) before, at and after each version's
// effective time, over more versions than a page of the newest-first read,
// with the ETag only for the current version; and it reads the history
// only back to the version it answers (an older version that no longer
// decodes does not matter).
func TestRulesAtPointInTime(t *testing.T) {
	clock := newTestClock()
	e := newEnv(t, func(o *Options) { o.Now = clock.now })
	a := e.signup("At")
	p := e.createProperty(a, map[string]any{"name": "Site"})
	base := "/v1/properties/" + p.ID + "/rules"
	t0 := clock.now()
	const versions = 40
	for i := 2; i <= versions; i++ {
		e.putVersion(a, p.ID, clock, t0.Add(time.Duration(i)*time.Minute))
	}
	var all configclient.RuleVersions
	e.must(http.StatusOK, service("processing"), "GET", "/internal/v1/properties/"+p.ID+"/rules/versions", nil).decode(t, &all)
	if len(all.Versions) != versions {
		t.Fatalf("%d versions, want %d", len(all.Versions), versions)
	}
	rulesAt := func(at time.Time) response {
		return e.do(a.as(), "GET", base+"?at="+url.QueryEscape(at.Format(time.RFC3339Nano)), nil)
	}
	times := []time.Time{t0.Add(-time.Millisecond), t0.Add(time.Hour * 24 * 365)}
	for _, v := range all.Versions {
		times = append(times, v.EffectiveAt.Add(-time.Millisecond), v.EffectiveAt, v.EffectiveAt.Add(time.Millisecond), v.EffectiveAt.Add(30*time.Second))
	}
	for _, at := range times {
		want, ok := versionAt(all.Versions, at)
		r := rulesAt(at)
		if !ok {
			if r.code != http.StatusNotFound {
				t.Errorf("rules at %s (before the property) = %d %s", at, r.code, r.body)
			}
			continue
		}
		var got configclient.RuleVersion
		if r.code != http.StatusOK {
			t.Fatalf("rules at %s = %d %s", at, r.code, r.body)
		}
		r.decode(t, &got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("rules at %s = version %d, want %d", at, got.Version, want.Version)
		}
		if wantTag := map[bool]string{true: `"40"`}[want.Version == versions]; r.header.Get("ETag") != wantTag {
			t.Errorf("rules at %s (version %d): ETag %q, want %q", at, got.Version, r.header.Get("ETag"), wantTag)
		}
	}

	session, err := cassandra.Connect(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	pid, err := gocql.ParseUUID(p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := session.Query(`UPDATE rule_versions SET rules = 'not a rule document' WHERE property_id = ? AND version = 1`, pid).Exec(); err != nil {
		t.Fatal(err)
	}
	if r := rulesAt(all.Versions[1].EffectiveAt); r.code != http.StatusOK {
		t.Fatalf("rules at version 2 with version 1 undecodable = %d %s", r.code, r.body)
	}
}
