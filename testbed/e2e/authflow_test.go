package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestOfficialSDKClientCompletesTheFlow lets the official Go SDK's OAuth
// client discover, register, authorize (checking iss) and call a tool on
// its own; the test only plays the person in the browser.
func TestOfficialSDKClientCompletesTheFlow(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	const redirect = "http://127.0.0.1:33419/callback"
	browser := testenv.NewBrowser()
	browser.StopAt(func(u *url.URL) bool { return u.Host == "127.0.0.1:33419" })
	fetcher := func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		page, err := browser.Get(args.URL)
		if err != nil {
			return nil, err
		}
		if page, err = testenv.PassConsentAndLogin(browser, page, true); err != nil {
			return nil, err
		}
		if page.URL.Host != "127.0.0.1:33419" {
			return nil, fmt.Errorf("the flow ended at %s (status %d): %s", page.URL, page.Status, page.Body)
		}
		q := page.URL.Query()
		if q.Get("error") != "" {
			return nil, fmt.Errorf("authorization failed: %s: %s", q.Get("error"), q.Get("error_description"))
		}
		return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
	}
	handler, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs:            []string{redirect},
			ClientName:              "go-sdk client",
			GrantTypes:              []string{"authorization_code", "refresh_token"},
			ResponseTypes:           []string{"code"},
			TokenEndpointAuthMethod: "none",
		}},
		AuthorizationCodeFetcher: fetcher,
		RequestRefreshToken:      true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := mcp.NewClient(&mcp.Implementation{Name: "sdk-oauth-test", Version: "1"}, nil)
	session, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.public + "/support", OAuthHandler: handler}, nil)
	if err != nil {
		t.Fatalf("the SDK client could not connect through the gateway: %v", err)
	}
	defer session.Close()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	who := whoami(t, res)
	if who.Server != "support-assistant" {
		t.Errorf("whoami answered from %q", who.Server)
	}
	if _, ok := e.provider.TokenInfo(strings.TrimPrefix(who.Authorization, "Bearer ")); !ok {
		t.Errorf("the upstream got %q, not a token of the provider", who.Authorization)
	}
	ts, err := handler.TokenSource(ctx)
	if err != nil || ts == nil {
		t.Fatalf("no token source after the flow: %v", err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := tok.Extra("scope").(string); got != "accounts.read tickets.read" {
		t.Errorf("the SDK client got scope %q, want the server's subset", got)
	}
}

const twoGatewaysCaddyfile = `{
	admin %[1]s
	persist_config off
	storage file_system %[2]s
}

%[3]s {
	mcp_gateway {
		public_url %[3]s
		gateway acme {
			authorization_server %[4]s
			client_id acme-gateway
			client_secret acme-secret
			resource https://api.example.com
			scopes tickets.read tickets.write accounts.read admin.read
		}
		gateway globex {
			authorization_server %[5]s
			client_id globex-gateway
			client_secret globex-secret
			resource https://reports.globex.example
			scopes reports.read
		}
		server support-assistant /support {
			gateway acme
			scopes tickets.read accounts.read
			reverse_proxy %[6]s
		}
		server reports /reports {
			gateway globex
			reverse_proxy %[7]s
		}
	}
}
`

// TestTwoGatewaysStayApart declares two auth boundaries in one Caddy, each
// with its own provider: each flow reaches only its own provider with its
// own client ID, and a token of one gateway is refused by the other's
// servers.
func TestTwoGatewaysStayApart(t *testing.T) {
	e := &env{t: t, storage: t.TempDir()}
	addr, _ := testenv.FreeAddr()
	e.admin, _ = testenv.FreeAddr()
	e.public = "http://" + addr
	acme, err := testenv.StartProvider(testenv.ProviderConfig{Addr: "127.0.0.1:0", ClientID: "acme-gateway", ClientSecret: "acme-secret",
		RedirectURIs: []string{e.public + "/oauth/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	defer acme.Close()
	globex, err := testenv.StartProvider(testenv.ProviderConfig{Addr: "127.0.0.1:0", ClientID: "globex-gateway", ClientSecret: "globex-secret",
		RedirectURIs: []string{e.public + "/oauth/callback"}, Scopes: []string{"reports.read"}, Audience: "https://reports.globex.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer globex.Close()
	support, err := testenv.StartMCPServer(testenv.MCPServerConfig{Name: "support-assistant"})
	if err != nil {
		t.Fatal(err)
	}
	defer support.Close()
	reports, err := testenv.StartMCPServer(testenv.MCPServerConfig{Name: "reports"})
	if err != nil {
		t.Fatal(err)
	}
	defer reports.Close()
	cfg := fmt.Sprintf(twoGatewaysCaddyfile, e.admin, e.storage, e.public, acme.Issuer(), globex.Issuer(),
		testenv.HostOf(support.URL()), testenv.HostOf(reports.URL()))
	if err := testenv.RunCaddyfile([]byte(cfg)); err != nil {
		t.Fatal(err)
	}
	defer testenv.StopCaddy()

	acmeTok := e.register(t, "support-assistant").login(t, "support-assistant", "")
	globexTok := e.register(t, "reports").login(t, "reports", "")
	if globexTok.Scope != "reports.read" {
		t.Errorf("reports scope = %q, want the globex gateway's fallback", globexTok.Scope)
	}
	for _, p := range []struct {
		name     string
		provider *testenv.Provider
		want     string
	}{{"acme", acme, "acme-gateway"}, {"globex", globex, "globex-gateway"}} {
		if ids := slices.Compact(slices.Sorted(slices.Values(p.provider.ClientIDs()))); !slices.Equal(ids, []string{p.want}) {
			t.Errorf("provider %s saw client IDs %v, want only %s", p.name, ids, p.want)
		}
	}

	res, err := e.callTool(t, "/reports", globexTok.AccessToken, "whoami", map[string]any{})
	if err != nil {
		t.Fatalf("reports whoami: %v", err)
	}
	info, ok := globex.TokenInfo(strings.TrimPrefix(whoami(t, res).Authorization, "Bearer "))
	if !ok || !slices.Contains(info.Audience, "https://reports.globex.example") {
		t.Errorf("reports got a token globex did not issue for its audience: %+v", info)
	}
	for _, c := range []struct{ path, token string }{{"/reports", acmeTok.AccessToken}, {"/support", globexTok.AccessToken}} {
		if status := bearerStatus(t, e.public+c.path, c.token); status != http.StatusUnauthorized {
			t.Errorf("a token of the other gateway at %s: status %d, want 401", c.path, status)
		}
	}
}

// bearerStatus posts an MCP initialize request with a bearer token and
// returns the status.
func bearerStatus(t *testing.T, target, token string) int {
	t.Helper()
	status, _ := challengeOf(t, target, token)
	return status
}

// begin opens the authorize endpoint in the client's browser without
// answering anything.
func (c *client) begin(t *testing.T, server string, params url.Values) *testenv.Page {
	t.Helper()
	page, err := c.Begin(server, params)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// code runs the flow up to the authorization code and returns it with its
// verifier.
func (c *client) code(t *testing.T, server string, params url.Values) (code, verifier string) {
	t.Helper()
	code, verifier, err := c.Code(server, params)
	if err != nil {
		t.Fatal(err)
	}
	return code, verifier
}

func (c *client) redeem(t *testing.T, server, code, verifier string) tokens {
	t.Helper()
	tok, err := c.Exchange(server, code, verifier)
	return answered(t, tok, err)
}

func wantRedirectError(t *testing.T, page *testenv.Page, wantErr string) {
	t.Helper()
	q := page.URL.Query()
	if page.URL.Host != "127.0.0.1:33418" || q.Get("error") != wantErr || q.Get("error_description") == "" || q.Get("state") != "st-123" {
		t.Fatalf("want a redirect to the client with error %s, a description and the state; got %s (status %d)", wantErr, page.URL, page.Status)
	}
}

func wantErrorPage(t *testing.T, page *testenv.Page, status int, text string) {
	t.Helper()
	if page.URL.Host == "127.0.0.1:33418" {
		t.Fatalf("the gateway redirected to the client (%s); want an error page", page.URL)
	}
	if page.Status != status || !strings.Contains(page.Body, text) || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("want an HTML page %d containing %q; got %d %s:\n%s", status, text, page.Status, page.Header.Get("Content-Type"), page.Body)
	}
}

func wantTokenError(t *testing.T, tok tokens, status int, code string) {
	t.Helper()
	if tok.Status != status || tok.Error != code || tok.Description == "" || tok.AccessToken != "" {
		t.Fatalf("want %d %s with a description; got %d %q %q", status, code, tok.Status, tok.Error, tok.Description)
	}
}

// TestAuthorizationRefusals covers each way an authorization must fail, and
// how it fails: HTML pages before the user has answered (the client
// registered itself), redirect errors after, OAuth JSON errors at the
// token endpoint. TestAttacksClientTrust has the redirect errors of a
// client of the config.
func TestAuthorizationRefusals(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{}, withLines("", "allow_private_metadata_documents"))
	_, challenge := testenv.PKCE()
	withPKCE := url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}

	t.Run("missing PKCE", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		wantErrorPage(t, c.begin(t, "support-assistant", nil), http.StatusBadRequest, "invalid_request: PKCE is required")
	})
	t.Run("plain PKCE", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		page := c.begin(t, "support-assistant", url.Values{"code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"plain"}})
		wantErrorPage(t, page, http.StatusBadRequest, "plain is not accepted")
	})
	t.Run("wrong verifier", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		code, _ := c.code(t, "support-assistant", nil)
		other, _ := testenv.PKCE()
		wantTokenError(t, c.redeem(t, "support-assistant", code, other), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("unregistered redirect URI is shown, not followed", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		c.RedirectURI = "https://attacker.example/callback"
		wantErrorPage(t, c.begin(t, "support-assistant", withPKCE), http.StatusBadRequest, "Redirect URI not registered")
	})
	t.Run("loopback redirect URI on another port", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		page := c.begin(t, "support-assistant", url.Values{"redirect_uri": {"http://127.0.0.1:40123/callback"},
			"code_challenge": {challenge}, "code_challenge_method": {"S256"}})
		if page.Form("consent") == nil {
			t.Fatalf("a loopback redirect URI on another port was refused: %d %s", page.Status, page.Body)
		}
	})
	t.Run("redirect URI differs at the token endpoint", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		code, verifier := c.code(t, "support-assistant", nil)
		tok := c.token(t, "support-assistant", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {"http://127.0.0.1:33418/other"}, "code_verifier": {verifier}})
		wantTokenError(t, tok, http.StatusBadRequest, "invalid_grant")
	})
	t.Run("replayed code revokes what it issued", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		code, verifier := c.code(t, "support-assistant", nil)
		first := c.redeem(t, "support-assistant", code, verifier)
		if first.Status != http.StatusOK {
			t.Fatalf("first redemption: %d %s", first.Status, first.Description)
		}
		if status := bearerStatus(t, e.public+"/support", first.AccessToken); status != http.StatusOK {
			t.Fatalf("the fresh token was refused: %d", status)
		}
		wantTokenError(t, c.redeem(t, "support-assistant", code, verifier), http.StatusBadRequest, "invalid_grant")
		if status := bearerStatus(t, e.public+"/support", first.AccessToken); status != http.StatusUnauthorized {
			t.Errorf("the access token issued from a replayed code still works: %d", status)
		}
		ref := c.refresh(t, "support-assistant", first.RefreshToken)
		wantTokenError(t, ref, http.StatusBadRequest, "invalid_grant")
	})
	t.Run("code redeemed at another server", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		code, verifier := c.code(t, "support-assistant", nil)
		wantTokenError(t, c.redeem(t, "ops-console", code, verifier), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("unknown client", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		c.ID = "no-such-client"
		wantErrorPage(t, c.begin(t, "support-assistant", withPKCE), http.StatusBadRequest, "Unknown client")
		wantTokenError(t, c.redeem(t, "support-assistant", "x", "y"), http.StatusUnauthorized, "invalid_client")
	})
	t.Run("metadata document", func(t *testing.T) {
		mux := http.NewServeMux()
		docs := httptest.NewServer(mux)
		defer docs.Close()
		good, forged := docs.URL+"/client.json", docs.URL+"/forged.json"
		serve := func(path, clientID string) {
			mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]any{"client_id": clientID, "client_name": "Doc Client",
					"redirect_uris": []string{"http://127.0.0.1:33418/callback"}, "token_endpoint_auth_method": "none"})
			})
		}
		serve("/client.json", good)
		serve("/forged.json", good) // names another URL than its own

		c := e.register(t, "support-assistant")
		c.ID = forged
		wantErrorPage(t, c.begin(t, "support-assistant", withPKCE), http.StatusBadRequest, "document could not be used")
		c.ID = good
		tok := c.login(t, "support-assistant", "")
		if tok.Scope != "accounts.read tickets.read" {
			t.Errorf("metadata-document client got scope %q", tok.Scope)
		}
	})
	t.Run("consent CSRF", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		form := c.begin(t, "support-assistant", withPKCE).Form("consent")
		if form == nil {
			t.Fatal("no consent form")
		}
		page, err := c.Browser.Submit(form, "decision=approve", url.Values{"csrf": {"forged"}})
		if err != nil {
			t.Fatal(err)
		}
		wantErrorPage(t, page, http.StatusForbidden, "security token")
		// The same form sent from another browser (no cookie) is refused too.
		page, err = testenv.NewBrowser().Submit(form, "decision=approve", nil)
		if err != nil {
			t.Fatal(err)
		}
		wantErrorPage(t, page, http.StatusForbidden, "security token")
	})
	t.Run("denied consent", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		wantRedirectError(t, mustAnswer(t, c, c.begin(t, "support-assistant", withPKCE), false), "access_denied")
	})
	t.Run("downstream error at the callback", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		state := downstreamState(t, e, c, withPKCE)
		page, err := c.Browser.Get(e.public + "/oauth/callback?error=temporarily_unavailable&state=" + url.QueryEscape(state))
		if err != nil {
			t.Fatal(err)
		}
		wantRedirectError(t, page, "server_error")
	})
	t.Run("callback with a foreign state", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		page, err := c.Browser.Get(e.public + "/oauth/callback?code=abc&state=forged")
		if err != nil {
			t.Fatal(err)
		}
		wantErrorPage(t, page, http.StatusBadRequest, "expired or was already used")
		// A real state, completed in another browser than the one that
		// approved it, is refused as well.
		state := downstreamState(t, e, c, withPKCE)
		other := testenv.NewBrowser()
		other.StopAt(func(u *url.URL) bool { return u.Host == "127.0.0.1:33418" })
		page, err = other.Get(e.public + "/oauth/callback?code=abc&state=" + url.QueryEscape(state))
		if err != nil {
			t.Fatal(err)
		}
		wantErrorPage(t, page, http.StatusForbidden, "another browser")
	})
	t.Run("refresh rotation and grace", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		first := c.login(t, "support-assistant", "")
		second := c.refresh(t, "support-assistant", first.RefreshToken)
		if second.Status != http.StatusOK || second.RefreshToken == first.RefreshToken {
			t.Fatalf("refresh: %d %s; rotated: %v", second.Status, second.Description, second.RefreshToken != first.RefreshToken)
		}
		// A concurrent refresh that lost the race is tolerated within the
		// default 30 s grace window.
		if racing := c.refresh(t, "support-assistant", first.RefreshToken); racing.Status != http.StatusOK {
			t.Fatalf("a replay within the grace window was refused: %d %s", racing.Status, racing.Description)
		}
	})
	t.Run("a refresh may narrow but not widen", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		first := c.login(t, "support-assistant", "tickets.read")
		wide := c.token(t, "support-assistant", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken},
			"scope": {"tickets.read accounts.read"}})
		wantTokenError(t, wide, http.StatusBadRequest, "invalid_scope")
	})
	t.Run("resource forms", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		// Clients send the resource with a trailing slash, in upper case, or
		// as the bare origin; each still names this server.
		for _, resource := range []string{e.public + "/support", e.public + "/support/",
			"HTTP://" + strings.TrimPrefix(e.public, "http://") + "/support", e.public} {
			code, verifier := c.code(t, "support-assistant", url.Values{"resource": {resource}})
			if got := c.redeem(t, "support-assistant", code, verifier); got.Status != http.StatusOK {
				t.Errorf("resource %s: %d %s", resource, got.Status, got.Description)
			}
		}
		page := c.begin(t, "support-assistant", url.Values{"resource": {e.public + "/ops"},
			"code_challenge": {challenge}, "code_challenge_method": {"S256"}})
		wantErrorPage(t, page, http.StatusBadRequest, "invalid_target")
	})
}

// TestShortLifetimes covers what only the passing of time refuses: an
// expired access token, an expired authorization code, and a rotated
// refresh token presented after its grace window. The lifetimes are short
// so the waits are too. The access token is checked until it expires; a
// code or refresh token cannot be tried before then without using it up,
// so those sleep past their lifetime, and each assertion depends only on
// having slept at least that long, so a slow machine cannot make it fail.
func TestShortLifetimes(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{},
		withLines("authorization_code_lifetime 1s\n\t\trefresh_grace 1s\n\t\taccess_token_lifetime 1s", ""))

	t.Run("expired access token", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		tok := c.login(t, "support-assistant", "")
		// Seen once, so the verified-token cache holds it: expiry must
		// still apply.
		bearerStatus(t, e.public+"/support", tok.AccessToken)
		waitUntil(t, 5*time.Second, "the access token expires", func() error {
			if status, challenge := challengeOf(t, e.public+"/support", tok.AccessToken); status != http.StatusUnauthorized || !strings.Contains(challenge, "invalid_token") {
				return fmt.Errorf("an expired access token: %d %s", status, challenge)
			}
			return nil
		})
	})

	t.Run("expired code", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		code, verifier := c.code(t, "support-assistant", nil)
		time.Sleep(1500 * time.Millisecond)
		wantTokenError(t, c.redeem(t, "support-assistant", code, verifier), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("refresh reuse after grace", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		first := c.login(t, "support-assistant", "")
		second := c.refresh(t, "support-assistant", first.RefreshToken)
		if second.Status != http.StatusOK {
			t.Fatalf("refresh: %d %s", second.Status, second.Description)
		}
		time.Sleep(1500 * time.Millisecond)
		wantTokenError(t, c.refresh(t, "support-assistant", first.RefreshToken), http.StatusBadRequest, "invalid_grant")
		// Reuse revoked the whole family, including the newest token.
		wantTokenError(t, c.refresh(t, "support-assistant", second.RefreshToken), http.StatusBadRequest, "invalid_grant")
	})
}

// mustAnswer answers the consent page and, if approved, the login.
func mustAnswer(t *testing.T, c *client, page *testenv.Page, approve bool) *testenv.Page {
	t.Helper()
	page, err := testenv.PassConsentAndLogin(c.Browser, page, approve)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// downstreamState approves consent and stops at the provider's authorize
// endpoint, returning the state the gateway sent there.
func downstreamState(t *testing.T, e *env, c *client, params url.Values) string {
	t.Helper()
	providerHost := testenv.HostOf(e.provider.Issuer())
	c.Browser.StopAt(func(u *url.URL) bool { return u.Host == providerHost || u.Host == "127.0.0.1:33418" })
	defer c.Browser.StopAt(func(u *url.URL) bool { return u.Host == "127.0.0.1:33418" })
	form := c.begin(t, "support-assistant", params).Form("consent")
	if form == nil {
		t.Fatal("no consent form")
	}
	page := mustSubmit(t, c, form)
	if page.URL.Host != providerHost || page.URL.Query().Get("state") == "" {
		t.Fatalf("consent did not lead to the provider: %s", page.URL)
	}
	return page.URL.Query().Get("state")
}
