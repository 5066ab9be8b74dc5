package clientaddr

import (
	"net/netip"
	"strings"
	"testing"
)

// TestClient: the client behind a request, as the gateway and collection
// read it.
func TestClient(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"direct client", "198.51.100.1:5000", nil, "198.51.100.1"},
		{"untrusted peer's header ignored", "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"gateway appends the client", "127.0.0.1:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"client-written entries left of it are ignored", "127.0.0.1:5000", []string{"1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"a chain of trusted proxies", "127.0.0.1:5000", []string{"203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"a trailing comma", "127.0.0.1:5000", []string{"203.0.113.9,"}, "203.0.113.9"},
		{"an empty entry", "127.0.0.1:5000", []string{"203.0.113.9, , 10.1.2.3"}, "203.0.113.9"},
		{"IPv6 in brackets without a port", "127.0.0.1:5000", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"unknown from the proxy: trust nothing left of it", "127.0.0.1:5000", []string{"203.0.113.9, unknown"}, "127.0.0.1"},
		{"several header lines", "127.0.0.1:5000", []string{"1.2.3.4", "203.0.113.9"}, "203.0.113.9"},
		{"ipv6 with port in the header", "127.0.0.1:5000", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"ipv4 with port in the header", "127.0.0.1:5000", []string{"203.0.113.9:51234"}, "203.0.113.9"},
		{"garbage stops the walk", "127.0.0.1:5000", []string{"203.0.113.9, junk, 10.0.0.2"}, "10.0.0.2"},
		{"only trusted entries", "127.0.0.1:5000", []string{"10.0.0.2"}, "10.0.0.2"},
		{"no header from a proxy", "127.0.0.1:5000", nil, "127.0.0.1"},
		{"mapped peer", "[::ffff:198.51.100.1]:5000", nil, "198.51.100.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Client(Parse(tt.peer), tt.xff, trusted).String(); got != tt.want {
				t.Fatalf("Client = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestParsePrefixes: -trusted-proxies, as the gateway and collection read
// it.
func TestParsePrefixes(t *testing.T) {
	tests := []struct {
		in   string
		want []string // nil: refused
	}{
		{"", []string{}},
		{"10.0.0.0/8", []string{"10.0.0.0/8"}},
		{" 10.1.2.3/8 , ,127.0.0.1/32", []string{"10.0.0.0/8", "127.0.0.1/32"}},
		{"10.0.0.5", []string{"10.0.0.5/32"}},
		{"2001:db8::1", []string{"2001:db8::1/128"}},
		{"2001:db8::/32", []string{"2001:db8::/32"}},
		{"::ffff:10.0.0.5", []string{"10.0.0.5/32"}},
		{"::ffff:10.0.0.0/104", []string{"10.0.0.0/8"}},
		{"::ffff:0:0/95", []string{"::fffe:0:0/95"}},
		{"10.0.0.0/33", nil},
		{"10.0.0.0/8,nonsense", nil},
		{"10.0.0.0/", nil},
	}
	for _, tt := range tests {
		got, err := ParsePrefixes(tt.in)
		if tt.want == nil {
			if err == nil {
				t.Errorf("ParsePrefixes(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePrefixes(%q): %v", tt.in, err)
			continue
		}
		gs := []string{}
		for _, p := range got {
			gs = append(gs, p.String())
		}
		if strings.Join(gs, ",") != strings.Join(tt.want, ",") {
			t.Errorf("ParsePrefixes(%q) = %v, want %v", tt.in, gs, tt.want)
		}
	}
}
