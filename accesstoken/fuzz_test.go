package accesstoken

import (
	"errors"
	"testing"
)

// FuzzVerify checks that Verify never panics, accepts no token but the one
// genuinely issued, refuses everything else with a *VerifyError fit for an
// error_description, and caches nothing it refused.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, VerifierOptions{CacheSize: 4})
	genuine := fx.issue(f, fx.claims())
	f.Add(genuine)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := fx.v.Verify(token)
		if token == genuine {
			if err != nil {
				t.Fatalf("the genuine token was refused: %v", err)
			}
			return
		}
		if err == nil {
			t.Fatalf("Verify accepted %q: %+v", token, c)
		}
		var ve *VerifyError
		if !errors.As(err, &ve) {
			t.Fatalf("Verify error %v is a %T, not a *VerifyError", err, err)
		}
		checkDescription(t, err, token)
		if n := fx.v.cache.len(); n > 1 {
			t.Fatalf("the cache holds %d tokens; only the genuine one may enter", n)
		}
	})
}
