package authserver

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Browser clients probe discovery URLs that name no server (the root ones of
// a site with several servers); whoever answers them, the answer must be
// readable cross-origin, or the browser logs a blocked request.
func TestDiscoveryOfNoServerIsReadableCrossOrigin(t *testing.T) {
	e := New(Options{PublicURL: "https://mcp.example.com"}, []*Server{
		{Name: "support", Path: "/support"},
		{Name: "ops", Path: "/ops"},
	})
	for _, path := range []string{
		"/.well-known/oauth-protected-resource",
		"/.well-known/oauth-protected-resource/nope",
		"/.well-known/oauth-authorization-server",
		"/.well-known/oauth-authorization-server/oauth/nope",
		"/.well-known/openid-configuration",
	} {
		t.Run(path, func(t *testing.T) {
			w := httptest.NewRecorder()
			if e.ServeOAuth(w, httptest.NewRequest(http.MethodGet, path, nil)) {
				t.Fatalf("answered %d itself; the next handler may serve this URL", w.Code)
			}
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("passed on without CORS headers (Access-Control-Allow-Origin %q)", got)
			}

			w = httptest.NewRecorder()
			preflight := httptest.NewRequest(http.MethodOptions, path, nil)
			preflight.Header.Set("Origin", "http://localhost:6274")
			preflight.Header.Set("Access-Control-Request-Method", "GET")
			preflight.Header.Set("Access-Control-Request-Headers", "mcp-protocol-version")
			if served := e.ServeOAuth(w, preflight); !served || w.Code != http.StatusNoContent {
				t.Fatalf("preflight: answered by the edge %v, status %d; want the edge's 204", served, w.Code)
			}
			if w.Header().Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("preflight without Access-Control-Allow-Origin: %v", w.Header())
			}
		})
	}
}
