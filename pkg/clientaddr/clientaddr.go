// Package clientaddr works out the address of the client behind a request:
// the connection's peer, or, when the peer is a trusted proxy, what the
// proxies wrote in X-Forwarded-For. The gateway keys its rate limits by
// it and collection enriches hits with it (country, IP rules), so both
// read the header alike.
package clientaddr

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Parse parses an address as a connection's RemoteAddr or an
// X-Forwarded-For entry carries it: "ip", "ip:port", "[ip]:port" or
// "[ip]" (load balancers differ: some write the client's port too). An
// IPv4-mapped IPv6 address is returned as IPv4. The zero Addr means s is
// not an address.
func Parse(s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap()
		}
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// Client returns the client's address for a request from peer with the
// X-Forwarded-For header lines xff: peer itself unless it is trusted;
// otherwise the right-most entry that is not itself a trusted proxy (each
// proxy appends the address it received the request from, so everything
// left of that could have been written by the client). Empty entries ("a,
// , b", a trailing comma) are skipped; an entry that is no address stops
// the walk, trusting nothing to its left, and the last address read (peer
// when none) is the client.
func Client(peer netip.Addr, xff []string, trusted []netip.Prefix) netip.Addr {
	if !peer.IsValid() || !Trusted(peer, trusted) {
		return peer
	}
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		list := xff[i]
		for list != "" {
			var part string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				part, list = list[j+1:], list[:j]
			} else {
				part, list = list, ""
			}
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			a := Parse(part)
			if !a.IsValid() {
				return client
			}
			client = a
			if !Trusted(a, trusted) {
				return a
			}
		}
	}
	return client
}

// Trusted reports whether a is in one of the prefixes.
func Trusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses a comma-separated list of trusted proxies, as the
// gateway's and collection's -trusted-proxies give it: CIDRs (10.0.0.0/8,
// host bits dropped) or single addresses (10.0.0.5, its /32 or /128),
// spaces and empty entries ignored. Addresses are compared as Parse gives
// them, IPv4-mapped ones as IPv4, so such an entry (::ffff:10.0.0.0/104)
// is read as the IPv4 prefix it names (10.0.0.0/8): as written it would
// contain no peer.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var p netip.Prefix
		var err error
		if strings.Contains(part, "/") {
			p, err = netip.ParsePrefix(part)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(part)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR (like 10.0.0.0/8) nor an address", part)
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
