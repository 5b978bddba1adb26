package accesstoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var ecdsaCurve = elliptic.P256()

// forge signs arbitrary header members and claims; a nil header value
// removes the member. An ES256 signature is in low-S form, as the
// gateway's own, so that a forgery is refused for what it forges.
func forge(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for name, v := range header {
		if v == nil {
			delete(tok.Header, name)
		} else {
			tok.Header[name] = v
		}
	}
	signed, err := tok.SigningString()
	if err != nil {
		t.Fatalf("forging a token: %v", err)
	}
	sig, err := method.Sign(signed, key)
	if err != nil {
		t.Fatalf("forging a token: %v", err)
	}
	if method == jwt.SigningMethodES256 {
		toLowS(sig)
	}
	return signed + "." + tok.EncodeSegment(sig)
}

func (f *fixture) mapClaims() jwt.MapClaims {
	c := f.claims()
	return jwt.MapClaims{
		"iss": c.Issuer, "sub": c.Subject, "aud": c.Audience, "scope": c.Scope,
		"client_id": c.ClientID, "jti": "jti-1", "ref": c.FamilyRef,
		"iat": c.IssuedAt.Unix(), "nbf": c.NotBefore.Unix(), "exp": c.ExpiresAt.Unix(),
	}
}

func with(m jwt.MapClaims, name string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, val := range m {
		out[k] = val
	}
	if v == nil {
		delete(out, name)
	} else {
		out[name] = v
	}
	return out
}

func TestVerifyRefusesForgeries(t *testing.T) {
	f := newFixture(t, VerifierOptions{Leeway: 30 * time.Second})
	signer := f.keys.state.Load().signer
	own := func(header map[string]any, claims jwt.MapClaims) string {
		h := map[string]any{"typ": "at+jwt", "kid": signer.kid}
		for k, v := range header {
			h[k] = v
		}
		return forge(t, jwt.SigningMethodES256, signer.priv, h, claims)
	}
	claims := f.mapClaims()
	now := f.clock.Now()

	pubDER, err := x509.MarshalPKIXPublicKey(&signer.priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	valid := own(nil, claims)
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(
		strings.Replace(string(mustDecode(t, parts[1])), "alice@example.com", "admin@example.com", 1))) + "." + parts[2]
	// Set an unused low bit of the signature's last character (64 bytes
	// leave four): the same bytes under a second spelling.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	sig := parts[2]
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	nonCanonical := parts[0] + "." + parts[1] + "." + sig[:len(sig)-1] + string(alphabet[last+1])
	highS := highSTwin(t, &signer.priv.PublicKey, valid)

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"alg none", forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, map[string]any{"typ": "at+jwt", "kid": signer.kid}, claims), ErrBadSignature},
		{"alg none, no signature", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"`+signer.kid+`"}`)) + "." + parts[1] + ".", ErrBadSignature},
		{"HS256 with the public key as secret", forge(t, jwt.SigningMethodHS256, pubPEM, map[string]any{"typ": "at+jwt", "kid": signer.kid}, claims), ErrBadSignature},
		{"HS256 with the public key DER as secret", forge(t, jwt.SigningMethodHS256, pubDER, map[string]any{"typ": "at+jwt", "kid": signer.kid}, claims), ErrBadSignature},
		{"ES384", forge(t, jwt.SigningMethodES384, p384, map[string]any{"typ": "at+jwt", "kid": signer.kid}, claims), ErrBadSignature},
		{"another key with the same kid", forge(t, jwt.SigningMethodES256, mustKey(t), map[string]any{"typ": "at+jwt", "kid": signer.kid}, claims), ErrBadSignature},
		{"unknown kid", forge(t, jwt.SigningMethodES256, mustKey(t), map[string]any{"typ": "at+jwt", "kid": strings.Repeat("A", 43)}, claims), ErrUnknownKey},
		{"kid with path characters", own(map[string]any{"kid": "../../" + testKey}, claims), ErrUnknownKey},
		{"kid not a string", own(map[string]any{"kid": 7}, claims), ErrUnknownKey},
		{"no kid", own(map[string]any{"kid": nil}, claims), ErrUnknownKey},
		{"tampered payload", tampered, ErrBadSignature},
		{"non-canonical signature encoding", nonCanonical, ErrMalformed},
		{"high-S twin of a valid signature", highS, ErrBadSignature},
		{"expired", own(nil, with(claims, "exp", now.Add(-time.Second).Unix())), ErrExpired},
		{"expires now", own(nil, with(claims, "exp", now.Unix())), ErrExpired},
		{"nbf in the future", own(nil, with(claims, "nbf", now.Add(time.Minute).Unix())), ErrNotYetValid},
		{"iat in the future", own(nil, with(claims, "iat", now.Add(time.Minute).Unix())), ErrNotYetValid},
		{"missing exp", own(nil, with(claims, "exp", nil)), ErrMalformed},
		{"missing iat", own(nil, with(claims, "iat", nil)), ErrMalformed},
		{"missing nbf", own(nil, with(claims, "nbf", nil)), ErrMalformed},
		{"missing sub", own(nil, with(claims, "sub", nil)), ErrMalformed},
		{"exp not a number", own(nil, with(claims, "exp", "tomorrow")), ErrMalformed},
		{"aud an array", own(nil, with(claims, "aud", []string{"https://mcp.example.com/support"})), ErrMalformed},
		{"typ JWT", own(map[string]any{"typ": "JWT"}, claims), ErrMalformed},
		{"no typ", own(map[string]any{"typ": nil}, claims), ErrMalformed},
		{"critical header", own(map[string]any{"crit": []string{"exp"}}, claims), ErrMalformed},
		{"refresh-token-like opaque string", "rt_" + base64.RawURLEncoding.EncodeToString(randomBytes(t, 32)), ErrMalformed},
		{"two segments", parts[0] + "." + parts[1], ErrMalformed},
		{"four segments", valid + ".x", ErrMalformed},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("{")) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"padded signature", valid + "==", ErrMalformed},
		{"empty", "", ErrMalformed},
		{"too long", valid + strings.Repeat("A", MaxTokenBytes), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := f.v.Verify(tt.token)
			if err == nil {
				t.Fatalf("Verify accepted the forgery: %+v", c)
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v (%T), want a *VerifyError wrapping %v", err, err, tt.want)
			}
			checkDescription(t, err, tt.token)
			if n := f.v.cache.len(); n != 0 {
				t.Fatalf("a refused token entered the cache (%d entries)", n)
			}
		})
	}

	// The forgeries were refused for the stated reason, not by accident:
	// the same construction with valid parts verifies.
	for name, tok := range map[string]string{
		"own":                    valid,
		"typ application/at+jwt": own(map[string]any{"typ": "application/at+jwt"}, claims),
		"typ AT+JWT":             own(map[string]any{"typ": "AT+JWT"}, claims),
		"nbf within the leeway":  own(nil, with(claims, "nbf", now.Add(30*time.Second).Unix())),
		"iat within the leeway":  own(nil, with(claims, "iat", now.Add(30*time.Second).Unix())),
		"no family":              own(nil, with(claims, "ref", nil)),
	} {
		if _, err := f.v.Verify(tok); err != nil {
			t.Errorf("control %q: %v", name, err)
		}
	}
}

// highSTwin returns token with its signature (r, s) replaced by (r, n-s),
// its twin that plain ECDSA verification accepts too. It fails t unless
// token's own signature is in low-S form, and the twin verifies under pub.
func highSTwin(t testing.TB, pub *ecdsa.PublicKey, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	sig := mustDecode(t, parts[2])
	n := ecdsaCurve.Params().N
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if s.Cmp(new(big.Int).Rsh(n, 1)) > 0 {
		t.Fatal("the token's own signature has a high S")
	}
	s.Sub(n, s)
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, digest[:], r, s) {
		t.Fatal("the high-S twin does not verify under plain ECDSA")
	}
	twin := make([]byte, 64)
	r.FillBytes(twin[:32])
	s.FillBytes(twin[32:])
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(twin)
}

// TestIssueSignsLowS: Go's ecdsa.Sign gives a high S half of the time;
// Issue hands out the low-S form only, and its twin is refused.
func TestIssueSignsLowS(t *testing.T) {
	f := newFixture(t, VerifierOptions{CacheSize: -1})
	pub := &f.keys.state.Load().signer.priv.PublicKey
	for range 64 { // a high S slips through with probability 2^-64
		tok := f.issue(t, f.claims())
		if _, err := f.v.Verify(tok); err != nil {
			t.Fatal(err)
		}
		if _, err := f.v.Verify(highSTwin(t, pub, tok)); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("the high-S twin of an issued token: %v, want ErrBadSignature", err)
		}
	}
}

// checkDescription checks that an error can serve as an error_description
// (RFC 6750 §3: no quote, no backslash, printable ASCII) and quotes no part
// of the token.
func checkDescription(t *testing.T, err error, token string) {
	t.Helper()
	msg := err.Error()
	for _, r := range msg {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			t.Fatalf("error %q has %q, which an error_description cannot carry", msg, r)
		}
	}
	for _, part := range strings.Split(token, ".") {
		for i := 0; i+8 <= len(part); i += 8 {
			if strings.Contains(msg, part[i:i+8]) {
				t.Fatalf("error %q quotes the token", msg)
			}
		}
	}
}

func mustDecode(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyTimeWindow(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	tok := f.issue(t, f.claims()) // expires in an hour
	tests := []struct {
		advance time.Duration
		want    error
	}{
		{0, nil},
		{59 * time.Minute, nil},
		{time.Minute - time.Nanosecond, nil},
		{time.Nanosecond, ErrExpired},
		{time.Hour, ErrExpired},
	}
	for _, tt := range tests {
		f.clock.Advance(tt.advance)
		_, err := f.v.Verify(tok)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Fatalf("at %v: Verify error = %v, want %v", f.clock.Now(), err, tt.want)
		}
	}
	if n := f.v.cache.len(); n != 0 {
		t.Fatalf("the expired token is still cached (%d entries)", n)
	}
}

func TestVerifyLeewayOptions(t *testing.T) {
	tests := []struct {
		leeway time.Duration
		nbfIn  time.Duration
		want   error
	}{
		{0, DefaultLeeway, nil},
		{0, DefaultLeeway + time.Second, ErrNotYetValid},
		{-1, time.Second, ErrNotYetValid},
		{-1, 0, nil},
		{5 * time.Minute, 5 * time.Minute, nil},
	}
	for _, tt := range tests {
		f := newFixture(t, VerifierOptions{Leeway: tt.leeway})
		c := f.claims()
		c.NotBefore = c.IssuedAt.Add(tt.nbfIn)
		_, err := f.v.Verify(f.issue(t, c))
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("leeway %v, nbf in %v: Verify error = %v, want %v", tt.leeway, tt.nbfIn, err, tt.want)
		}
	}
}

func TestRevokedFamily(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	c := f.claims()
	cached := f.issue(t, c)
	if _, err := f.v.Verify(cached); err != nil {
		t.Fatal(err)
	}
	uncached := f.issue(t, c)
	c.FamilyRef = "ref-2"
	otherFamily := f.issue(t, c)

	until := f.clock.Now().Add(2 * time.Hour)
	f.v.RevokeFamily("ref-1", until)
	f.v.RevokeFamily("", until) // tokens without a family are not revoked by it
	if !f.v.familyRevoked("ref-1") || f.v.familyRevoked("ref-2") || f.v.familyRevoked("") {
		t.Fatal("familyRevoked disagrees with RevokeFamily")
	}
	for name, tok := range map[string]string{"cached": cached, "uncached": uncached} {
		_, err := f.v.Verify(tok)
		if !errors.Is(err, ErrRevoked) {
			t.Errorf("%s token of a revoked family: %v, want ErrRevoked", name, err)
		}
	}
	if _, err := f.v.Verify(otherFamily); err != nil {
		t.Errorf("token of another family: %v", err)
	}

	// An earlier until does not shorten a revocation; a later one
	// lengthens it.
	f.v.RevokeFamily("ref-1", f.clock.Now().Add(time.Minute))
	f.clock.Advance(time.Hour)
	if !f.v.familyRevoked("ref-1") {
		t.Fatal("a shorter second revocation shortened the first")
	}
	f.v.RevokeFamily("ref-1", f.clock.Now().Add(2*time.Hour))
	f.clock.Advance(time.Hour)
	if !f.v.familyRevoked("ref-1") {
		t.Fatal("a longer second revocation did not lengthen the first")
	}
	f.clock.Advance(time.Hour)
	if f.v.familyRevoked("ref-1") {
		t.Fatal("revocation outlived its until")
	}
	f.v.RevokeFamily("ref-4", f.clock.Now().Add(-time.Second))
	if f.v.familyRevoked("ref-4") {
		t.Fatal("a revocation that already lapsed took effect")
	}
}

// TestVerifyWarmAllocations: with revocations held, a warm Verify still
// allocates only the caller's copy of the claims.
func TestVerifyWarmAllocations(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	tok := f.issue(t, f.claims())
	for i := range 1000 {
		f.v.RevokeFamily(fmt.Sprint("other-", i), f.clock.Now().Add(time.Hour))
	}
	if _, err := f.v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = f.v.Verify(tok) }); allocs > 1 {
		t.Errorf("a warm Verify allocates %.0f times, want 1", allocs)
	}
}

// TestRevocationsDropLapsed: lapsed revocations are dropped as new ones
// arrive, so the set holds about as many as are in force.
func TestRevocationsDropLapsed(t *testing.T) {
	const n = 20000
	r := newRevocationSet()
	for i := range n {
		r.revoke(fmt.Sprint("early-", i), 10, 0)
	}
	for i := range n {
		r.revoke(fmt.Sprint("late-", i), 100, 20)
	}
	if held := r.len(); held > n+n/2 {
		t.Errorf("the set holds %d revocations, %d in force: the lapsed ones stay", held, n)
	}
	for i := range n {
		if ref := fmt.Sprint("late-", i); !r.revokedAt(ref, 50) {
			t.Fatalf("%s is not revoked", ref)
		}
	}
	if r.revokedAt("early-1", 20) {
		t.Error("a lapsed revocation is in force")
	}
}

func TestCacheBounded(t *testing.T) {
	for _, size := range []int{1, 7, 50} {
		f := newFixture(t, VerifierOptions{CacheSize: size})
		c := f.claims()
		for i := range size * 3 {
			// Some expire early, so that eviction sees both kinds.
			c.ExpiresAt = f.clock.Now().Add(time.Duration(1+i%5) * time.Minute)
			if _, err := f.v.Verify(f.issue(t, c)); err != nil {
				t.Fatal(err)
			}
			if n := f.v.cache.len(); n > size {
				t.Fatalf("CacheSize %d: cache holds %d tokens after %d insertions", size, n, i+1)
			}
			f.clock.Advance(10 * time.Second)
		}
	}
}

func TestCacheDisabled(t *testing.T) {
	f := newFixture(t, VerifierOptions{CacheSize: -1})
	tok := f.issue(t, f.claims())
	for range 2 {
		if _, err := f.v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if f.v.cache != nil {
		t.Fatal("a negative CacheSize left a cache")
	}
}

func TestVerifyConcurrent(t *testing.T) {
	f := newFixture(t, VerifierOptions{CacheSize: 8})
	tokens := make([]string, 16)
	for i := range tokens {
		c := f.claims()
		c.FamilyRef = string(rune('a' + i))
		tokens[i] = f.issue(t, c)
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			var err error
			for i := range 200 {
				tok := tokens[(g+i)%len(tokens)]
				if _, err = f.v.Verify(tok); err != nil {
					break
				}
				if i%50 == 0 {
					f.v.RevokeFamily("unrelated", f.clock.Now().Add(time.Hour))
				}
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := f.v.cache.len(); n > 8 {
		t.Fatalf("cache holds %d tokens, want at most 8", n)
	}
}

// TestCacheHitNeedsTheExactToken: an entry found by its hash counts only
// for the token that verified, so a hash collision is a miss.
func TestCacheHitNeedsTheExactToken(t *testing.T) {
	// Room for both entries in any shard.
	c := newCache(32)
	e := &cacheEntry{token: "verified", claims: Claims{ExpiresAt: time.Unix(0, 10)}}
	// Filed under the hash of another token, as a collision would.
	h := c.hash("forged")
	c.put(h, e, 0)
	if got := c.get(h, "forged", 1); got != nil {
		t.Fatal("a token matched an entry of another token with the same hash")
	}
	c.put(c.hash("verified"), e, 0)
	if got := c.get(c.hash("verified"), "verified", 1); got != e {
		t.Fatal("the verified token missed its entry")
	}
	if got := c.get(c.hash("verified"), "verified", 10); got != nil {
		t.Fatal("an entry served at its token's expiry")
	}
}
