package downstream

import (
	"testing"
	"time"
)

// FuzzParseClientKey: any PEM text either parses into a key that signs
// assertions, or is refused with an error; it never panics.
func FuzzParseClientKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, pemText []byte) {
		k, err := ParseClientKey(pemText, "kid")
		if err != nil {
			if k != nil {
				t.Fatalf("a key with error %v", err)
			}
			return
		}
		if k.algorithm() == "" {
			t.Fatal("a key without an algorithm")
		}
		if _, err := k.assertion("client", "https://as.example/token", time.Now()); err != nil {
			t.Fatalf("a parsed key does not sign: %v", err)
		}
	})
}
