package interop_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestAccountPage has a person in headless Chromium sign in on the
// connected-apps page, see both applications that hold a grant of theirs
// (by name, how they identified themselves, server, scopes in words), and
// revoke one: its access token is refused at once (401) and its refresh
// token too, while the other application keeps working. With
// MCP_GATEWAY_SCREENSHOT=1 it saves the page to docs/img/account.png.
func TestAccountPage(t *testing.T) {
	g, chromium := startBrowserGateway(t)
	redirect, _ := redirectTarget(t)
	params := url.Values{"scope": {"tickets.read accounts.read"}, "resource": {g.public + "/support"}}
	login := func(name string) (*client, tokens) {
		c := g.register(t, "support-assistant", map[string]any{"client_name": name, "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none"})
		return c, c.login(t, "support-assistant", params)
	}
	desktop, desktopTokens := login("Acme Desktop")
	_, botTokens := login("Ticket Bot")
	for name, tok := range map[string]tokens{"Acme Desktop": desktopTokens, "Ticket Bot": botTokens} {
		if status := g.mcpStatus(t, "/support", tok.AccessToken); status != http.StatusOK {
			t.Fatalf("%s before the revocation: MCP status %d", name, status)
		}
	}

	shows, _ := json.Marshal([]string{"Acme Desktop", "Ticket Bot", "Registered itself", "support-assistant",
		"Read your support tickets", "tickets.read", "See your account details", "Signed in as " + testenv.DefaultUser().Subject})
	out := runChromium(t, chromium, "account.png", "account.mjs", g.public+"/oauth/account", string(shows), "Acme Desktop")
	if !strings.Contains(out, "REVOKED Acme Desktop") {
		t.Fatalf("the browser did not revoke Acme Desktop:\n%s", out)
	}
	if !strings.Contains(out, `"title":"Connected apps · Acme Support"`) {
		t.Errorf("the page's title lacks the product name:\n%s", out)
	}

	if status := g.mcpStatus(t, "/support", desktopTokens.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("the revoked application's access token: MCP status %d, want 401", status)
	}
	if tok := desktop.token(t, "support-assistant", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {desktopTokens.RefreshToken}}); tok.Status == http.StatusOK || tok.Error != "invalid_grant" {
		t.Errorf("the revoked application's refresh: %d %s, want invalid_grant", tok.Status, tok.Error)
	}
	if status := g.mcpStatus(t, "/support", botTokens.AccessToken); status != http.StatusOK {
		t.Errorf("the other application after the revocation: MCP status %d, want 200", status)
	}
}
