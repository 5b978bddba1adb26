package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestAdminAPI lists gateways, grants and clients through Caddy's real
// admin endpoint, and revokes: a grant by ID, a client's grants, a client.
// Each revocation is effective at once, and no answer carries a token.
func TestAdminAPI(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	admin := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+e.admin+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	decode := func(body string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
	}

	status, body := admin(http.MethodGet, "/mcp_gateway/gateways")
	var gateways []struct {
		Name, Scopes string
		Servers      []struct{ Name, Path, Scopes string }
	}
	decode(body, &gateways)
	if status != http.StatusOK || len(gateways) != 1 || gateways[0].Name != "acme" || len(gateways[0].Servers) != 2 ||
		gateways[0].Servers[1].Scopes != "admin.read tickets.write" {
		t.Fatalf("gateways: %d %s", status, body)
	}

	a, b := e.register(t, "support-assistant"), e.register(t, "support-assistant")
	support, ops, other := a.login(t, "support-assistant", ""), a.login(t, "ops-console", ""), b.login(t, "support-assistant", "")

	type grantList struct {
		Grants []struct {
			ID, User, Server, Scopes string
			ClientID                 string `json:"client_id"`
		}
		Next string
	}
	var all grantList
	status, body = admin(http.MethodGet, "/mcp_gateway/gateways/acme/grants?user="+url.QueryEscape(testenv.DefaultUser().Subject))
	decode(body, &all)
	if status != http.StatusOK || len(all.Grants) != 3 {
		t.Fatalf("the user's grants: %d %s", status, body)
	}
	for _, g := range all.Grants {
		if g.ID == "" || g.User != testenv.DefaultUser().Subject || g.ClientID == "" || g.Server == "" || g.Scopes == "" {
			t.Fatalf("a grant lacks a field: %+v", g)
		}
	}
	for _, secret := range []string{support.AccessToken, support.RefreshToken, ops.RefreshToken, other.RefreshToken} {
		if strings.Contains(body, secret) {
			t.Fatal("the grant listing shows a token")
		}
	}
	var page grantList
	_, body = admin(http.MethodGet, "/mcp_gateway/gateways/acme/grants?limit=2")
	decode(body, &page)
	if len(page.Grants) != 2 || page.Next == "" {
		t.Fatalf("a page of two: %s", body)
	}
	_, body = admin(http.MethodGet, "/mcp_gateway/gateways/acme/grants?limit=2&after="+url.QueryEscape(page.Next))
	decode(body, &page)
	if len(page.Grants) != 1 {
		t.Fatalf("the second page: %s", body)
	}

	// Revoke a's support-assistant grant by ID: its access token stops at
	// once, its refresh token too; a's ops-console grant is untouched.
	var target string
	for _, g := range all.Grants {
		if g.ClientID == a.ID && g.Server == "support-assistant" {
			target = g.ID
		}
	}
	if status, body := admin(http.MethodDelete, "/mcp_gateway/gateways/acme/grants/"+target); status != http.StatusOK {
		t.Fatalf("revoking a grant: %d %s", status, body)
	}
	if status := bearerStatus(t, e.public+"/support", support.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("the revoked grant's access token: %d", status)
	}
	wantTokenError(t, a.refresh(t, "support-assistant", support.RefreshToken), http.StatusBadRequest, "invalid_grant")
	if status := bearerStatus(t, e.public+"/ops", ops.AccessToken); status != http.StatusOK {
		t.Errorf("another grant of the same client: %d", status)
	}

	// Revoke every grant of client b, then delete client a.
	if status, body := admin(http.MethodDelete, "/mcp_gateway/gateways/acme/grants?client_id="+url.QueryEscape(b.ID)); status != http.StatusOK || !strings.Contains(body, `"revoked":["`) {
		t.Fatalf("revoking a client's grants: %d %s", status, body)
	}
	if status := bearerStatus(t, e.public+"/support", other.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("client b's access token after its grants were revoked: %d", status)
	}
	status, body = admin(http.MethodGet, "/mcp_gateway/gateways/acme/clients")
	if status != http.StatusOK || !strings.Contains(body, a.ID) || !strings.Contains(body, b.ID) || strings.Contains(body, "secret_hash") {
		t.Fatalf("clients: %d %s", status, body)
	}
	if status, body := admin(http.MethodDelete, "/mcp_gateway/gateways/acme/clients/"+a.ID); status != http.StatusOK {
		t.Fatalf("deleting a client: %d %s", status, body)
	}
	if status := bearerStatus(t, e.public+"/ops", ops.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("the deleted client's access token: %d", status)
	}
	_, challenge := testenv.PKCE()
	wantErrorPage(t, a.begin(t, "support-assistant", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}), http.StatusBadRequest, "Unknown client")

	// Mistakes get clear errors.
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/mcp_gateway/gateways/nope/grants", http.StatusNotFound},
		{http.MethodDelete, "/mcp_gateway/gateways/acme/grants", http.StatusBadRequest},
		{http.MethodDelete, "/mcp_gateway/gateways/acme/grants/no-such-grant", http.StatusNotFound},
		{http.MethodGet, "/mcp_gateway/gateways/acme/grants?limit=0", http.StatusBadRequest},
		{http.MethodPost, "/mcp_gateway/gateways/acme/clients", http.StatusMethodNotAllowed},
	} {
		if status, body := admin(tc.method, tc.path); status != tc.status || !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s: %d %s, want %d with an error", tc.method, tc.path, status, body, tc.status)
		}
	}
}
