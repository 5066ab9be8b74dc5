package proxy

import (
	"net/http/httptest"
	"testing"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", true},
		{"bearer abc", "abc", true},
		{"  Bearer   abc  ", "abc", true},
		{"Bearer ", "", false},
		{"Basic dXNlcjpwYXNz", "", false},
		{"abc.def.ghi", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := bearerToken(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestForwarded(t *testing.T) {
	tests := []struct {
		name, trusted, peer, xff, proto string
		wantClient, wantProto           string
	}{
		{"untrusted", "", "198.51.100.1:5000", "1.1.1.1", "https", "198.51.100.1", "http"},
		{"IPv6 peer", "", "[2001:db8::1]:5000", "", "", "2001:db8::1", "http"},
		{"trusted LB", "10.0.0.0/8", "10.0.0.5:5000", "203.0.113.9", "https", "203.0.113.9", "https"},
		{"trusted, chain of proxies", "10.0.0.0/8", "10.0.0.5:5000", "1.1.1.1, 203.0.113.9, 10.9.9.9", "", "203.0.113.9", "http"},
		{"trusted, garbage hop stops the walk", "10.0.0.0/8", "10.0.0.5:5000", "203.0.113.9, nonsense", "", "10.0.0.5", "http"},
		{"trusted, no header", "10.0.0.0/8", "10.0.0.5:5000", "", "", "10.0.0.5", "http"},
		// Some load balancers write the client's port too: the client is
		// still told apart (it was the LB's address, so every client shared
		// one rate-limit bucket).
		{"trusted LB writing ports", "10.0.0.0/8", "10.0.0.5:5000", "203.0.113.9:51234", "", "203.0.113.9", "http"},
		{"trusted LB writing an IPv6 port", "10.0.0.0/8", "10.0.0.5:5000", "[2001:db8::7]:51234", "", "2001:db8::7", "http"},
		{"trusted, bad proto ignored", "10.0.0.0/8", "10.0.0.5:5000", "", "gopher", "10.0.0.5", "http"},
		// -trusted-proxies reads as collection's does (clientaddr.ParsePrefixes):
		// a single address is its own /32 (/128), and an IPv4-mapped one
		// is the IPv4 address the peer is compared as.
		{"trusted single address", "10.0.0.5", "10.0.0.5:5000", "203.0.113.9", "", "203.0.113.9", "http"},
		{"trusted IPv4-mapped prefix", "::ffff:10.0.0.0/104", "10.0.0.5:5000", "203.0.113.9", "", "203.0.113.9", "http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{TrustedProxies: tt.trusted, RateLimitKeys: 64, MaxHitBody: 1, MaxBody: 1, CollectTimeout: 1, APITimeout: 1, ReportTimeout: 1}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			h := &Handler{cfg: c}
			r := httptest.NewRequest("GET", "/collect", nil)
			r.RemoteAddr = tt.peer
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if tt.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tt.proto)
			}
			client, proto := h.forwarded(r)
			if client != tt.wantClient || proto != tt.wantProto {
				t.Fatalf("forwarded = %q, %q; want %q, %q", client, proto, tt.wantClient, tt.wantProto)
			}
		})
	}
}
