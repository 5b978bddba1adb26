package e2e_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/modelcontextprotocol/go-sdk/auth/extauth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

const (
	agentSecret = "agent-secret-0123456789"
	// idpClientSecret is the agent's secret at the enterprise identity
	// provider.
	idpClientSecret = "agent-at-idp-secret-0123456789"
	jwtBearer       = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// enterpriseEnv is a gateway that trusts an enterprise identity provider
// for client agent, and that provider, where agent signs users in.
type enterpriseEnv struct {
	*env
	idp *testenv.Provider
}

func startEnterpriseEnv(t *testing.T) *enterpriseEnv {
	t.Helper()
	idp, err := testenv.StartProvider(testenv.ProviderConfig{Addr: "127.0.0.1:0", ClientID: "agent", ClientSecret: idpClientSecret, IDJAG: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	t.Setenv("AGENT_SECRET", agentSecret)
	// The identity provider is not the downstream server: its users are
	// tied to their downstream grants by email, as the gateway names them.
	e := startEnv(t, testenv.ProviderConfig{}, withEdit(func(_ *env, caddyfile string) string {
		return strings.Replace(caddyfile, "identity claim sub", "identity claim email", 1)
	}), withLines("", `login_scopes openid offline_access email
			client agent {
				secret {env.AGENT_SECRET}
			}
			client other-agent {
				secret {env.AGENT_SECRET}
				redirect_uris http://127.0.0.1/callback
			}
			enterprise_idp `+idp.Issuer()+` {
				discovery
				clients agent
				user_claim email
			}`))
	return &enterpriseEnv{env: e, idp: idp}
}

// idToken signs the provider's first user in at the identity provider
// with agent, as the MCP client's single sign-on does.
func (e *enterpriseEnv) idToken(t *testing.T) *oauth2.Token {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, err := e.idp.SignIn(ctx, testenv.NewBrowser(), "http://127.0.0.1:1/agent-callback")
	if err != nil {
		t.Fatalf("signing in at the identity provider: %v", err)
	}
	return tok
}

// exchange trades the ID token at the identity provider for an ID-JAG for
// server, with the Go SDK's oauthex.ExchangeToken.
func (e *enterpriseEnv) exchange(t *testing.T, idToken *oauth2.Token, server, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	raw, _ := idToken.Extra("id_token").(string)
	res, err := oauthex.ExchangeToken(ctx, e.idp.Endpoint().TokenURL, &oauthex.TokenExchangeRequest{
		RequestedTokenType: oauthex.TokenTypeIDJAG,
		Audience:           e.public + "/oauth/" + server,
		Resource:           e.public + path,
		SubjectToken:       raw,
		SubjectTokenType:   oauthex.TokenTypeIDToken,
	}, &oauthex.ClientCredentials{ClientID: "agent", ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: idpClientSecret}}, nil)
	if err != nil {
		t.Fatalf("token exchange at the identity provider: %v", err)
	}
	return res.AccessToken
}

// jwtBearer redeems assertion at server's token endpoint as client id.
func (e *enterpriseEnv) jwtBearer(t *testing.T, server, assertion, id, secret string) tokens {
	t.Helper()
	form := url.Values{"grant_type": {jwtBearer}, "assertion": {assertion}, "client_id": {id}, "client_secret": {secret}}
	tok, err := testenv.ReadTokens(http.PostForm(e.public+"/oauth/"+server+"/token", form))
	return answered(t, tok, err)
}

// claims are a valid ID-JAG's claims for the default user, agent and
// support-assistant.
func (e *enterpriseEnv) claims(edit func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": e.idp.Issuer(), "sub": testenv.DefaultUser().Subject, "email": testenv.DefaultUser().Email,
		"aud": e.public + "/oauth/support-assistant", "resource": e.public + "/support",
		"client_id": "agent", "jti": rand.Text(), "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func (e *enterpriseEnv) sign(t *testing.T, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	signed, err := e.idp.SignIDJAG(header, claims)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// TestEnterpriseManagedAuthorization covers the MCP authorization
// extension io.modelcontextprotocol/enterprise-managed-authorization: a
// client signed in at the organisation's identity provider exchanges the
// user's ID token there for an ID-JAG and redeems it at the gateway for
// the server's access token, without a consent page; its calls reach the
// upstream with the user's brokered downstream token.
func TestEnterpriseManagedAuthorization(t *testing.T) {
	e := startEnterpriseEnv(t)
	idTok := e.idToken(t)

	t.Run("metadata advertises the JWT bearer grant", func(t *testing.T) {
		var md struct {
			GrantTypes []string `json:"grant_types_supported"`
		}
		if _, err := testenv.GetJSON(e.public+"/.well-known/oauth-authorization-server/oauth/support-assistant", "", &md); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(md.GrantTypes, jwtBearer) {
			t.Errorf("grant_types_supported %v lacks %s", md.GrantTypes, jwtBearer)
		}
	})

	t.Run("a user without a downstream grant is sent to the interactive flow", func(t *testing.T) {
		tok := e.jwtBearer(t, "support-assistant", e.exchange(t, idTok, "support-assistant", "/support"), "agent", agentSecret)
		wantTokenError(t, tok, http.StatusBadRequest, "invalid_grant")
		if !strings.Contains(tok.Description, e.public+"/oauth/support-assistant/authorize") {
			t.Errorf("the fall-back error does not name the authorization endpoint: %q", tok.Description)
		}
	})

	// The user authorizes the gateway once, in a browser.
	e.register(t, "support-assistant").login(t, "support-assistant", "")

	t.Run("the Go SDK's EnterpriseHandler calls a tool", func(t *testing.T) {
		h, err := extauth.NewEnterpriseHandler(&extauth.EnterpriseHandlerConfig{
			IdPIssuerURL:     e.idp.Issuer(),
			IdPCredentials:   &oauthex.ClientCredentials{ClientID: "agent", ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: idpClientSecret}},
			MCPAuthServerURL: e.public + "/oauth/support-assistant",
			MCPResourceURI:   e.public + "/support",
			MCPCredentials:   &oauthex.ClientCredentials{ClientID: "agent", ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: agentSecret}},
			MCPScopes:        []string{"tickets.read"},
			IDTokenFetcher:   func(context.Context) (*oauth2.Token, error) { return idTok, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		who, info := e.downstreamVia(t, "/support", h)
		// The user's downstream grant, narrowed to the scope the identity
		// provider vouched for.
		if info.Subject != testenv.DefaultUser().Subject || !slices.Contains(info.Scopes, "tickets.read") || slices.Contains(info.Scopes, "accounts.read") {
			t.Errorf("downstream token: %+v, want the user's narrowed to tickets.read", info)
		}
		if who.XHeaders["X-Mcp-User"] != testenv.DefaultUser().Email || who.XHeaders["X-Mcp-Scopes"] != "tickets.read" {
			t.Errorf("placeholder headers at the upstream: %v", who.XHeaders)
		}
	})

	t.Run("no scope grants what the client may have, and no refresh token", func(t *testing.T) {
		tok := e.jwtBearer(t, "support-assistant", e.exchange(t, idTok, "support-assistant", "/support"), "agent", agentSecret)
		if tok.Status != http.StatusOK || tok.Scope != "accounts.read tickets.read" || tok.RefreshToken != "" {
			t.Fatalf("token: %d %q refresh %v %s", tok.Status, tok.Scope, tok.RefreshToken != "", tok.Description)
		}
		e.downstreamOf(t, "/support", tok.AccessToken)
		if _, err := e.callTool(t, "/ops", tok.AccessToken, "whoami", map[string]any{}); err == nil {
			t.Error("a support-assistant token was accepted by ops-console")
		}
	})
}

// TestEnterpriseManagedAuthorizationRefusals: an ID-JAG is refused, with
// the OAuth error that says why, from an untrusted issuer, for another
// audience or resource, expired, replayed, with another typ, or issued to
// another client than the caller; and a client no identity provider may
// vouch for cannot use the grant.
func TestEnterpriseManagedAuthorizationRefusals(t *testing.T) {
	e := startEnterpriseEnv(t)
	e.register(t, "support-assistant").login(t, "support-assistant", "")
	if tok := e.jwtBearer(t, "support-assistant", e.sign(t, nil, e.claims(nil)), "agent", agentSecret); tok.Status != http.StatusOK {
		t.Fatalf("a valid ID-JAG: %d %s %s", tok.Status, tok.Error, tok.Description)
	}
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		assertion func() string
		client    string
		status    int
		code      string
	}{
		{name: "an untrusted issuer", assertion: func() string {
			s, err := testenv.SignIDJAG(stranger, "k1", nil, e.claims(func(c jwt.MapClaims) { c["iss"] = "https://idp.stranger.example" }))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{name: "the trusted issuer's name with another key", assertion: func() string {
			s, _ := testenv.SignIDJAG(stranger, "k1", nil, e.claims(nil))
			return s
		}},
		{name: "another audience", assertion: func() string {
			return e.sign(t, nil, e.claims(func(c jwt.MapClaims) { c["aud"] = e.public + "/oauth/ops-console" }))
		}},
		{name: "another resource", assertion: func() string {
			return e.sign(t, nil, e.claims(func(c jwt.MapClaims) { c["resource"] = e.public + "/ops" }))
		}},
		{name: "expired", assertion: func() string {
			return e.sign(t, nil, e.claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))
		}},
		{name: "an ID token's typ", assertion: func() string {
			return e.sign(t, map[string]any{"typ": "JWT"}, e.claims(nil))
		}},
		{name: "issued to another client than the caller", assertion: func() string {
			return e.sign(t, nil, e.claims(func(c jwt.MapClaims) { c["client_id"] = "other-agent" }))
		}},
		{name: "the downstream server's subject with another user's email", assertion: func() string {
			return e.sign(t, nil, e.claims(func(c jwt.MapClaims) { c["email"] = "someone-else@example.com" }))
		}},
		{name: "a subject without the user claim", assertion: func() string {
			return e.sign(t, nil, e.claims(func(c jwt.MapClaims) { delete(c, "email") }))
		}},
		{name: "an empty scope claim", code: "invalid_scope", assertion: func() string {
			return e.sign(t, nil, e.claims(func(c jwt.MapClaims) { c["scope"] = "" }))
		}},
		{name: "a scope claim of ignored scopes only", code: "invalid_scope", assertion: func() string {
			return e.sign(t, nil, e.claims(func(c jwt.MapClaims) { c["scope"] = "openid offline_access" }))
		}},
		{name: "a client the identity provider may not vouch for", client: "other-agent", code: "unauthorized_client", assertion: func() string {
			return e.sign(t, nil, e.claims(func(c jwt.MapClaims) { c["client_id"] = "other-agent" }))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, code := cmpOr(tc.client, "agent"), cmpOr(tc.code, "invalid_grant")
			wantTokenError(t, e.jwtBearer(t, "support-assistant", tc.assertion(), client, agentSecret), http.StatusBadRequest, code)
		})
	}

	t.Run("a replayed ID-JAG", func(t *testing.T) {
		signed := e.exchange(t, e.idToken(t), "support-assistant", "/support")
		if tok := e.jwtBearer(t, "support-assistant", signed, "agent", agentSecret); tok.Status != http.StatusOK {
			t.Fatalf("first use: %d %s", tok.Status, tok.Description)
		}
		wantTokenError(t, e.jwtBearer(t, "support-assistant", signed, "agent", agentSecret), http.StatusBadRequest, "invalid_grant")
	})

	t.Run("an ID-JAG for one server at another", func(t *testing.T) {
		signed := e.exchange(t, e.idToken(t), "support-assistant", "/support")
		wantTokenError(t, e.jwtBearer(t, "ops-console", signed, "agent", agentSecret), http.StatusBadRequest, "invalid_grant")
	})

	t.Run("a wrong client secret", func(t *testing.T) {
		wantTokenError(t, e.jwtBearer(t, "support-assistant", e.sign(t, nil, e.claims(nil)), "agent", "wrong"), http.StatusUnauthorized, "invalid_client")
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestEnterpriseManagedAuthorizationDownstreamExchange: where the
// enterprise identity provider is the downstream server itself and its
// enterprise_idp sets downstream_token_exchange, a user who never
// authorized the gateway in a browser is not sent to the interactive
// flow: the gateway exchanges the ID-JAG at the downstream token endpoint
// for the user's downstream grant, and the tool call carries the user's
// downstream token.
func TestEnterpriseManagedAuthorizationDownstreamExchange(t *testing.T) {
	t.Setenv("AGENT_SECRET", agentSecret)
	e := startEnv(t, testenv.ProviderConfig{IDJAG: true, IDJAGClientID: "agent"}, withLines("", `client agent {
				secret {env.AGENT_SECRET}
			}
			enterprise_idp DOWNSTREAM_ISSUER {
				discovery
				clients agent
				downstream_token_exchange
			}`), withEdit(func(e *env, caddyfile string) string {
		return strings.ReplaceAll(caddyfile, "DOWNSTREAM_ISSUER", e.provider.Issuer())
	}))
	ee := &enterpriseEnv{env: e, idp: e.provider}
	idTok := ee.idToken(t)
	// The provider has one client, which the agent plays here; the ID-JAG
	// names the agent's client ID at the gateway.
	exchange := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		raw, _ := idTok.Extra("id_token").(string)
		res, err := oauthex.ExchangeToken(ctx, e.provider.Endpoint().TokenURL, &oauthex.TokenExchangeRequest{
			RequestedTokenType: oauthex.TokenTypeIDJAG,
			Audience:           e.public + "/oauth/support-assistant",
			Resource:           e.public + "/support",
			SubjectToken:       raw,
			SubjectTokenType:   oauthex.TokenTypeIDToken,
		}, &oauthex.ClientCredentials{ClientID: testenv.DefaultClientID, ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: testenv.DefaultClientSecret}}, nil)
		if err != nil {
			t.Fatalf("token exchange at the identity provider: %v", err)
		}
		return res.AccessToken
	}

	t.Run("a user without a downstream grant gets one by the exchange", func(t *testing.T) {
		tok := ee.jwtBearer(t, "support-assistant", exchange(), "agent", agentSecret)
		if tok.Status != http.StatusOK {
			t.Fatalf("token: %d %s %s", tok.Status, tok.Error, tok.Description)
		}
		who, info := e.downstreamOf(t, "/support", tok.AccessToken)
		if info.Subject != testenv.DefaultUser().Subject || info.ClientID != testenv.DefaultClientID {
			t.Errorf("downstream token: %+v, want the user's, issued to the gateway", info)
		}
		if who.XHeaders["X-Mcp-User"] != testenv.DefaultUser().Subject {
			t.Errorf("placeholder headers at the upstream: %v", who.XHeaders)
		}
	})

	t.Run("the next ID-JAG uses the kept grant", func(t *testing.T) {
		tok := ee.jwtBearer(t, "support-assistant", exchange(), "agent", agentSecret)
		if tok.Status != http.StatusOK {
			t.Fatalf("token: %d %s %s", tok.Status, tok.Error, tok.Description)
		}
		if _, info := e.downstreamOf(t, "/support", tok.AccessToken); info.Subject != testenv.DefaultUser().Subject {
			t.Errorf("downstream token: %+v, want the user's", info)
		}
	})
}
