package accesstoken

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

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

// BenchmarkRevokeFamily revokes one more family with 10 and with 100 000
// revoked already, and revokes again one revoked already (a replayed code
// does): each costs the same whatever the number held.
func BenchmarkRevokeFamily(b *testing.B) {
	for _, held := range []int{10, 100000} {
		f := newFixture(b, VerifierOptions{})
		until := f.clock.Now().Add(time.Hour)
		for i := range held {
			f.v.RevokeFamily("held-"+strconv.Itoa(i), until)
		}
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f.v.RevokeFamily("new-"+strconv.Itoa(i), until)
				i++
			}
		})
		b.Run(fmt.Sprintf("held=%d/again", held), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f.v.RevokeFamily("held-1", until)
			}
		})
	}
}
