package parse

import (
	"errors"
	"testing"
)

// TestQueryRefusesARepeatedTID: the gateway rate-limits by the first tid,
// so Query may not keep the last one, which may be another property's.
func TestQueryRefusesARepeatedTID(t *testing.T) {
	tests := []struct {
		raw     string
		wantTID string
		wantErr bool
	}{
		{"v=1&tid=AT-SHPSHPSHP2&t=pageview", "AT-SHPSHPSHP2", false},
		{"tid=AT-NNNNNNNNNN&tid=AT-SHPSHPSHP2", "", true},
		{"tid&tid=AT-SHPSHPSHP2", "", true},
		{"tid=AT-SHPSHPSHP2&t%69d=AT-SHPSHPSHP2", "", true},
		{"dl=a&dl=b&tid=AT-SHPSHPSHP2", "AT-SHPSHPSHP2", false}, // another parameter twice: the last, as before
	}
	for _, tt := range tests {
		f, err := Query(tt.raw)
		var pe *Error
		if tt.wantErr {
			if !errors.As(err, &pe) || pe.Reason != ReasonMalformed || pe.Field != "tid" {
				t.Errorf("Query(%q) = %v, want malformed tid", tt.raw, err)
			}
			continue
		}
		if err != nil || f.TrackingID != tt.wantTID {
			t.Errorf("Query(%q) = %q, %v, want %q", tt.raw, f.TrackingID, err, tt.wantTID)
		}
	}
}
