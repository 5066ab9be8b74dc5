package proxy

import "testing"

func TestClientNetwork(t *testing.T) {
	for _, tt := range []struct{ client, limit, logged string }{
		{"203.0.113.7", "203.0.113.7", "203.0.113.0"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", "2001:db8:1::"},
		{"fe80::1%eth0", "fe80::/64", "fe80::"},
		{"not-an-ip", "not-an-ip", ""},
	} {
		if got := clientNetwork(tt.client); got != tt.limit {
			t.Errorf("clientNetwork(%q) = %q, want %q", tt.client, got, tt.limit)
		}
		if got := loggedNetwork(tt.client); got != tt.logged {
			t.Errorf("loggedNetwork(%q) = %q, want %q", tt.client, got, tt.logged)
		}
	}
}
