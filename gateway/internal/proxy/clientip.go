package proxy

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/acme/analytics/pkg/clientaddr"
	"github.com/acme/analytics/pkg/rules"
)

// forwarded works out the client's address and the X-Forwarded-For and
// X-Forwarded-Proto to send upstream. From a trusted proxy, the incoming
// X-Forwarded-For is kept and the peer appended, and the client is the
// rightmost address that is not a trusted proxy (clientaddr.Client, as
// collection reads it); from anyone else, the incoming header is a claim
// we cannot check, so it is replaced by the peer.
func (h *Handler) forwarded(r *http.Request) (client, xff, proto string) {
	proto = "http"
	if r.TLS != nil {
		proto = "https"
	}
	peerIP := clientaddr.Parse(r.RemoteAddr)
	if !peerIP.IsValid() {
		return r.RemoteAddr, r.RemoteAddr, proto
	}
	peer := peerIP.String()
	if !clientaddr.Trusted(peerIP, h.cfg.trusted) {
		return peer, peer, proto
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		proto = p
	}
	prior := r.Header.Values("X-Forwarded-For")
	joined := strings.Join(prior, ", ")
	if strings.TrimSpace(joined) == "" {
		return peer, peer, proto
	}
	return clientaddr.Client(peerIP, prior, h.cfg.trusted).String(), joined + ", " + peer, proto
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
