package authserver_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// TestAuthorizeRequestRefusals: the per-request Authorize answers a
// request without a usable token with the 401 challenge that starts
// authorization (RFC 9728 resource_metadata and the server's scopes), a
// token for another server with invalid_token, and a token without the
// scopes a server or a call needs with 403 insufficient_scope and the
// scopes to ask for.
func TestAuthorizeRequestRefusals(t *testing.T) {
	const (
		supportMetadata = `resource_metadata="` + publicURL + `/.well-known/oauth-protected-resource/support"`
		opsMetadata     = `resource_metadata="` + publicURL + `/.well-known/oauth-protected-resource/teams/ops"`
	)
	for _, tc := range []struct {
		name string
		// req makes the request and names the server it goes to.
		req    func(te *testEdge) (*http.Request, *authserver.Server)
		status int
		error  string
		// challenge is the WWW-Authenticate value, or parts of it after
		// "Bearer ", each of which it must hold.
		challenge []string
		because   string // in the error_description
	}{
		{"no token", func(te *testEdge) (*http.Request, *authserver.Server) {
			return mcpCall(te.support, "", pingBody), te.support
		}, http.StatusUnauthorized, "invalid_token", []string{`Bearer ` + supportMetadata + `, scope="accounts.read tickets.read"`}, "requires authorization"},
		{"no token, the other server", func(te *testEdge) (*http.Request, *authserver.Server) {
			return mcpCall(te.ops, "", pingBody), te.ops
		}, http.StatusUnauthorized, "invalid_token", []string{`Bearer ` + opsMetadata + `, scope="admin.read tickets.write"`}, "requires authorization"},
		{"Basic credentials", func(te *testEdge) (*http.Request, *authserver.Server) {
			r := mcpCall(te.support, "", pingBody)
			r.Header.Set("Authorization", basicAuth(publicClient, "x"))
			return r, te.support
		}, http.StatusUnauthorized, "invalid_token", []string{`Bearer ` + supportMetadata + `, scope="accounts.read tickets.read"`}, "requires authorization"},
		{"two Authorization headers", func(te *testEdge) (*http.Request, *authserver.Server) {
			r := mcpCall(te.support, te.accessToken(te.support, accesstoken.Claims{}), pingBody)
			r.Header.Add("Authorization", "Bearer other")
			return r, te.support
		}, http.StatusUnauthorized, "invalid_token", []string{`Bearer ` + supportMetadata + `, scope="accounts.read tickets.read"`}, "requires authorization"},
		{"a token that is no JWT", func(te *testEdge) (*http.Request, *authserver.Server) {
			return mcpCall(te.support, "not-a-token", pingBody), te.support
		}, http.StatusUnauthorized, "invalid_token", []string{`error="invalid_token"`, supportMetadata, `scope="accounts.read tickets.read"`}, "malformed"},
		{"a token of another gateway's key", func(te *testEdge) (*http.Request, *authserver.Server) {
			return mcpCall(te.support, foreignToken(t, te), pingBody), te.support
		}, http.StatusUnauthorized, "invalid_token", []string{`error="invalid_token"`, supportMetadata}, "a key this gateway does not have"},
		{"an expired token", func(te *testEdge) (*http.Request, *authserver.Server) {
			return mcpCall(te.support, expiredToken(t, te), pingBody), te.support
		}, http.StatusUnauthorized, "invalid_token", []string{`error="invalid_token"`, supportMetadata}, "expired"},
		{"a token for the other server", func(te *testEdge) (*http.Request, *authserver.Server) {
			return mcpCall(te.support, te.accessToken(te.ops, accesstoken.Claims{}), pingBody), te.support
		}, http.StatusUnauthorized, "invalid_token", []string{`error="invalid_token"`, supportMetadata}, "another resource"},
		{"a token of the other server's issuer", func(te *testEdge) (*http.Request, *authserver.Server) {
			return mcpCall(te.support, te.accessToken(te.support, accesstoken.Claims{Issuer: te.ops.Issuer}), pingBody), te.support
		}, http.StatusUnauthorized, "invalid_token", []string{`error="invalid_token"`, supportMetadata}, "another resource"},
		{"a token for another site", func(te *testEdge) (*http.Request, *authserver.Server) {
			return mcpCall(te.support, te.accessToken(te.support, accesstoken.Claims{Audience: "https://other.example.com/support"}), pingBody), te.support
		}, http.StatusUnauthorized, "invalid_token", []string{`error="invalid_token"`, supportMetadata}, "another resource"},
		{"a user without a downstream grant", func(te *testEdge) (*http.Request, *authserver.Server) {
			return mcpCall(te.support, te.accessToken(te.support, accesstoken.Claims{Subject: "bob"}), pingBody), te.support
		}, http.StatusUnauthorized, "invalid_token", []string{`error="invalid_token"`, supportMetadata}, "has ended"},
		{"a user whose downstream grant ended", func(te *testEdge) (*http.Request, *authserver.Server) {
			endGrant(t, te)
			return mcpCall(te.support, te.accessToken(te.support, accesstoken.Claims{}), pingBody), te.support
		}, http.StatusUnauthorized, "invalid_token", []string{`error="invalid_token"`, supportMetadata}, "has ended"},
		{"none of the server's scopes", func(te *testEdge) (*http.Request, *authserver.Server) {
			return mcpCall(te.support, te.accessToken(te.support, accesstoken.Claims{Scope: "admin.read"}), pingBody), te.support
		}, http.StatusForbidden, "insufficient_scope", []string{`error="insufficient_scope"`, `scope="accounts.read tickets.read"`, supportMetadata}, "none of the token"},
		{"a tool whose scope the token lacks", func(te *testEdge) (*http.Request, *authserver.Server) {
			return mcpCall(te.ops, te.accessToken(te.ops, accesstoken.Claims{Scope: "tickets.write"}), toolCall("restart")), te.ops
		}, http.StatusForbidden, "insufficient_scope", []string{`error="insufficient_scope"`, `scope="admin.read tickets.write"`, opsMetadata}, "restart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			r, s := tc.req(te)
			a, ok, w := te.callAuthorize(r, s)
			if ok || a.Claims != nil || a.DownstreamToken != "" {
				t.Fatalf("authorized: %+v", a)
			}
			wantOAuthError(t, w, tc.status, tc.error)
			wantCORS(t, w)
			if !strings.Contains(w.Body.String(), tc.because) {
				t.Errorf("error_description of %s does not say %q", w.Body, tc.because)
			}
			got := w.Header().Get("WWW-Authenticate")
			if len(tc.challenge) == 1 && strings.HasPrefix(tc.challenge[0], "Bearer ") {
				if got != tc.challenge[0] {
					t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge[0])
				}
				return
			}
			if !strings.HasPrefix(got, "Bearer ") {
				t.Errorf("WWW-Authenticate %q is no Bearer challenge", got)
			}
			for _, part := range tc.challenge {
				if !strings.Contains(got, part) {
					t.Errorf("WWW-Authenticate %q lacks %s", got, part)
				}
			}
		})
	}
}

// TestAuthorizeRequest: a token for the server is swapped for the user's
// downstream token narrowed to that server.
func TestAuthorizeRequest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		server     func(te *testEdge) *authserver.Server
		scope      string
		body       string
		downstream string
	}{
		{"support", func(te *testEdge) *authserver.Server { return te.support }, "tickets.read", pingBody, "support-token-" + user},
		{"ops, a call without scopes of its own", func(te *testEdge) *authserver.Server { return te.ops }, "tickets.write", toolCall("status"), "ops-token-" + user},
		{"ops, a tool the token's scope covers", func(te *testEdge) *authserver.Server { return te.ops }, "admin.read", toolCall("restart"), "ops-token-" + user},
		{"a scope beyond the server's besides its own", func(te *testEdge) *authserver.Server { return te.support }, "accounts.read admin.read", pingBody, "support-token-" + user},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			s := tc.server(te)
			a, ok, w := te.callAuthorize(mcpCall(s, te.accessToken(s, accesstoken.Claims{Scope: tc.scope}), tc.body), s)
			if !ok {
				t.Fatalf("refused: %d %s %s", w.Code, w.Header().Get("WWW-Authenticate"), w.Body)
			}
			if a.Server != s || a.Claims.Subject != user || a.Claims.Scope != tc.scope || a.DownstreamToken != tc.downstream {
				t.Errorf("access %+v, claims %+v", a, a.Claims)
			}
			if w.Code != http.StatusOK || w.Body.Len() != 0 {
				t.Errorf("wrote %d %s", w.Code, w.Body)
			}
		})
	}

	t.Run("CORS preflight", func(t *testing.T) {
		te := newTestEdge(t)
		r := preflight(te.support.Path)
		if _, ok, w := te.callAuthorize(r, te.support); ok || w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Methods") != "GET, POST, DELETE, OPTIONS" {
			t.Errorf("preflight: %v %d %v", ok, w.Code, w.Header())
		}
	})
}

// toolCall is a tools/call request of the named tool.
func toolCall(name string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
}

// foreignToken is a token for the user at support signed by a key of
// another store, as another gateway would sign it.
func foreignToken(t *testing.T, te *testEdge) string {
	t.Helper()
	keys := loadKeys(t, store.NewMemoryStore(), nil)
	return issue(t, keys, te, te.clock.Now())
}

// expiredToken is a token the gateway's own key signed an hour and a half
// ago, for an hour.
func expiredToken(t *testing.T, te *testEdge) string {
	t.Helper()
	then := te.clock.Now().Add(-90 * time.Minute)
	keys := loadKeys(t, te.store, func() time.Time { return then })
	return issue(t, keys, te, then)
}

func issue(t *testing.T, keys *accesstoken.Keyset, te *testEdge, at time.Time) string {
	t.Helper()
	tok, err := keys.Issue(accesstoken.Claims{Issuer: te.support.Issuer, Subject: user, Audience: te.support.Resource,
		Scope: "tickets.read", ClientID: publicClient, FamilyRef: "no-family", IssuedAt: at, ExpiresAt: at.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
