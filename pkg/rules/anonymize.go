package rules

import "net/netip"

// Anonymization is how much of a client IP may be stored. The full IP is
// never stored, whatever the level: it is used only in flight.
type Anonymization string

const (
	// AnonymizeStandard keeps the /24 of an IPv4 and the /48 of an IPv6
	// address (the default).
	AnonymizeStandard Anonymization = "standard"
	// AnonymizeStrict keeps the /16 of an IPv4 and the /32 of an IPv6
	// address.
	AnonymizeStrict Anonymization = "strict"
	// AnonymizeRemove stores no IP at all.
	AnonymizeRemove Anonymization = "remove"
)

// Valid reports whether a is a known level.
func (a Anonymization) Valid() bool {
	return a == AnonymizeStandard || a == AnonymizeStrict || a == AnonymizeRemove
}

// Bits returns the prefix lengths kept of IPv4 and IPv6 addresses (0 and 0
// for AnonymizeRemove). An unknown level is treated as strict.
func (a Anonymization) Bits() (v4, v6 int) {
	switch a {
	case AnonymizeStandard:
		return 24, 48
	case AnonymizeRemove:
		return 0, 0
	}
	return 16, 32
}

// Apply returns the part of addr that may be stored, with the host bits
// zeroed, and false when nothing may be stored (AnonymizeRemove or an
// invalid address). IPv4-mapped IPv6 addresses are treated as IPv4.
func (a Anonymization) Apply(addr netip.Addr) (netip.Addr, bool) {
	if !addr.IsValid() || a == AnonymizeRemove {
		return netip.Addr{}, false
	}
	addr = addr.Unmap().WithZone("")
	v4, v6 := a.Bits()
	bits := v6
	if addr.Is4() {
		bits = v4
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return netip.Addr{}, false
	}
	return p.Addr(), true
}
