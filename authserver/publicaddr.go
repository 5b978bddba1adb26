package authserver

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// globalUnicast6 is where IPv6 unicast addresses are allocated to the
// public Internet. Everything else (loopback, unique local, link- and
// site-local, multicast, NAT64, the IPv4-compatible and -translated forms,
// discard-only, SRv6) lies outside it.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// notPublic are the IANA special-purpose ranges
// (iana-ipv4-special-registry, iana-ipv6-special-registry) that an
// address of the public Internet must not fall in, beyond those the
// positive rules of publicAddress already exclude. A few of them hold
// globally reachable anycast services (192.0.0.9, the AS112 servers in
// 2001:4:112::/48), none of which serves metadata documents.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"; 0.0.0.0 dials the host itself
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (carrier-grade NAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast, deprecated
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments: Teredo, benchmarking, ORCHID
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: an IPv4 address of any kind behind a relay
	netip.MustParsePrefix("3fff::/20"),       // documentation
}

// publicAddress reports whether a is an address of the public Internet,
// the only kind a client ID metadata document may be fetched from. The rule
// is positive (global unicast, outside every special-purpose range), so a
// range nobody thought of is refused rather than reached. An IPv4 address
// mapped into IPv6 (::ffff:a.b.c.d) is judged as the IPv4 address it is;
// the other forms that embed IPv4 (NAT64, 6to4, IPv4-compatible, Teredo)
// are refused whatever they carry, as the address finally reached is not
// the one dialled.
func publicAddress(a netip.Addr) bool {
	if a.Zone() != "" {
		return false
	}
	a = a.Unmap()
	switch {
	case a.Is4():
		if !a.IsGlobalUnicast() || a.IsPrivate() {
			return false
		}
	case !globalUnicast6.Contains(a):
		return false
	}
	for _, p := range notPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// dialPublicOnly is a net.Dialer's Control: it runs on the address about to
// be dialled, after DNS resolution, so a name that resolves (or
// re-resolves) to an address off the public Internet is never connected to.
func dialPublicOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !publicAddress(a) {
		return fmt.Errorf("address %s is not a public address", host)
	}
	return nil
}
