package rollup

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// Values added and taken away in any order give the same sum, and nothing
// left over once all are taken away: a late hit that reshapes sessions, a
// replay and reprocessing add the same values in other orders.
func TestValueSumsDoNotDependOnOrder(t *testing.T) {
	values := []float64{0.1, 0.2, 0.3, 19.99, 5, 0.7, 1e-6, 123456.78, 0.05, 2.675}
	rng := rand.New(rand.NewPCG(1, 2))
	var want Metrics
	for _, v := range values {
		want.Add(Metrics{EventValue: v, ConversionValue: v}, 1)
	}
	for range 200 {
		var m Metrics
		order := rng.Perm(len(values))
		for _, i := range order {
			m.Add(Metrics{EventValue: values[i], ConversionValue: values[i]}, 1)
		}
		if m != want {
			t.Fatalf("order %v: %v, %v; want %v", order, m.EventValue, m.ConversionValue, want.EventValue)
		}
		for _, i := range rng.Perm(len(values)) {
			m.Add(Metrics{EventValue: values[i], ConversionValue: values[i]}, -1)
		}
		if !m.IsZero() {
			t.Fatalf("all taken away: %+v, want zero", m)
		}
	}
	if want.EventValue != 123485.795001 {
		t.Errorf("sum %v, want 123485.795001", want.EventValue)
	}
}

func TestEventDimensions(t *testing.T) {
	tests := []struct {
		category, action, label string
		want                    [3]string
	}{
		{"video", "play", "intro", [3]string{"video", "video / play", "video / play / intro"}},
		{"", "signup", "", [3]string{"(not set)", "(not set) / signup", "(not set) / signup / (not set)"}},
		{"video", "play", "", [3]string{"video", "video / play", "video / play / (not set)"}},
		{"Video / YouTube", "play", "intro", [3]string{"Video / YouTube", `Video \/ YouTube / play`, `Video \/ YouTube / play / intro`}},
	}
	for _, tt := range tests {
		c, a, e := EventDimensions(tt.category, tt.action, tt.label)
		if got := [3]string{c, a, e}; got != tt.want {
			t.Errorf("EventDimensions(%q, %q, %q) = %q, want %q", tt.category, tt.action, tt.label, got, tt.want)
		}
	}
}

// A row's values, its scan targets and the columns they are bound to agree
// in number: InsertDaily's bind values are sized by MetricCount.
func TestMetricCountMatchesColumns(t *testing.T) {
	var m Metrics
	columns := len(strings.Split(MetricColumns, ", ")) - 1 // users_hll is not a metric
	if n, p := len(m.AppendFields(nil)), len(m.Pointers()); n != MetricCount || p != MetricCount || columns != MetricCount {
		t.Errorf("AppendFields gives %d values, Pointers %d, MetricColumns has %d metrics; MetricCount is %d", n, p, columns, MetricCount)
	}
	values, err := (&Row{}).Values()
	if err != nil {
		t.Fatal(err)
	}
	if binds := strings.Count(InsertDaily, "?"); len(values) != binds-3 || cap(values) != len(values) {
		t.Errorf("Values gives %d values (capacity %d); InsertDaily binds %d after the property ID and before through_offset and through_partition", len(values), cap(values), binds-3)
	}
}
