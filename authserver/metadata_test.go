package authserver_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// TestResourceMetadata: each server's RFC 9728 document is at its path
// (and only there), names the server's issuer and offered scopes, and can
// be read from any origin.
func TestResourceMetadata(t *testing.T) {
	te := newTestEdge(t)
	for _, tc := range []struct {
		path string
		want *authserver.Server // nil: not the edge's to serve
	}{
		{"/.well-known/oauth-protected-resource/support", te.support},
		{"/.well-known/oauth-protected-resource/support/", te.support},
		{"/.well-known/oauth-protected-resource/teams/ops", te.ops},
		{"/.well-known/oauth-protected-resource", nil}, // two servers: the root names none
		{"/.well-known/oauth-protected-resource/", nil},
		{"/.well-known/oauth-protected-resource/supportx", nil},
		{"/.well-known/oauth-protected-resource/support/mcp", nil},
		{"/.well-known/oauth-protected-resource/teams", nil},
	} {
		t.Run(tc.path, func(t *testing.T) {
			var md struct {
				Resource             string   `json:"resource"`
				AuthorizationServers []string `json:"authorization_servers"`
				ScopesSupported      []string `json:"scopes_supported"`
				BearerMethods        []string `json:"bearer_methods_supported"`
			}
			w := getMetadata(t, te.edge, tc.path, tc.want != nil, &md)
			if tc.want == nil {
				return
			}
			s := tc.want
			if md.Resource != publicURL+s.Path || !slices.Equal(md.AuthorizationServers, []string{publicURL + "/oauth/" + s.Name}) ||
				!slices.Equal(md.ScopesSupported, s.Rule.Offered.Tokens()) || !slices.Equal(md.BearerMethods, []string{"header"}) {
				t.Errorf("metadata %s, want server %s's", w.Body, s.Name)
			}
			wantCORS(t, w)
		})
	}
}

// TestAuthServerMetadata: each server's RFC 8414 document is found at the
// three places clients look (path-inserted, OpenID path-inserted, OpenID
// path-appended); its issuer is the URL the client built it from, and its
// endpoints are below that issuer.
func TestAuthServerMetadata(t *testing.T) {
	te := newTestEdge(t)
	for _, tc := range []struct {
		path string
		want *authserver.Server
	}{
		{"/.well-known/oauth-authorization-server/oauth/support", te.support},
		{"/.well-known/openid-configuration/oauth/support", te.support},
		{"/oauth/support/.well-known/openid-configuration", te.support},
		{"/oauth/support/.well-known/oauth-authorization-server", te.support},
		{"/.well-known/oauth-authorization-server/oauth/ops", te.ops},
		{"/.well-known/oauth-authorization-server", nil}, // two servers: the root names none
		{"/.well-known/openid-configuration", nil},
		{"/.well-known/oauth-authorization-server/oauth/unknown", nil},
		{"/.well-known/oauth-authorization-server/support", nil}, // a server's path is not its issuer
		{"/oauth/unknown/.well-known/openid-configuration", nil},
	} {
		t.Run(tc.path, func(t *testing.T) {
			var md map[string]any
			w := getMetadata(t, te.edge, tc.path, tc.want != nil, &md)
			if tc.want == nil {
				return
			}
			issuer := publicURL + "/oauth/" + tc.want.Name
			for member, want := range map[string]any{
				"issuer":                 issuer,
				"authorization_endpoint": issuer + "/authorize",
				"token_endpoint":         issuer + "/token",
				"registration_endpoint":  issuer + "/register",
				"revocation_endpoint":    issuer + "/revoke",
				"jwks_uri":               issuer + "/jwks",
				"authorization_response_iss_parameter_supported": true,
				"client_id_metadata_document_supported":          true,
			} {
				if md[member] != want {
					t.Errorf("%s = %v, want %v", member, md[member], want)
				}
			}
			for member, want := range map[string]string{
				"scopes_supported":                 tc.want.Rule.Offered.String(),
				"code_challenge_methods_supported": "S256",
				"grant_types_supported":            "authorization_code refresh_token",
				"response_types_supported":         "code",
			} {
				if got := joined(md[member]); got != want {
					t.Errorf("%s = %v, want %s", member, md[member], want)
				}
			}
			wantCORS(t, w)
		})
	}
}

// getMetadata GETs the document at path from edge. It fails the test when
// the edge serves a path it should leave to the site, or does not serve
// one it should (served), whose body it decodes into md.
func getMetadata(t *testing.T, edge *authserver.Edge, path string, served bool, md any) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	got := edge.ServeOAuth(w, httptest.NewRequest(http.MethodGet, publicURL+path, nil))
	switch {
	case !served && got:
		t.Fatalf("served %d %s, want it left to the site", w.Code, w.Body)
	case served && (!got || w.Code != http.StatusOK):
		t.Fatalf("served %v, %d %s", got, w.Code, w.Body)
	case served:
		if err := json.Unmarshal(w.Body.Bytes(), md); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// TestMetadataSingleServer: with one server the root documents are
// unambiguous, and they name that server.
func TestMetadataSingleServer(t *testing.T) {
	te := newTestEdge(t)
	only := &authserver.Server{Name: "solo", Path: "/solo", Rule: scopes.Rule{Offered: scopes.MustParse("tickets.read")}, Gateway: func() *authserver.Gateway { return te.gw }}
	edge := authserver.New(authserver.Options{PublicURL: publicURL}, []*authserver.Server{only})
	for path, want := range map[string]string{
		"/.well-known/oauth-protected-resource":   `"authorization_servers":["` + publicURL + `/oauth/solo"]`,
		"/.well-known/oauth-authorization-server": `"issuer":"` + publicURL + `/oauth/solo"`,
		"/.well-known/openid-configuration":       `"issuer":"` + publicURL + `/oauth/solo"`,
	} {
		w := httptest.NewRecorder()
		if !edge.ServeOAuth(w, httptest.NewRequest(http.MethodGet, publicURL+path, nil)) || w.Code != http.StatusOK || !strings.Contains(w.Body.String(), want) {
			t.Errorf("%s: %d %s, want %s", path, w.Code, w.Body, want)
		}
	}
}

// TestMetadataMethods: browsers' preflights are answered for every
// origin, and the documents are only read.
func TestMetadataMethods(t *testing.T) {
	te := newTestEdge(t)
	for _, path := range []string{
		"/.well-known/oauth-protected-resource/support",
		"/.well-known/oauth-authorization-server/oauth/support",
		"/oauth/support/jwks",
	} {
		t.Run(path, func(t *testing.T) {
			w := te.serve(preflight(path))
			if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Methods") != "GET, OPTIONS" {
				t.Errorf("preflight: %d, Access-Control-Allow-Methods %q", w.Code, w.Header().Get("Access-Control-Allow-Methods"))
			}
			wantCORS(t, w)

			w = te.serve(httptest.NewRequest(http.MethodPost, publicURL+path, nil))
			wantOAuthError(t, w, http.StatusMethodNotAllowed, "invalid_request")
			if allow := w.Header().Get("Allow"); allow != "GET, HEAD" {
				t.Errorf("Allow %q", allow)
			}
		})
	}
}

// TestJWKS: the gateway's public signing keys, which verify its tokens.
func TestJWKS(t *testing.T) {
	te := newTestEdge(t)
	w := te.serve(httptest.NewRequest(http.MethodGet, publicURL+"/oauth/ops/jwks", nil))
	var set struct {
		Keys []struct {
			Kty, Crv, Kid, D string
		} `json:"keys"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &set); w.Code != http.StatusOK || err != nil || len(set.Keys) == 0 {
		t.Fatalf("%d %s: %v", w.Code, w.Body, err)
	}
	for _, k := range set.Keys {
		if k.Kty != "EC" || k.Crv != "P-256" || k.Kid == "" || k.D != "" {
			t.Errorf("key %+v, want a public P-256 key with a kid", k)
		}
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/jwk-set+json" {
		t.Errorf("Content-Type %q", ct)
	}
	wantCORS(t, w)
}

// wantCORS checks that any origin may read the answer and its challenge.
func wantCORS(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Header().Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Errorf("CORS headers %v", w.Header())
	}
}

// joined is a JSON list of strings as one space-separated string.
func joined(v any) string {
	list, _ := v.([]any)
	var out []string
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return strings.Join(out, " ")
}
