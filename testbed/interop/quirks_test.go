package interop_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestClientQuirks scripts what real MCP clients send that a strict reading
// of the specifications would refuse, and checks the gateway completes the
// flow. Quirks covered elsewhere are listed in docs/clients.md with their
// tests.
func TestClientQuirks(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	loopback := map[string]any{"client_name": "Quirky Client", "redirect_uris": []string{"http://127.0.0.1:33418/callback"},
		"token_endpoint_auth_method": "none"}

	t.Run("scope with leading and trailing spaces", func(t *testing.T) {
		c := g.register(t, "support-assistant", loopback)
		for scope, want := range map[string]string{
			"  tickets.read  ":              "tickets.read",
			" accounts.read  tickets.read ": "accounts.read tickets.read",
		} {
			tok := c.login(t, "support-assistant", url.Values{"scope": {scope}})
			if tok.Scope != want {
				t.Errorf("scope %q granted %q, want %q", scope, tok.Scope, want)
			}
		}
	})

	t.Run("the whole scopes_supported list, plus openid and offline_access", func(t *testing.T) {
		var prm, asm struct {
			ScopesSupported []string `json:"scopes_supported"`
		}
		getJSON(t, g.public+"/.well-known/oauth-protected-resource/support", &prm)
		getJSON(t, g.public+"/.well-known/oauth-authorization-server/oauth/support-assistant", &asm)
		c := g.register(t, "support-assistant", loopback)
		for _, list := range [][]string{prm.ScopesSupported, asm.ScopesSupported, append(prm.ScopesSupported, "openid", "offline_access")} {
			if len(list) == 0 {
				t.Fatal("the metadata lists no scopes_supported")
			}
			tok := c.login(t, "support-assistant", url.Values{"scope": {strings.Join(list, " ")}})
			if tok.Scope != "accounts.read tickets.read" {
				t.Errorf("asking for %v granted %q, want the server's subset", list, tok.Scope)
			}
			if status := g.mcpStatus(t, "/support", tok.AccessToken); status != http.StatusOK {
				t.Errorf("the token for %v: MCP status %d", list, status)
			}
		}
	})

	t.Run("loopback redirect URI whose port changed since registration", func(t *testing.T) {
		c := g.register(t, "support-assistant", loopback)
		moved := url.Values{"redirect_uri": {"http://127.0.0.1:40123/callback"}}
		tok := c.login(t, "support-assistant", moved)
		if status := g.mcpStatus(t, "/support", tok.AccessToken); status != http.StatusOK {
			t.Errorf("MCP status %d with the token", status)
		}
		// The code is bound to the port the authorization used.
		// (Code fails unless the flow ends at the moved redirect URI.)
		code, verifier, err := c.Code("support-assistant", moved)
		if err != nil {
			t.Fatal(err)
		}
		other := c.token(t, "support-assistant", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {c.RedirectURI}, "code_verifier": {verifier}})
		if other.Status != http.StatusBadRequest || other.Error != "invalid_grant" {
			t.Errorf("redeeming at the registered port instead of the one authorized: %d %s", other.Status, other.Error)
		}
	})

	t.Run("private-use scheme redirect (cursor://)", func(t *testing.T) {
		const redirect = "cursor://anysphere.cursor-mcp/oauth/callback"
		c := g.register(t, "ops-console", map[string]any{"client_name": "Cursor", "redirect_uris": []string{redirect},
			"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"}})
		_, challenge := testenv.PKCE()
		page, err := c.Browser.Get(c.AuthorizeURL("ops-console", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}))
		if err != nil {
			t.Fatal(err)
		}
		if page.Form("consent") == nil || !strings.Contains(page.Body, "anysphere.cursor-mcp") {
			t.Fatalf("the consent page does not name the app's redirect: %d\n%s", page.Status, page.Body)
		}
		tok := c.login(t, "ops-console", nil)
		if status := g.mcpStatus(t, "/ops", tok.AccessToken); status != http.StatusOK {
			t.Errorf("MCP status %d with the token", status)
		}
		ref := c.token(t, "ops-console", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
		if ref.Status != http.StatusOK || ref.Scope != "admin.read tickets.write" {
			t.Errorf("refresh: %d %s %s", ref.Status, ref.Error, ref.Description)
		}
	})
}

func getJSON(t *testing.T, target string, v any) {
	t.Helper()
	resp, err := testenv.GetJSON(target, "", v)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d", target, resp.StatusCode)
	}
}
