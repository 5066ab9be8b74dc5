package derive

import (
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/processing-svc/internal/session"
)

func sessions(t *testing.T, hits ...*session.Hit) []*session.Session {
	t.Helper()
	return session.Build(hits, session.Settings{Timeout: 30 * time.Minute, Location: time.UTC})
}

func TestSessionContributions(t *testing.T) {
	base := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	ss := sessions(t,
		&session.Hit{ID: "1", Type: hit.TypePageview, Time: base, Path: "/a", Referrer: "https://news.example/x"},
		&session.Hit{ID: "2", Type: hit.TypePageview, Time: base.Add(20 * time.Second), Path: "/b"},
		&session.Hit{ID: "3", Type: hit.TypeEvent, Time: base.Add(30 * time.Second), Category: "video", Action: "play", Label: "intro", Value: 2, Interaction: true},
		&session.Hit{ID: "4", Type: hit.TypeEvent, Time: base.Add(40 * time.Second), Category: "video", Action: "play", Label: "intro", Value: 3, Interaction: true},
		&session.Hit{ID: "5", Type: hit.TypePageview, Time: base.Add(60 * time.Second), Path: "/a"},
	)
	c := New()
	c.AddSession(ss[0], "client-1", true, time.UTC, 1)
	day := base.Truncate(24 * time.Hour)
	get := func(report, dim string) rollup.Metrics { return c.Daily[DailyKey{day, report, dim}] }

	tests := []struct {
		name string
		got  rollup.Metrics
		want rollup.Metrics
	}{
		{"total", get(rollup.Total, ""), rollup.Metrics{NewUsers: 1, Sessions: 1, EngagedSessions: 1, DurationMS: 60000, Pageviews: 3, Events: 2}},
		{"channel", get(rollup.Channel, "Referral"), rollup.Metrics{NewUsers: 1, Sessions: 1, EngagedSessions: 1, DurationMS: 60000, Pageviews: 3, Events: 2}},
		{"landing page /a", get(rollup.Page, "/a"), rollup.Metrics{Pageviews: 2, UniquePageviews: 1, TimeOnPageMS: 20000, TimeOnPageViews: 1, Entrances: 1, Sessions: 1, Exits: 1}},
		{"page /b", get(rollup.Page, "/b"), rollup.Metrics{Pageviews: 1, UniquePageviews: 1, TimeOnPageMS: 40000, TimeOnPageViews: 1}},
		{"event", get(rollup.Event, "video / play / intro"), rollup.Metrics{Events: 2, UniqueEvents: 1, EventValue: 5}},
		{"user type", get(rollup.UserType, rollup.NewUser), rollup.Metrics{NewUsers: 1, Sessions: 1, EngagedSessions: 1, DurationMS: 60000, Pageviews: 3, Events: 2}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s:\n got  %+v\n want %+v", tt.name, tt.got, tt.want)
		}
	}
	if _, ok := c.DailyUsers[DailyKey{day, rollup.Source, "news.example"}]["client-1"]; !ok {
		t.Error("the user is not in the source's users")
	}
	if rt := c.Realtime[MinuteKey{base}]; rt == nil || rt.Pageviews != 2 || rt.Pages["/a"] != 1 || rt.Pages["/b"] != 1 || rt.Sources["news.example"] != 2 {
		t.Errorf("realtime minute = %+v", rt)
	}

	// Taking the session back leaves no metric behind.
	c.AddSession(ss[0], "client-1", true, time.UTC, -1)
	if len(c.Daily) != 0 || len(c.Hourly) != 0 || len(c.DailyUsers) != 0 || len(c.HourlyUsers) != 0 {
		t.Fatalf("after subtracting the session: daily %v hourly %v users %v; want empty", c.Daily, c.Hourly, c.DailyUsers)
	}
}
