package authserver

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/jwk"
)

// TestVerifyAssertion: what a client assertion must be to authenticate
// its client (RFC 7523 §3), each rule broken once.
func TestVerifyAssertion(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Unix(1_800_000_000, 0)
	const (
		client   = "ci-bot"
		issuer   = "https://mcp.example.com/oauth/support"
		endpoint = issuer + "/token"
	)
	valid := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": client, "sub": client, "aud": issuer, "jti": "j-1",
			"iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix()}
	}
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := valid()
		edit(c)
		return c
	}
	sign := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		t.Helper()
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name   string
		token  string
		pub    crypto.PublicKey // default ecKey's
		refuse string           // a part of the error; empty: accepted
	}{
		{name: "ES256 with the issuer as aud", token: sign(jwt.SigningMethodES256, ecKey, valid())},
		{name: "aud the token endpoint", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["aud"] = endpoint }))},
		{name: "aud an array naming it", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["aud"] = []string{"https://other", endpoint} }))},
		{name: "RS256", token: sign(jwt.SigningMethodRS256, rsaKey, valid()), pub: &rsaKey.PublicKey},
		{name: "PS256", token: sign(jwt.SigningMethodPS256, rsaKey, valid()), pub: &rsaKey.PublicKey},
		{name: "EdDSA", token: sign(jwt.SigningMethodEdDSA, edKey, valid()), pub: edKey.Public()},
		{name: "without iat", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { delete(c, "iat") }))},
		{name: "expired a moment ago, within the leeway", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() }))},

		{name: "signed by another key", token: sign(jwt.SigningMethodES256, otherKey, valid()), refuse: "signature"},
		{name: "HS256", token: sign(jwt.SigningMethodHS256, []byte("secret"), valid()), refuse: "alg"},
		{name: "alg none", token: sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid()), refuse: "alg"},
		{name: "an RSA key's signature with an EC key configured", token: sign(jwt.SigningMethodRS256, rsaKey, valid()), refuse: "signature"},
		{name: "another audience", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["aud"] = "https://mcp.example.com/oauth/ops" })), refuse: "audience"},
		{name: "the issuer with a trailing slash", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["aud"] = issuer + "/" })), refuse: "audience"},
		{name: "no aud", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { delete(c, "aud") })), refuse: "audience"},
		{name: "iss another client", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["iss"] = "other" })), refuse: "iss and sub"},
		{name: "sub another client", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["sub"] = "other" })), refuse: "iss and sub"},
		{name: "no exp", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { delete(c, "exp") })), refuse: "no exp"},
		{name: "expired", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), refuse: "expired"},
		{name: "exp too far ahead", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["exp"] = now.Add(time.Hour).Unix() })), refuse: "ahead"},
		{name: "nbf in the future", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), refuse: "not valid yet"},
		{name: "iat in the future", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() })), refuse: "not valid yet"},
		{name: "no jti", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { delete(c, "jti") })), refuse: "no jti"},
		{name: "a jti of 1 KiB", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["jti"] = strings.Repeat("j", 1024) })), refuse: "jti"},
		{name: "larger than 8 KiB", token: sign(jwt.SigningMethodES256, ecKey, with(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("p", 9<<10) })), refuse: "larger"},
		{name: "not a JWT", token: "not.a.jwt", refuse: "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := tc.pub
			if pub == nil {
				pub = &ecKey.PublicKey
			}
			a, err := verifyAssertion(tc.token, assertionRule{
				ClientID:  client,
				Audiences: []string{endpoint, issuer},
				Key:       func(string) (crypto.PublicKey, error) { return pub, nil },
				Now:       now,
			})
			switch {
			case tc.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refuse == "" && (a.ClientID != client || a.ID == "" || a.ExpiresAt.IsZero()):
				t.Fatalf("accepted as %+v", a)
			case tc.refuse != "" && err == nil:
				t.Fatal("accepted")
			case tc.refuse != "" && !strings.Contains(err.Error(), tc.refuse):
				t.Fatalf("refused with %q, want it to say %q", err, tc.refuse)
			}
		})
	}
}

// TestClientKeysJWKS: a client's JWKS URL is read once, again for a kid
// it lacks (at most every jwksRefetch), and kept while the URL fails.
func TestClientKeysJWKS(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub1, _ := jwk.Public("one", "ES256", &k1.PublicKey)
	pub2, _ := jwk.Public("two", "ES256", &k2.PublicKey)
	var (
		fetches atomic.Int32
		body    atomic.Value
		down    atomic.Bool
	)
	body.Store(jwk.Set{Keys: []jwk.Key{pub1}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body.Load())
	}))
	defer srv.Close()
	keys := &ClientKeys{JWKSURL: srv.URL, HTTPClient: srv.Client()}
	now := time.Unix(1_800_000_000, 0)
	ctx := context.Background()

	if got, err := keys.key(ctx, "one", now); err != nil || !k1.PublicKey.Equal(got) {
		t.Fatalf("kid one: %v %v", got, err)
	}
	if _, err := keys.key(ctx, "", now); err != nil {
		t.Errorf("no kid with one key in the set: %v", err)
	}
	// A new key: not fetched again within jwksRefetch, then fetched.
	body.Store(jwk.Set{Keys: []jwk.Key{pub1, pub2}})
	if _, err := keys.key(ctx, "two", now.Add(time.Second)); err == nil {
		t.Error("kid two found without a fetch")
	}
	if got, err := keys.key(ctx, "two", now.Add(jwksRefetch)); err != nil || !k2.PublicKey.Equal(got) {
		t.Fatalf("kid two after the refetch interval: %v %v", got, err)
	}
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
	// The URL fails: the keys held keep verifying.
	down.Store(true)
	if _, err := keys.key(ctx, "one", now.Add(jwksTTL+jwksRefetch)); err != nil {
		t.Errorf("a known key while the URL is down: %v", err)
	}
	if _, err := keys.key(ctx, "three", now.Add(2*jwksTTL)); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("an unknown kid while the URL is down: %v", err)
	}
}
