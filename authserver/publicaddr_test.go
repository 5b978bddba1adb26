package authserver

import (
	"net/netip"
	"testing"
)

// TestPublicAddress checks the rule for the addresses a metadata document
// may be fetched from: each special-purpose range on both sides of both of
// its boundaries, and the forms that embed an IPv4 address in IPv6.
func TestPublicAddress(t *testing.T) {
	tests := []struct {
		addr   string
		public bool
	}{
		// Ordinary public addresses.
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"2606:4700:4700::1111", true},
		{"2001:4860:4860::8888", true},

		// IPv4 special-purpose ranges (IANA registry), and their neighbours.
		{"0.0.0.0", false}, // "this network", 0.0.0.0/8
		{"0.255.255.255", false},
		{"1.0.0.0", true},
		{"9.255.255.255", true}, // private 10.0.0.0/8
		{"10.0.0.0", false},
		{"10.255.255.255", false},
		{"11.0.0.0", true},
		{"100.63.255.255", true}, // shared address space 100.64.0.0/10 (carrier-grade NAT)
		{"100.64.0.0", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"100.128.0.0", true},
		{"126.255.255.255", true}, // loopback 127.0.0.0/8
		{"127.0.0.1", false},
		{"127.255.255.255", false},
		{"128.0.0.0", true},
		{"169.253.255.255", true}, // link-local 169.254.0.0/16 (cloud metadata)
		{"169.254.0.0", false},
		{"169.254.169.254", false},
		{"169.254.255.255", false},
		{"169.255.0.0", true},
		{"172.15.255.255", true}, // private 172.16.0.0/12
		{"172.16.0.0", false},
		{"172.31.255.255", false},
		{"172.32.0.0", true},
		{"191.255.255.255", true}, // IETF protocol assignments 192.0.0.0/24
		{"192.0.0.0", false},
		{"192.0.0.255", false},
		{"192.0.1.0", true},
		{"192.0.1.255", true}, // documentation 192.0.2.0/24
		{"192.0.2.0", false},
		{"192.0.2.255", false},
		{"192.0.3.0", true},
		{"192.88.98.255", true}, // 6to4 relay anycast 192.88.99.0/24
		{"192.88.99.0", false},
		{"192.88.99.255", false},
		{"192.88.100.0", true},
		{"192.167.255.255", true}, // private 192.168.0.0/16
		{"192.168.0.0", false},
		{"192.168.255.255", false},
		{"192.169.0.0", true},
		{"198.17.255.255", true}, // benchmarking 198.18.0.0/15
		{"198.18.0.0", false},
		{"198.19.255.255", false},
		{"198.20.0.0", true},
		{"198.51.99.255", true}, // documentation 198.51.100.0/24
		{"198.51.100.0", false},
		{"198.51.100.255", false},
		{"198.51.101.0", true},
		{"203.0.112.255", true}, // documentation 203.0.113.0/24
		{"203.0.113.0", false},
		{"203.0.113.255", false},
		{"203.0.114.0", true},
		{"223.255.255.255", true}, // multicast 224.0.0.0/4
		{"224.0.0.0", false},
		{"239.255.255.255", false},
		{"240.0.0.0", false}, // reserved 240.0.0.0/4, broadcast
		{"255.255.255.254", false},
		{"255.255.255.255", false},

		// IPv6: only global unicast 2000::/3 ...
		{"::", false},
		{"::1", false},
		{"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false},
		{"4000::", false},
		{"fc00::1", false}, // unique local fc00::/7
		{"fdff:ffff::1", false},
		{"fe80::1", false}, // link-local fe80::/10
		{"febf:ffff::1", false},
		{"fec0::1", false}, // site-local fec0::/10
		{"feff:ffff::1", false},
		{"ff02::1", false},          // multicast ff00::/8
		{"100::1", false},           // discard-only 100::/64
		{"5f00::1", false},          // SRv6 SIDs 5f00::/16
		{"64:ff9b::808:808", false}, // NAT64 64:ff9b::/96, even with a public inner address
		{"64:ff9b::a00:1", false},
		{"64:ff9b:1::a00:1", false}, // local-use NAT64 64:ff9b:1::/48
		{"::808:808", false},        // IPv4-compatible ::/96 (deprecated)
		{"::a00:1", false},
		{"::ffff:0:a00:1", false}, // IPv4-translated ::ffff:0:0:0/96
		// ... outside the special-purpose ranges within it.
		{"2000::", true},
		{"2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true}, // IETF protocol assignments 2001::/23, Teredo 2001::/32
		{"2001::", false},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false},
		{"2001:2::1", false}, // benchmarking 2001:2::/48
		{"2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", false},
		{"2001:200::", true},
		{"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", true}, // documentation 2001:db8::/32
		{"2001:db8::", false},
		{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", false},
		{"2001:db9::", true},
		{"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true}, // 6to4 2002::/16, whatever it embeds
		{"2002::", false},
		{"2002:808:808::1", false},
		{"2002:a00:1::1", false},
		{"2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false},
		{"2003::", true},
		{"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true}, // documentation 3fff::/20
		{"3fff::", false},
		{"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", false},
		{"3fff:1000::", true},
		{"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},

		// A zone makes no sense on a public address.
		{"2606:4700:4700::1111%eth0", false},
	}
	for _, tc := range tests {
		a := netip.MustParseAddr(tc.addr)
		if got := publicAddress(a); got != tc.public {
			t.Errorf("publicAddress(%s) = %v, want %v", tc.addr, got, tc.public)
		}
		// An IPv4 address mapped into IPv6 (::ffff:a.b.c.d) is judged as
		// the IPv4 address it carries.
		if a.Is4() {
			mapped := netip.AddrFrom16(a.As16())
			if got := publicAddress(mapped); got != tc.public {
				t.Errorf("publicAddress(%s) = %v, want %v (as %s)", mapped, got, tc.public, tc.addr)
			}
		}
	}
}

// TestPublicAddressDial checks the rule where the fetcher applies it: on
// the address it is about to dial, as the dialer hands it over.
func TestPublicAddressDial(t *testing.T) {
	for _, tc := range []struct {
		address string
		ok      bool
	}{
		{"8.8.8.8:443", true},
		{"[2606:4700:4700::1111]:443", true},
		{"100.64.0.1:443", false},
		{"[::ffff:10.0.0.1]:443", false},
		{"[::ffff:100.64.0.1]:443", false},
		{"[64:ff9b::a00:1]:443", false},
		{"[fe80::1%eth0]:443", false},
		{"localhost:443", false}, // not an address at all
		{"8.8.8.8", false},       // no port
	} {
		if err := dialPublicOnly("tcp", tc.address, nil); (err == nil) != tc.ok {
			t.Errorf("dialPublicOnly(%q) = %v, want ok=%v", tc.address, err, tc.ok)
		}
	}
}
