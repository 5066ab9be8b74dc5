package simulate

import (
	"testing"
	"time"
)

// The expectation holds every acquisition report the report API serves by
// one dimension, and each adds up to the day's sessions: the acceptance
// test (pkg/e2e compareReports) reads each of them and wants as many rows
// as the expectation has, and `simulate -expect` writes them for an
// upgrade drill to compare with. The source and medium reports are served
// (from the source_medium rows since 2026-12-06) though processing no
// longer stores rows of their own.
func TestExpectationHasEveryAcquisitionReport(t *testing.T) {
	p := New(Config{Seed: 1, Visitors: 300, End: time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)})
	for _, day := range p.Expect.SortedDays() {
		total := p.Expect.Row(day, "total", "").Sessions
		for _, report := range []string{"channel", "source", "medium", "campaign", "referrer", "landing_page", "device", "browser", "user_type", "country"} {
			var sessions int64
			for _, m := range p.Expect.Days[day][report] {
				sessions += m.Sessions
			}
			if sessions != total {
				t.Errorf("%s: the %s report's rows add up to %d sessions, want the day's %d", day, report, sessions, total)
			}
		}
	}
}
