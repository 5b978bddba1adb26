package downstream

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// explicitConfig needs no discovery, so building URLs does no I/O.
func explicitConfig() Config {
	return Config{
		Issuer:   "https://github.com",
		ClientID: "gw",
		Endpoints: Metadata{
			AuthorizationEndpoint: "https://github.com/login/oauth/authorize",
			TokenEndpoint:         "https://github.com/login/oauth/access_token",
		},
		RedirectURL: "https://mcp.example.com/oauth/callback",
		Scopes:      []string{"tickets.read", "tickets.write"},
		LoginScopes: DefaultLoginScopes(),
	}
}

func authURL(t *testing.T, cfg Config) url.Values {
	t.Helper()
	raw, err := New(cfg).AuthCodeURL(context.Background(), "st", strings.Repeat("v", 43))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func TestAuthCodeURLAudience(t *testing.T) {
	for _, tc := range []struct {
		param              string
		resource, audience string
	}{
		{"", "https://api.example.com", ""},
		{ParamResource, "https://api.example.com", ""},
		{ParamAudience, "", "https://api.example.com"},
		{ParamNone, "", ""},
	} {
		cfg := explicitConfig()
		cfg.Resource, cfg.ResourceParam = "https://api.example.com", tc.param
		q := authURL(t, cfg)
		if q.Get("resource") != tc.resource || q.Get("audience") != tc.audience {
			t.Errorf("%q: resource %q, audience %q", tc.param, q.Get("resource"), q.Get("audience"))
		}
	}
}

func TestAuthCodeURLScopesAndParams(t *testing.T) {
	cfg := explicitConfig()
	cfg.ScopeMap = map[string][]string{"tickets.read": {"api://acme/tickets.read"}, "tickets.write": {"api://acme/tickets.write", "api://acme/tickets.read"}}
	cfg.AuthParams = map[string]string{"prompt": "consent", "access_type": "offline", "state": "forged"}
	q := authURL(t, cfg)
	if got := q.Get("scope"); got != "openid offline_access api://acme/tickets.read api://acme/tickets.write" {
		t.Errorf("scope %q", got)
	}
	if q.Get("prompt") != "consent" || q.Get("access_type") != "offline" {
		t.Errorf("extra parameters missing: %v", q)
	}
	// The gateway's own parameters win over configured ones.
	if q.Get("state") != "st" || q.Get("code_challenge_method") != "S256" || q.Get("client_id") != "gw" {
		t.Errorf("state %q, PKCE %q, client %q", q.Get("state"), q.Get("code_challenge_method"), q.Get("client_id"))
	}

	cfg.LoginScopes = nil
	if got := authURL(t, cfg).Get("scope"); got != "api://acme/tickets.read api://acme/tickets.write" {
		t.Errorf("without login scopes: scope %q", got)
	}
}

func TestMapScopes(t *testing.T) {
	c := New(Config{ScopeMap: map[string][]string{"a": {"x"}, "b": {"x", "y"}}})
	if got := c.MapScopes([]string{"a", "b", "c"}); !slices.Equal(got, []string{"x", "y", "c"}) {
		t.Errorf("MapScopes = %v", got)
	}
}

func TestScopesFor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		login []string
		names []string
		want  []string
	}{
		{"login scopes first", []string{"openid", "offline_access"}, []string{"a"}, []string{"openid", "offline_access", "x"}},
		{"mapped and kept names", []string{"openid"}, []string{"b", "c"}, []string{"openid", "x", "y", "c"}},
		{"a login scope mapped to", []string{"x"}, []string{"a", "b"}, []string{"x", "y"}},
		{"no login scopes", nil, []string{"c"}, []string{"c"}},
		{"no names", []string{"openid"}, nil, []string{"openid"}},
	} {
		c := New(Config{LoginScopes: tc.login, ScopeMap: map[string][]string{"a": {"x"}, "b": {"x", "y"}}})
		if got := c.ScopesFor(tc.names); !slices.Equal(got, tc.want) {
			t.Errorf("%s: ScopesFor(%v) = %v, want %v", tc.name, tc.names, got, tc.want)
		}
	}
}

func pemOf(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseClientKey(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	smallRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf(t, "PRIVATE KEY", der)
	}
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	for _, tc := range []struct {
		name, alg, err string
		pem            []byte
	}{
		{"RSA PKCS#8", "RS256", "", pkcs8(rsaKey)},
		{"RSA PKCS#1", "RS256", "", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))},
		{"EC SEC 1", "ES384", "", pemOf(t, "EC PRIVATE KEY", ecDER)},
		{"Ed25519", "EdDSA", "", pkcs8(edKey)},
		{"EC with its parameters", "ES384", "", append(pemOf(t, "EC PARAMETERS", []byte{6, 5, 43, 129, 4, 0, 34}), pemOf(t, "EC PRIVATE KEY", ecDER)...)},
		{"RSA with its certificate first", "RS256", "", append(certificatePEM(t, rsaKey), pkcs8(rsaKey)...)},
		{"short RSA", "", "1024-bit", pkcs8(smallRSA)},
		{"public key", "", `"PUBLIC KEY" block`, pemOf(t, "PUBLIC KEY", []byte{1})},
		{"not PEM", "", "not a PEM private key", []byte("{file./missing}")},
		{"certificate only", "", "not a PEM private key", certificatePEM(t, rsaKey)},
		{"RSA with a chain", "RS256", "", append(append(certificatePEM(t, ecKey), pkcs8(rsaKey)...), certificatePEM(t, rsaKey)...)},
		{"another key's certificate", "", "is the key's", append(pkcs8(rsaKey), certificatePEM(t, ecKey)...)},
		{"two keys", "", "two private keys", append(pkcs8(rsaKey), pkcs8(edKey)...)},
	} {
		k, err := ParseClientKey(tc.pem, "kid-1")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || k.algorithm() != tc.alg {
			t.Errorf("%s: %v, algorithm %v", tc.name, err, tc.alg)
		}
	}
}

// certificatePEM is a self-signed certificate of key's public key.
func certificatePEM(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mcp-gateway"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "CERTIFICATE", der)
}

// TestAssertionNamesCertificate: with a certificate, each assertion names
// it by its thumbprints, as Microsoft Entra ID requires.
func TestAssertionNamesCertificate(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	certPEM := certificatePEM(t, key)
	ck, err := ParseClientKey(append(pemOf(t, "PRIVATE KEY", der), certPEM...), "")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	sha1Sum, sha256Sum := sha1.Sum(block.Bytes), sha256.Sum256(block.Bytes)
	signed, err := ck.assertion("gw", "https://login.example/token", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse(signed, func(*jwt.Token) (any, error) { return key.Public(), nil }, jwt.WithValidMethods([]string{"RS256"}))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["x5t#S256"] != base64.RawURLEncoding.EncodeToString(sha256Sum[:]) || tok.Header["x5t"] != base64.RawURLEncoding.EncodeToString(sha1Sum[:]) ||
		ck.thumbprint() != tok.Header["x5t#S256"] {
		t.Errorf("assertion header %v does not name the certificate", tok.Header)
	}
	if _, hasKid := tok.Header["kid"]; hasKid {
		t.Errorf("a kid header without a key ID: %v", tok.Header)
	}
	// In a chain, given in any order, the key's own certificate is named.
	issuerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	chained, err := ParseClientKey(append(append(certificatePEM(t, issuerKey), certPEM...), pemOf(t, "PRIVATE KEY", der)...), "")
	if err != nil {
		t.Fatalf("with a chain: %v", err)
	}
	if chained.thumbprint() != ck.thumbprint() {
		t.Errorf("with a chain the thumbprint is %q, want the key's own %q", chained.thumbprint(), ck.thumbprint())
	}
}

// TestAssertion checks a private_key_jwt assertion as a server would.
func TestAssertion(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	ck, err := ParseClientKey(pemOf(t, "PRIVATE KEY", der), "kid-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ audience, want string }{
		{"", "https://github.com/login/oauth/access_token"},
		{AudienceIssuer, "https://github.com"},
		{"https://other.example/token", "https://other.example/token"},
	} {
		cfg := explicitConfig()
		cfg.ClientAuth = ClientAuth{Method: AuthPrivateKeyJWT, Key: ck, AssertionAudience: tc.audience}
		c := New(cfg)
		meta, _ := c.Metadata(context.Background())
		if style, secret := c.authStyle(meta); secret != "" || style != 1 {
			t.Errorf("private_key_jwt sends a secret or uses Basic: style %v", style)
		}
		v, err := c.assertion(meta)
		if err != nil {
			t.Fatal(err)
		}
		if v.Get("client_assertion_type") != assertionType {
			t.Errorf("client_assertion_type %q", v.Get("client_assertion_type"))
		}
		claims := jwt.MapClaims{}
		tok, err := jwt.ParseWithClaims(v.Get("client_assertion"), claims, func(*jwt.Token) (any, error) { return key.Public(), nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer("gw"), jwt.WithSubject("gw"), jwt.WithAudience(tc.want), jwt.WithExpirationRequired())
		if err != nil {
			t.Fatalf("audience %q: %v", tc.audience, err)
		}
		exp, _ := claims.GetExpirationTime()
		if tok.Header["kid"] != "kid-1" || claims["jti"] == "" || time.Until(exp.Time) > 2*time.Minute {
			t.Errorf("header %v, claims %v", tok.Header, claims)
		}
		if _, isString := claims["aud"].(string); !isString {
			t.Errorf("aud is %T, want a single string", claims["aud"])
		}
	}
}

func TestClientAuthMethodDefault(t *testing.T) {
	for _, tc := range []struct {
		secret    string
		supported []string
		want      string
	}{
		{"", nil, AuthNone},
		{"s", nil, AuthSecretBasic},
		{"s", []string{AuthSecretBasic, AuthSecretPost}, AuthSecretBasic},
		{"s", []string{AuthSecretPost, AuthPrivateKeyJWT}, AuthSecretPost},
	} {
		got := ClientAuth{Secret: tc.secret}.method(&Metadata{TokenEndpointAuthMethodsSupported: tc.supported})
		if got != tc.want {
			t.Errorf("secret %q, server supports %v: %s, want %s", tc.secret, tc.supported, got, tc.want)
		}
	}
}
