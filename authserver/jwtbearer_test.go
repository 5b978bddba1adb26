package authserver_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
)

const (
	idjagIssuer  = "https://idp.example.com"
	agentClient  = "agent"
	agentSecret  = "agent-secret-of-32-bytes-or-so..."
	publicAgent  = "public-agent"
	idjagSubject = user
)

// withEnterpriseIdP adds an enterprise identity provider to the test
// edge's gateway that vouches for the confidential client agent and for
// public-agent, a client of the config with no credential (which the
// config's validation refuses; the grant refuses it too).
func (te *testEdge) withEnterpriseIdP() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		te.t.Fatal(err)
	}
	te.gw.Clients[agentClient] = &grants.Client{ID: agentClient, SecretHash: grants.HashSecret(agentSecret), TokenEndpointAuthMethod: "client_secret_post", Source: grants.SourceConfig}
	te.gw.Clients[publicAgent] = &grants.Client{ID: publicAgent, TokenEndpointAuthMethod: "none", Source: grants.SourceConfig}
	te.gw.EnterpriseIdPs = map[string]*authserver.EnterpriseIdP{idjagIssuer: {
		Issuer: idjagIssuer, Keys: &authserver.ClientKeys{Key: &key.PublicKey}, Clients: []string{agentClient, publicAgent},
	}}
	return key
}

// idjag signs an ID-JAG of the provider for the support server and
// client, edit changing its claims.
func (te *testEdge) idjag(key *ecdsa.PrivateKey, client string, edit func(jwt.MapClaims)) string {
	now := te.clock.Now()
	c := jwt.MapClaims{
		"iss": idjagIssuer, "sub": idjagSubject,
		"aud": te.support.Issuer, "resource": te.support.Resource,
		"client_id": client, "jti": rand.Text(), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["typ"] = authserver.IDJAGType
	s, err := tok.SignedString(key)
	if err != nil {
		te.t.Fatal(err)
	}
	return s
}

func (te *testEdge) redeem(assertion string, form url.Values) *httptest.ResponseRecorder {
	form.Set("grant_type", authserver.GrantJWTBearer)
	form.Set("assertion", assertion)
	return te.serve(postForm("/oauth/support/token", form))
}

// TestJWTBearerRefusals: the JWT bearer grant refuses a public client,
// which would let whoever holds a stolen ID-JAG redeem it by client_id
// alone, and an ID-JAG whose scope claim is present but vouches for none
// of the server's scopes, which is not the absent claim's default.
func TestJWTBearerRefusals(t *testing.T) {
	te := newTestEdge(t)
	key := te.withEnterpriseIdP()
	confidential := func() url.Values { return url.Values{"client_id": {agentClient}, "client_secret": {agentSecret}} }

	t.Run("a confidential client redeems an ID-JAG", func(t *testing.T) {
		tok := wantTokens(t, te.redeem(te.idjag(key, agentClient, nil), confidential()))
		if tok.Scope != "accounts.read tickets.read" {
			t.Errorf("scope %q, want the client's default at the server", tok.Scope)
		}
	})
	t.Run("a public client by its client_id alone", func(t *testing.T) {
		w := te.redeem(te.idjag(key, publicAgent, nil), url.Values{"client_id": {publicAgent}})
		wantOAuthError(t, w, http.StatusUnauthorized, "invalid_client")
	})
	for _, scope := range []string{"", "openid", "openid offline_access"} {
		t.Run("scope claim "+strings.ReplaceAll(cmpOr(scope, "empty"), " ", "+"), func(t *testing.T) {
			w := te.redeem(te.idjag(key, agentClient, func(c jwt.MapClaims) { c["scope"] = scope }), confidential())
			wantOAuthError(t, w, http.StatusBadRequest, "invalid_scope")
		})
	}
	t.Run("scope claim narrows", func(t *testing.T) {
		tok := wantTokens(t, te.redeem(te.idjag(key, agentClient, func(c jwt.MapClaims) { c["scope"] = "openid tickets.read" }), confidential()))
		if tok.Scope != "tickets.read" {
			t.Errorf("scope %q, want tickets.read", tok.Scope)
		}
	})
}

// TestJWTBearerDownstreamExchange: with DownstreamTokenExchange, the
// ID-JAG of a user without a downstream grant is exchanged at the
// downstream token endpoint and the answer kept as the user's grant, but
// only when the downstream server answers for the same user.
func TestJWTBearerDownstreamExchange(t *testing.T) {
	// What the downstream server answers, and the exchange it got.
	var (
		mu        sync.Mutex
		exchanged url.Values
		userinfo  = "bob"
		refuse    bool
	)
	set := func(user string, refusing bool) {
		mu.Lock()
		defer mu.Unlock()
		userinfo, refuse = user, refusing
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/token":
			r.ParseForm()
			exchanged = r.PostForm
			if refuse {
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(`{"error":"invalid_grant"}`))
				return
			}
			w.Write([]byte(`{"access_token":"downstream-exchanged","token_type":"Bearer","refresh_token":"r","expires_in":3600,"scope":"openid tickets.read"}`))
		case "/userinfo":
			w.Write([]byte(`{"sub":"` + userinfo + `"}`))
		}
	}))
	defer srv.Close()
	te := newTestEdge(t)
	key := te.withEnterpriseIdP()
	te.gw.EnterpriseIdPs[idjagIssuer].DownstreamTokenExchange = true
	te.gw.Downstream = downstream.New(downstream.Config{
		ClientID:       downstreamClientID,
		ClientAuth:     downstream.ClientAuth{Secret: "gateway-secret"},
		Endpoints:      downstream.Metadata{AuthorizationEndpoint: downstreamAuthorize, TokenEndpoint: srv.URL + "/token"},
		Scopes:         te.gw.Scopes.Tokens(),
		LoginScopes:    []string{"openid", "offline_access"},
		IdentitySource: downstream.SourceUserinfo,
		IdentityClaim:  "sub",
		UserinfoURL:    srv.URL + "/userinfo",
		HTTPClient:     srv.Client(),
	})
	confidential := url.Values{"client_id": {agentClient}, "client_secret": {agentSecret}}
	bob := func(c jwt.MapClaims) { c["sub"] = "bob" }

	t.Run("the downstream server answers for another user", func(t *testing.T) {
		set("mallory", false)
		wantOAuthError(t, te.redeem(te.idjag(key, agentClient, bob), confidential), http.StatusBadRequest, "invalid_grant")
		if _, err := te.gw.Ledger.Grant(t.Context(), "bob"); err == nil {
			t.Error("a grant was kept for bob")
		}
	})
	t.Run("the downstream server refuses", func(t *testing.T) {
		set("bob", true)
		w := te.redeem(te.idjag(key, agentClient, bob), confidential)
		wantOAuthError(t, w, http.StatusBadRequest, "invalid_grant")
	})
	t.Run("the user's grant is obtained and kept", func(t *testing.T) {
		set("bob", false)
		assertion := te.idjag(key, agentClient, bob)
		wantTokens(t, te.redeem(assertion, confidential))
		mu.Lock()
		defer mu.Unlock()
		if exchanged.Get("subject_token") != assertion || exchanged.Get("subject_token_type") != downstream.TokenTypeIDJAG {
			t.Errorf("the downstream exchange: %v", exchanged)
		}
		g, err := te.gw.Ledger.Grant(t.Context(), "bob")
		if err != nil || g.Token.AccessToken != "downstream-exchanged" || g.Token.RefreshToken != "r" {
			t.Fatalf("bob's grant: %+v, %v", g, err)
		}
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
