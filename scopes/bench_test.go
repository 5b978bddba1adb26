package scopes

import "testing"

// The scope work of the gateway: parsing a requested scope string and
// resolving it against a server's subset happen at the authorization and
// token endpoints; a membership test runs on every proxied request (does
// the token still hold a scope the server offers?).

func BenchmarkResolve(b *testing.B) {
	benchmarks := []struct {
		name      string
		strict    bool
		requested string
	}{
		{"exact", false, "tickets.read accounts.read"},
		{"fallback", false, ""},
		{"narrowed", false, "tickets.read tickets.write accounts.read admin.read openid"},
		{"refused", false, "tickets.write admin.read"},
		{"strict refused", true, "tickets.read tickets.write accounts.read admin.read openid"},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			r := Rule{
				Offered: MustParse("tickets.read accounts.read"),
				Strict:  bm.strict,
				Ignore:  MustParse("openid offline_access"),
			}
			requested := MustParse(bm.requested)
			b.ReportAllocs()
			for b.Loop() {
				_, _ = r.Resolve(requested)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Parse(" tickets.read tickets.write accounts.read admin.read openid offline_access")
	}
}

// BenchmarkParseResolve is what the authorization endpoint does with a
// scope parameter.
func BenchmarkParseResolve(b *testing.B) {
	r := Rule{Offered: MustParse("tickets.read accounts.read"), Ignore: MustParse("openid offline_access")}
	b.ReportAllocs()
	for b.Loop() {
		requested, err := Parse("openid tickets.read admin.read")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Resolve(requested); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkContains is the per-request check of a token's scope against
// the server's offer.
func BenchmarkContains(b *testing.B) {
	offered := MustParse("tickets.read accounts.read")
	b.ReportAllocs()
	for b.Loop() {
		if !offered.Contains("tickets.read") || offered.Contains("admin.read") {
			b.Fatal("wrong membership")
		}
	}
}
