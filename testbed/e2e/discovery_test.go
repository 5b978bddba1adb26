package e2e_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

func getJSON(t *testing.T, target string, v any) *http.Response {
	t.Helper()
	resp, err := testenv.GetJSON(target, "", v)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestDiscoveryDocuments fetches the metadata documents the way real
// clients do, path-inserted and path-appended, and checks what they must
// say.
func TestDiscoveryDocuments(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
	}
	resp := getJSON(t, e.public+"/.well-known/oauth-protected-resource/ops", &prm)
	if resp.StatusCode != http.StatusOK || prm.Resource != e.public+"/ops" ||
		len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != e.public+"/oauth/ops-console" ||
		strings.Join(prm.ScopesSupported, " ") != "admin.read tickets.write" {
		t.Errorf("ops-console resource metadata: %d %+v", resp.StatusCode, prm)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("resource metadata without CORS")
	}

	issuer := e.public + "/oauth/ops-console"
	for _, path := range []string{
		"/.well-known/oauth-authorization-server/oauth/ops-console",
		"/.well-known/openid-configuration/oauth/ops-console",
		"/oauth/ops-console/.well-known/openid-configuration",
		"/oauth/ops-console/.well-known/oauth-authorization-server",
	} {
		var md map[string]any
		resp := getJSON(t, e.public+path, &md)
		if resp.StatusCode != http.StatusOK || md["issuer"] != issuer {
			t.Errorf("%s: %d issuer %v, want %s", path, resp.StatusCode, md["issuer"], issuer)
			continue
		}
		methods, _ := md["code_challenge_methods_supported"].([]any)
		if len(methods) != 1 || methods[0] != "S256" || md["client_id_metadata_document_supported"] != true ||
			md["authorization_response_iss_parameter_supported"] != true || md["registration_endpoint"] != issuer+"/register" ||
			md["revocation_endpoint"] != issuer+"/revoke" || md["jwks_uri"] != issuer+"/jwks" {
			t.Errorf("%s lacks a required member: %v", path, md)
		}
		if scopes, _ := md["scopes_supported"].([]any); len(scopes) != 2 {
			t.Errorf("%s offers scopes %v, want the server's subset (never offline_access)", path, scopes)
		}
	}
	// An unknown issuer is not the gateway's to answer: it passes to the
	// next handler, which may serve other OAuth metadata on the site.
	resp, err := http.Get(e.public + "/.well-known/oauth-authorization-server/oauth/nope")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "next handler" {
		t.Errorf("metadata of an unknown server: %d %s", resp.StatusCode, body)
	}
	// ...with CORS headers, so that a browser client probing it reads the
	// answer instead of logging a blocked request.
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("metadata of an unknown server passed on without CORS headers: %v", resp.Header)
	}

	// The 401 is readable by browser clients.
	req, _ := http.NewRequest(http.MethodOptions, e.public+"/support", nil)
	req.Header.Set("Origin", "http://localhost:6274")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("CORS preflight on a server path: %d %v", resp.StatusCode, resp.Header)
	}
	resp, err = http.Post(e.public+"/support", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Error("the 401 does not expose WWW-Authenticate to browser clients")
	}
}

// TestRevocation revokes (RFC 7009) a refresh token and an access token.
func TestRevocation(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	c := e.register(t, "support-assistant")
	revoke := func(token string) int {
		resp, err := http.PostForm(e.public+"/oauth/support-assistant/revoke", url.Values{"token": {token}, "client_id": {c.ID}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	first := c.login(t, "support-assistant", "")
	if status := revoke(first.RefreshToken); status != http.StatusOK {
		t.Fatalf("revoking a refresh token: %d", status)
	}
	ref := c.refresh(t, "support-assistant", first.RefreshToken)
	wantTokenError(t, ref, http.StatusBadRequest, "invalid_grant")
	if status, _ := challengeOf(t, e.public+"/support", first.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("an access token of a revoked family still works: %d", status)
	}

	second := c.login(t, "support-assistant", "")
	if status := revoke(second.AccessToken); status != http.StatusOK {
		t.Fatalf("revoking an access token: %d", status)
	}
	if status, _ := challengeOf(t, e.public+"/support", second.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("a revoked access token still works: %d", status)
	}
	// Unknown tokens are not an error (RFC 7009 §2.2).
	if status := revoke("no-such-token"); status != http.StatusOK {
		t.Errorf("revoking an unknown token: %d", status)
	}
}
