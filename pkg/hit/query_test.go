package hit

import (
	"errors"
	"net/url"
	"testing"
)

func TestQueryTrackingID(t *testing.T) {
	tests := []struct{ raw, name, want string }{
		{"tid=UA-1", "tid", "UA-1"},
		{"v=2&tid=UA-1&t=pageview", "tid", "UA-1"},
		{"tid=UA%2D1", "tid", "UA-1"},
		{"xtid=UA-1", "tid", ""},
		{"tid=", "tid", ""},
		{"tid=%zz", "tid", ""},
		{"tid=a&tid=b", "tid", "a"},
		{"tid&tid=b", "tid", ""},
		{"t%69d=a&tid=b", "tid", "b"},
		{"tid=a;b", "tid", "a;b"},
		{"tracking_id=G-1&tid=x", "tracking_id", "G-1"},
		{"", "tid", ""},
	}
	for _, tt := range tests {
		if got := QueryTrackingID(tt.raw, tt.name); got != tt.want {
			t.Errorf("QueryTrackingID(%q, %q) = %q, want %q", tt.raw, tt.name, got, tt.want)
		}
	}
}

func TestCheckQueryTrackingID(t *testing.T) {
	tests := []struct {
		raw, name string
		want      error
	}{
		{"v=1&tid=AT-1&t=pageview", "tid", nil},
		{"tid=AT%2D1", "tid", nil},
		{"", "tid", nil},
		{"v=1", "tid", nil},
		{"tracking_id=AT-1&api_secret=s&tid=x", "tracking_id", nil},
		{"dl=a%3Bb&x=1;2&%zz=1", "tid", nil}, // other pairs are not the tracking ID's readers' business
		{"tid=x&tid=AT-1", "tid", ErrTrackingIDRepeated},
		{"tid&tid=AT-1", "tid", ErrTrackingIDRepeated},
		{"tid=AT-1&v=1&tid=AT-1", "tid", ErrTrackingIDRepeated},
		{"tid=x;&tid=AT-1", "tid", ErrTrackingIDUnreadable},
		{"tid=AT-1;", "tid", ErrTrackingIDUnreadable},
		{"tid=%zz", "tid", ErrTrackingIDUnreadable},
		{"t%69d=AT-1", "tid", ErrTrackingIDNameEscaped},
		{"tid=x&%74%69%64=AT-1", "tid", ErrTrackingIDNameEscaped},
		{"tracking%5Fid=AT-1", "tracking_id", ErrTrackingIDNameEscaped},
	}
	for _, tt := range tests {
		err := CheckQueryTrackingID(tt.raw, tt.name)
		if !errors.Is(err, tt.want) {
			t.Errorf("CheckQueryTrackingID(%q, %q) = %v, want %v", tt.raw, tt.name, err, tt.want)
		}
		if err != nil {
			continue
		}
		// Accepted: net/url reads what QueryTrackingID reads.
		q, _ := url.ParseQuery(tt.raw)
		if got, want := q.Get(tt.name), QueryTrackingID(tt.raw, tt.name); got != want {
			t.Errorf("%q: url.ParseQuery reads %q, QueryTrackingID %q", tt.raw, got, want)
		}
	}
}
