package e2e_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestPreregisteredClientAndRememberedConsent uses a client declared in
// the config (confidential, limited to one server) and checks when the
// consent page is asked again.
func TestPreregisteredClientAndRememberedConsent(t *testing.T) {
	t.Setenv("DESKTOP_SECRET", "desk-secret")
	e := startEnv(t, testenv.ProviderConfig{}, withLines("", `client desktop-app {
				secret {env.DESKTOP_SECRET}
				name "Desktop App"
				redirect_uris http://127.0.0.1:33418/callback
				servers support-assistant
			}`))
	c := e.client("desktop-app")

	_, challenge := testenv.PKCE()
	page := c.begin(t, "support-assistant", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "scope": {"tickets.read"}})
	if page.Form("consent") == nil {
		t.Fatalf("no consent page for the first authorization: %d", page.Status)
	}
	code, verifier := c.code(t, "support-assistant", url.Values{"scope": {"tickets.read"}})
	redeem := func(secret string) tokens {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.RedirectURI}, "code_verifier": {verifier}}
		if secret != "" {
			form.Set("client_secret", secret)
		}
		return c.token(t, "support-assistant", form)
	}
	wantTokenError(t, redeem(""), http.StatusUnauthorized, "invalid_client")
	wantTokenError(t, redeem("wrong"), http.StatusUnauthorized, "invalid_client")
	if tok := redeem("desk-secret"); tok.Status != http.StatusOK || tok.Scope != "tickets.read" {
		t.Fatalf("the pre-registered client's token: %d %q %s", tok.Status, tok.Scope, tok.Description)
	}

	// The same scopes again: consent is remembered. A wider request asks
	// again.
	if page := c.begin(t, "support-assistant", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "scope": {"tickets.read"}}); page.Form("consent") != nil {
		t.Error("the consent page asked again for the same client, server and scopes")
	}
	if page := c.begin(t, "support-assistant", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "scope": {"tickets.read accounts.read"}}); page.Form("consent") == nil {
		t.Error("a wider scope request did not ask for consent again")
	}

	// The client is limited to support-assistant.
	wantRedirectError(t, c.begin(t, "ops-console", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}), "unauthorized_client")
}
