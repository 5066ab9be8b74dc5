package deadletters

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// Count is the number of dead letters of one stage, reason and tracking ID.
type Count struct {
	Stage      string `json:"stage"`
	Reason     string `json:"reason"`
	TrackingID string `json:"tid"`
	Count      int    `json:"count"`
}

// Summary counts dead letters by stage, reason and tracking ID.
type Summary struct {
	counts map[Count]int // keys with Count 0
}

// Add counts l. A record that is not a dead letter counts under the stage
// and reason "?".
func (s *Summary) Add(l *Letter) {
	if s.counts == nil {
		s.counts = map[Count]int{}
	}
	k := Count{Stage: l.Stage, Reason: l.Reason, TrackingID: l.TrackingID}
	if l.Err != "" {
		k = Count{Stage: "?", Reason: "?"}
	}
	s.counts[k]++
}

// Counts returns the counts by stage and reason, the largest first within
// a reason, then by tracking ID.
func (s *Summary) Counts() []Count {
	out := make([]Count, 0, len(s.counts))
	for k, n := range s.counts {
		k.Count = n
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Count) int {
		return cmp.Or(cmp.Compare(a.Stage, b.Stage), cmp.Compare(a.Reason, b.Reason),
			cmp.Compare(b.Count, a.Count), cmp.Compare(a.TrackingID, b.TrackingID))
	})
	return out
}

// Print writes the counts as a table, with the total of each stage and
// reason and the grand total.
func (s *Summary) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tREASON\tTRACKING ID\tCOUNT")
	total, reasonTotal := 0, 0
	counts := s.Counts()
	for i, c := range counts {
		tid := c.TrackingID
		if tid == "" {
			tid = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", c.Stage, c.Reason, tid, c.Count)
		total += c.Count
		reasonTotal += c.Count
		if i+1 == len(counts) || counts[i+1].Stage != c.Stage || counts[i+1].Reason != c.Reason {
			fmt.Fprintf(tw, "%s\t%s\t(all)\t%d\n", c.Stage, c.Reason, reasonTotal)
			reasonTotal = 0
		}
	}
	fmt.Fprintf(tw, "total\t\t\t%d\n", total)
	return tw.Flush()
}
