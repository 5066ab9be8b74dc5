package proxy

import (
	"net/http"
	"net/netip"

	"github.com/acme/analytics/pkg/clientaddr"
	"github.com/acme/analytics/pkg/rules"
)

// forwarded works out the client's address and the X-Forwarded-Proto to
// send upstream. From a trusted proxy, the client is
// the rightmost address of the incoming X-Forwarded-For that is not a
// trusted proxy (clientaddr.Client, as collection reads it); from anyone
// else, the incoming header is a claim we cannot check, and the client is
// the peer. Upstreams get that address alone as X-Forwarded-For (rewrite): collection
// trusts the gateway, not necessarily the proxies in front of it (a cloud
// load balancer's public addresses), and the incoming chain with the peer
// appended made it take the hop right of the client (the load balancer)
// for every visitor; what lies left of the client was written by the
// client and tells an upstream nothing it could trust.
func (h *Handler) forwarded(r *http.Request) (client, proto string) {
	proto = "http"
	if r.TLS != nil {
		proto = "https"
	}
	peerIP := clientaddr.Parse(r.RemoteAddr)
	if !peerIP.IsValid() {
		return r.RemoteAddr, proto
	}
	if !clientaddr.Trusted(peerIP, h.cfg.trusted) {
		return peerIP.String(), proto
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		proto = p
	}
	return clientaddr.Client(peerIP, r.Header.Values("X-Forwarded-For"), h.cfg.trusted).String(), proto
}

// clientNetwork is the part of a client address that keys a rate limit:
// an IPv4 address itself, the /64 of an IPv6 one (a host is commonly given
// a whole /64, and would otherwise have a fresh bucket per address).
func clientNetwork(client string) string {
	ip, err := netip.ParseAddr(client)
	if err != nil || ip.Is4() {
		return client
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p.String()
}

// loggedNetwork is a client address as the gateway's logs may carry it:
// truncated as collection stores addresses by default (/24, /48), so that
// the logs hold no more of a visitor's address than the tables do.
func loggedNetwork(client string) string {
	ip, err := netip.ParseAddr(client)
	if err != nil {
		return ""
	}
	net, _ := rules.AnonymizeStandard.Apply(ip)
	return net.String()
}
