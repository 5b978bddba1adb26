package authserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerifyIDJAG(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Unix(1_800_000_000, 0)
	idp := &EnterpriseIdP{Issuer: "https://idp.example", Clients: []string{"agent"}}
	byEmail := &EnterpriseIdP{Issuer: "https://email.example", Clients: []string{"agent"}, UserClaim: "email"}
	stranger := &EnterpriseIdP{Issuer: "https://stranger.example", Clients: []string{"someone-else"}}
	rule := idjagRule{
		IdPs:     map[string]*EnterpriseIdP{idp.Issuer: idp, byEmail.Issuer: byEmail, stranger.Issuer: stranger},
		Audience: "https://gw.example/oauth/support",
		Resource: "https://gw.example/support",
		ClientID: "agent",
		Key:      func(*EnterpriseIdP, string) (crypto.PublicKey, error) { return &key.PublicKey, nil },
		Now:      now,
	}
	valid := func() jwt.MapClaims {
		return jwt.MapClaims{
			"iss": idp.Issuer, "sub": "u-1", "email": "ada@example.com",
			"aud": "https://gw.example/oauth/support", "resource": "https://gw.example/support",
			"client_id": "agent", "jti": "j-1", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
			"scope": "tickets.read",
		}
	}
	sign := func(typ string, claims jwt.MapClaims, k *ecdsa.PrivateKey) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
		tok.Header["typ"] = typ
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := valid()
		edit(c)
		return c
	}
	hsTok := jwt.NewWithClaims(jwt.SigningMethodHS256, valid())
	hsTok.Header["typ"] = IDJAGType
	hs, _ := hsTok.SignedString([]byte("shared-secret-of-32-bytes-length"))
	for _, tc := range []struct {
		name, raw, want string // want: "" accepted, else a fragment of the error
		user, scope     string
	}{
		{name: "valid", raw: sign(IDJAGType, valid(), key), user: "u-1", scope: "tickets.read"},
		{name: "typ with application/ prefix", raw: sign("application/"+IDJAGType, valid(), key), user: "u-1", scope: "tickets.read"},
		{name: "aud with a trailing slash", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { c["aud"] = []string{"x", "https://gw.example/oauth/support/"} }), key), user: "u-1", scope: "tickets.read"},
		{name: "user by another claim", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { c["iss"] = byEmail.Issuer }), key), user: "ada@example.com", scope: "tickets.read"},
		{name: "no scope", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { delete(c, "scope") }), key), user: "u-1"},
		{name: "an ID token's typ", raw: sign("JWT", valid(), key), want: "typ must be"},
		{name: "no typ", raw: sign("", valid(), key), want: "typ must be"},
		{name: "untrusted issuer", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), key), want: "not an identity provider"},
		{name: "another key", raw: sign(IDJAGType, valid(), other), want: "signature"},
		{name: "HS256", raw: hs, want: "alg"},
		{name: "another audience", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { c["aud"] = "https://gw.example/oauth/ops" }), key), want: "another audience"},
		{name: "another resource", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { c["resource"] = "https://gw.example/ops" }), key), want: "another resource"},
		{name: "no resource", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { delete(c, "resource") }), key), want: "another resource"},
		{name: "another client", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { c["client_id"] = "other" }), key), want: "another client"},
		{name: "a client the issuer may not vouch for", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { c["iss"] = stranger.Issuer }), key), want: "may not vouch"},
		{name: "expired", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), key), want: "expired"},
		{name: "no exp", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { delete(c, "exp") }), key), want: "no exp"},
		{name: "exp too far", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { c["exp"] = now.Add(2 * time.Hour).Unix() }), key), want: "ahead"},
		{name: "no iat", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { delete(c, "iat") }), key), want: "no iat"},
		{name: "iat in the future", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }), key), want: "not valid yet"},
		{name: "no jti", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { delete(c, "jti") }), key), want: "no jti"},
		{name: "no sub", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { delete(c, "sub") }), key), want: "no sub"},
		{name: "no user claim", raw: sign(IDJAGType, with(func(c jwt.MapClaims) { c["iss"] = byEmail.Issuer; delete(c, "email") }), key), want: "no email"},
		{name: "not a JWT", raw: "abc", want: "not a JWT"},
		{name: "too large", raw: strings.Repeat("a", maxIDJAGBytes+1), want: "larger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := verifyIDJAG(tc.raw, rule)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want %q", err, tc.want)
			case tc.want == "" && (got.User != tc.user || got.Scope != tc.scope || got.ClientID != "agent" || got.ID != "j-1"):
				t.Fatalf("got %+v, want user %q scope %q", got, tc.user, tc.scope)
			}
		})
	}
}

// TestDiscoverJWKS: a jwks_uri found by discovery is checked as a
// configured one is: an absolute http(s) URL, https off loopback.
func TestDiscoverJWKS(t *testing.T) {
	for _, tc := range []struct{ jwksURI, want string }{
		{jwksURI: "https://idp.example/jwks"},
		{jwksURI: "http://127.0.0.1:9/jwks"},
		{jwksURI: "file:///etc/passwd", want: "absolute http(s) URL"},
		{jwksURI: "http://idp.example/jwks", want: "use https"},
		{jwksURI: "/jwks", want: "absolute http(s) URL"},
		{jwksURI: "file:///{x}", want: "not a URL"},
	} {
		t.Run(tc.jwksURI, func(t *testing.T) {
			var issuer string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(map[string]string{"issuer": issuer, "jwks_uri": tc.jwksURI})
			}))
			defer srv.Close()
			issuer = srv.URL
			got, err := DiscoverJWKS(issuer)(t.Context(), srv.Client())
			switch {
			case tc.want == "" && (err != nil || got != tc.jwksURI):
				t.Errorf("got %q, %v; want %q", got, err, tc.jwksURI)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %q, %v; want an error with %q", got, err, tc.want)
			}
		})
	}
}
