package authserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// FuzzParseClientMetadata feeds registration bodies and metadata documents
// to the strict parser and, when it accepts one, to the client builder:
// neither may panic, and an accepted client has only valid redirect URIs.
func FuzzParseClientMetadata(f *testing.F) {
	f.Add([]byte(`{"redirect_uris":["http://127.0.0.1:3000/cb"],"client_name":"x","token_endpoint_auth_method":"none"}`))
	f.Add([]byte(`{"redirect_uris":["https://a.example/cb"],"redirect_uris":["https://b.example/cb"]}`))
	f.Add([]byte(`{"redirect_uris":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		md, err := parseClientMetadata(body)
		if err != nil {
			return
		}
		c, err := md.toClient("dynamic")
		if err != nil {
			return
		}
		for _, uri := range c.RedirectURIs {
			if err := ValidateRedirectURI(uri); err != nil {
				t.Fatalf("accepted client has an invalid redirect URI %q: %v", uri, err)
			}
		}
	})
}

// FuzzRedirectURI checks the redirect rules hold for any input: http only
// on loopback, never a fragment, and a match only for a registered URI or
// its loopback port variant.
func FuzzRedirectURI(f *testing.F) {
	f.Add("http://127.0.0.1:33418/callback", "http://127.0.0.1:1/callback")
	f.Add("https://app.example.com/cb", "https://app.example.com/cb#x")
	f.Add("cursor://x/cb", "javascript:alert(1)")
	f.Fuzz(func(t *testing.T, registered, requested string) {
		if ValidateRedirectURI(requested) == nil {
			u, _ := url.Parse(requested)
			if strings.EqualFold(u.Scheme, "http") && !isLoopbackHost(u.Hostname()) {
				t.Fatalf("http redirect URI off loopback accepted: %q", requested)
			}
			if strings.Contains(requested, "#") {
				t.Fatalf("redirect URI with a fragment accepted: %q", requested)
			}
		}
		if redirectURIMatches([]string{registered}, requested) && registered != requested {
			if !isLoopbackRedirect(registered) || !isLoopbackRedirect(requested) {
				t.Fatalf("%q matched %q without being equal or both loopback", requested, registered)
			}
		}
	})
}

// FuzzDescribe checks every description is legal in JSON and inside a
// quoted WWW-Authenticate parameter.
func FuzzDescribe(f *testing.F) {
	f.Add(`a "quoted" \ value`)
	f.Add("\x00\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		out := describe(in)
		if len(out) > maxDescription {
			t.Fatalf("description of %d bytes", len(out))
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Fatalf("illegal byte %#x in %q", c, out)
			}
		}
	})
}

// FuzzAuthorizeRequest feeds raw authorization queries to the request
// checks: a refusal before the redirect URI is trusted never names a
// redirect URI, a refusal after it names a registered one (and none at all
// for a self-registered client), and an accepted
// request carries a registered redirect URI, an S256 challenge, only the
// server's scopes and the server's own resource.
func FuzzAuthorizeRequest(f *testing.F) {
	const challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	f.Add("response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A33418%2Fcb&code_challenge=" + challenge + "&code_challenge_method=S256&scope=tickets.read&state=s")
	f.Add("response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&code_challenge=" + challenge + "&code_challenge_method=S256&resource=https%3A%2F%2FMCP.example.com%2Fsupport%2F")
	f.Add("response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1.evil.test%2Fcb&code_challenge=" + challenge + "&code_challenge_method=S256")
	f.Add("response_type=token&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_challenge=x&code_challenge_method=plain&scope=admin.write")
	f.Add("redirect_uri=cursor%3A%2F%2Fcb&response_type=code&code_challenge=" + challenge + "&code_challenge_method=S256&scope=%20openid%20tickets.read%20%20")
	offered := scopes.MustParse("tickets.read accounts.read")
	acme := &Gateway{Name: "acme"}
	s := &Server{Name: "support", Path: "/support", Rule: scopes.Rule{Offered: offered}, Gateway: func() *Gateway { return acme }}
	e := New(Options{PublicURL: "https://mcp.example.com"}, []*Server{s})
	redirects := []string{"http://127.0.0.1:33418/cb", "https://app.example/cb", "cursor://cb"}
	configured := &grants.Client{ID: "c1", RedirectURIs: redirects, Source: grants.SourceConfig}
	registered := &grants.Client{ID: "c2", RedirectURIs: redirects, Source: grants.SourceRegistered}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return
		}
		if _, refused := e.checkAuthorizeRequest(s, registered, q); refused != nil && refused.redirectURI != "" {
			t.Fatalf("a refusal is sent to a self-registered client's redirect URI %q", refused.redirectURI)
		}
		client := configured
		req, refused := e.checkAuthorizeRequest(s, client, q)
		if refused != nil {
			if req != nil {
				t.Fatal("both a request and a refusal")
			}
			if refused.redirectURI != "" && !redirectURIMatches(client.RedirectURIs, refused.redirectURI) {
				t.Fatalf("a refusal is sent to an unregistered redirect URI %q", refused.redirectURI)
			}
			if refused.redirectURI == "" && refused.title == "" {
				t.Fatal("a refusal with neither a redirect URI nor a page")
			}
			return
		}
		if !redirectURIMatches(client.RedirectURIs, req.redirectURI) {
			t.Fatalf("accepted unregistered redirect URI %q", req.redirectURI)
		}
		if !isS256Challenge(req.challenge) || q.Get("code_challenge_method") != "S256" {
			t.Fatalf("accepted challenge %q (%s)", req.challenge, q.Get("code_challenge_method"))
		}
		if !offered.ContainsAll(req.scopes) || req.scopes.Len() == 0 {
			t.Fatalf("granted %q, outside %q or empty", req.scopes, offered)
		}
		if req.resource != s.Resource {
			t.Fatalf("resource %q, want %q", req.resource, s.Resource)
		}
	})
}

// FuzzVerifyIDJAG: whatever an enterprise identity provider's assertion
// holds, verifyIDJAG neither panics nor accepts one that breaks its rule.
// The seeds are a valid ID-JAG and damaged forms of it.
func FuzzVerifyIDJAG(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Unix(1_800_000_000, 0)
	idp := &EnterpriseIdP{Issuer: "https://idp.example", Clients: []string{"agent"}}
	rule := idjagRule{
		IdPs:     map[string]*EnterpriseIdP{idp.Issuer: idp},
		Audience: "https://gw.example/oauth/support",
		Resource: "https://gw.example/support",
		ClientID: "agent",
		Key:      func(*EnterpriseIdP, string) (crypto.PublicKey, error) { return &key.PublicKey, nil },
		Now:      now,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": idp.Issuer, "sub": "u-1", "aud": rule.Audience, "resource": rule.Resource,
		"client_id": "agent", "jti": "j-1", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"scope": "tickets.read",
	})
	tok.Header["typ"] = IDJAGType
	valid, err := tok.SignedString(key)
	if err != nil {
		f.Fatal(err)
	}
	head, rest, _ := strings.Cut(valid, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	for _, seed := range []string{valid, head + "." + payload + ".", head + "." + payload, valid + ".", "." + payload + "." + sig, valid[:len(valid)-3]} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := verifyIDJAG(raw, rule)
		if err != nil {
			return
		}
		if got.IdP != idp || got.ClientID != "agent" || got.User == "" || got.ID == "" || !got.ExpiresAt.After(now) {
			t.Fatalf("accepted %q as %+v", raw, got)
		}
	})
}

// FuzzVerifyAssertion: whatever a private_key_jwt client assertion holds,
// reading its subject and verifying it neither panics nor accepts one that
// breaks its rule. The seeds are a valid assertion and damaged forms of it.
func FuzzVerifyAssertion(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Unix(1_800_000_000, 0)
	const issuer = "https://mcp.example.com/oauth/support"
	rule := assertionRule{
		ClientID:  "ci-bot",
		Audiences: []string{issuer + "/token", issuer},
		Key:       func(string) (crypto.PublicKey, error) { return &key.PublicKey, nil },
		Now:       now,
	}
	valid, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": "ci-bot", "sub": "ci-bot", "aud": issuer, "jti": "j-1",
		"iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
	}).SignedString(key)
	if err != nil {
		f.Fatal(err)
	}
	head, rest, _ := strings.Cut(valid, ".")
	payload, _, _ := strings.Cut(rest, ".")
	for _, seed := range []string{valid, head + "." + payload + ".", valid + ".", valid[:len(valid)-3]} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		_, _ = assertionSubject(raw)
		got, err := verifyAssertion(raw, rule)
		if err != nil {
			return
		}
		if got.ClientID != "ci-bot" || got.ID == "" || !got.ExpiresAt.After(now) {
			t.Fatalf("accepted %q as %+v", raw, got)
		}
	})
}
