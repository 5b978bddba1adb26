package accesstoken

import "testing"

// BenchmarkVerifyWarm measures the proxy's hot path: a token seen before.
func BenchmarkVerifyWarm(b *testing.B) {
	f := newFixture(b, VerifierOptions{})
	tok := f.issue(b, f.claims())
	if _, err := f.v.Verify(tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyWarmParallel is the hot path under concurrent requests.
func BenchmarkVerifyWarmParallel(b *testing.B) {
	f := newFixture(b, VerifierOptions{})
	tokens := make([]string, 64)
	for i := range tokens {
		tokens[i] = f.issue(b, f.claims())
		if _, err := f.v.Verify(tokens[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := f.v.Verify(tokens[i%len(tokens)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkVerifyCold is a first sight: parsing and ECDSA verification.
func BenchmarkVerifyCold(b *testing.B) {
	f := newFixture(b, VerifierOptions{CacheSize: -1})
	tok := f.issue(b, f.claims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	f := newFixture(b, VerifierOptions{})
	c := f.claims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.keys.Issue(c); err != nil {
			b.Fatal(err)
		}
	}
}
