package e2e_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestRateLimits floods the registration, authorization and token
// endpoints from one address, and guesses a confidential client's secret:
// each limit answers 429 with Retry-After, as JSON for clients and as a page
// for browsers, and a limit on one endpoint leaves the others alone.
func TestRateLimits(t *testing.T) {
	t.Setenv("DESKTOP_SECRET", "desk-secret")
	e := startEnv(t, testenv.ProviderConfig{}, withLines(`rate_limit {
			register 3/1h
			authorize 4/1h
			token 6/1h
			client_auth_failures 2/1h
		}`, `client desktop-app {
				secret {env.DESKTOP_SECRET}
				redirect_uris http://127.0.0.1:33418/callback
			}`))

	// Registration: three pass, the fourth is refused for about 20 minutes.
	var c *client
	for range 3 {
		c = e.register(t, "support-assistant")
	}
	resp, err := http.Post(e.public+"/oauth/support-assistant/register", "application/json",
		strings.NewReader(`{"redirect_uris":["http://127.0.0.1:33418/callback"],"token_endpoint_auth_method":"none"}`))
	if err != nil {
		t.Fatal(err)
	}
	wantTooMany(t, resp, 1000, 1200)

	// Authorization: the browser gets a page, not a redirect to the client.
	_, challenge := testenv.PKCE()
	params := url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	code, verifier := c.code(t, "support-assistant", nil) // one authorize request
	for range 3 {
		if page := c.begin(t, "support-assistant", params); page.Status == http.StatusTooManyRequests {
			t.Fatal("an authorization request within the limit was refused")
		}
	}
	page := c.begin(t, "support-assistant", params)
	wantErrorPage(t, page, http.StatusTooManyRequests, "Too many requests")
	if retry, _ := strconv.Atoi(page.Header.Get("Retry-After")); retry < 600 || retry > 900 {
		t.Errorf("the authorization page's Retry-After is %q, want about 15 minutes", page.Header.Get("Retry-After"))
	}

	// Client authentication: two wrong secrets use up the client's budget;
	// then even the right secret is refused until it refills, from any
	// address, while the public client is unaffected.
	desktop := e.client("desktop-app")
	guess := func(secret string) tokens {
		return desktop.token(t, "support-assistant", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_secret": {secret}})
	}
	wantTokenError(t, guess("wrong-1"), http.StatusUnauthorized, "invalid_client")
	wantTokenError(t, guess("wrong-2"), http.StatusUnauthorized, "invalid_client")
	wantTokenError(t, guess("desk-secret"), http.StatusTooManyRequests, "temporarily_unavailable")
	// The 429 counts as rate limited only, not also as a refused token
	// request: two refusals, then three limits (registration,
	// authorization, client authentication).
	m := scrape(t, e)
	if refused, limited := m[`caddy_mcp_gateway_tokens_total{gateway="acme",grant_type="other",result="refused",server="support-assistant"}`],
		m[`caddy_mcp_gateway_rate_limited_total{gateway="acme",server="support-assistant"}`]; refused != 2 || limited != 3 {
		t.Errorf("metrics: %v refused token requests and %v rate limited, want 2 and 3", refused, limited)
	}
	if tok := c.redeem(t, "support-assistant", code, verifier); tok.Status != http.StatusOK {
		t.Fatalf("a public client's redemption within the token limit: %d %s", tok.Status, tok.Description)
	}

	// Token endpoint: six requests from this address so far (three guesses,
	// one redemption, and these two); the seventh is refused.
	for range 2 {
		wantTokenError(t, c.refresh(t, "support-assistant", "not-a-token"), http.StatusBadRequest, "invalid_grant")
	}
	resp, err = http.PostForm(e.public+"/oauth/support-assistant/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {c.ID}})
	if err != nil {
		t.Fatal(err)
	}
	wantTooMany(t, resp, 500, 600)

	// Revocation shares the token limit; metadata is never limited.
	resp, err = http.PostForm(e.public+"/oauth/support-assistant/revoke", url.Values{"token": {"x"}, "client_id": {c.ID}})
	if err != nil {
		t.Fatal(err)
	}
	wantTooMany(t, resp, 500, 600)
	if resp, err := http.Get(e.public + "/.well-known/oauth-authorization-server/oauth/support-assistant"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata after the limits were hit: %v %v", resp, err)
	}
}

// wantTooMany checks a 429 OAuth error JSON whose Retry-After lies within
// [minSeconds, maxSeconds].
func wantTooMany(t *testing.T, resp *http.Response, minSeconds, maxSeconds int) {
	t.Helper()
	defer resp.Body.Close()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("429 body: %v", err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || body.Error != "temporarily_unavailable" || !strings.Contains(body.Description, "retry after") {
		t.Fatalf("want 429 temporarily_unavailable saying when to retry; got %d %q %q", resp.StatusCode, body.Error, body.Description)
	}
	if retry, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || retry < minSeconds || retry > maxSeconds {
		t.Errorf("Retry-After = %q, want %d to %d seconds", resp.Header.Get("Retry-After"), minSeconds, maxSeconds)
	}
}

// TestRateLimitsBehindAProxy: behind a proxy Caddy trusts, the limits
// count each forwarded client address, not the proxy's.
func TestRateLimitsBehindAProxy(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{}, withLines("rate_limit {\n\t\t\tregister 2/1h\n\t\t}", ""),
		withGlobal("servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"))
	register := func(forwardedFor string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.public+"/oauth/support-assistant/register",
			strings.NewReader(`{"redirect_uris":["http://127.0.0.1:33418/callback"],"token_endpoint_auth_method":"none"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", forwardedFor)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for range 2 {
		if resp := register("203.0.113.5"); resp.StatusCode != http.StatusCreated {
			t.Fatalf("a registration within the limit: %d", resp.StatusCode)
		}
	}
	wantTooMany(t, register("203.0.113.5"), 1, 3600)
	// Another client behind the same proxy has its own budget.
	if resp := register("203.0.113.6"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("another forwarded client was refused: %d", resp.StatusCode)
	}
}

// TestTokenEndpointsRefuseWhatTheyCannotUse: the token and revocation
// endpoints answer OAuth errors to requests they cannot use.
func TestTokenEndpointsRefuseWhatTheyCannotUse(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	c := e.register(t, "support-assistant")
	base := e.public + "/oauth/support-assistant"
	for _, tc := range []struct {
		name, method, path string
		form               url.Values
		status             int
		code               string
	}{
		{"GET at the token endpoint", http.MethodGet, "/token", nil, http.StatusMethodNotAllowed, "invalid_request"},
		{"no grant type", http.MethodPost, "/token", url.Values{"client_id": {c.ID}}, http.StatusBadRequest, "invalid_request"},
		{"password grant", http.MethodPost, "/token", url.Values{"client_id": {c.ID}, "grant_type": {"password"}, "username": {"demo"}}, http.StatusBadRequest, "unsupported_grant_type"},
		{"GET at the revocation endpoint", http.MethodGet, "/revoke", nil, http.StatusMethodNotAllowed, "invalid_request"},
		{"revocation without a token", http.MethodPost, "/revoke", url.Values{"client_id": {c.ID}}, http.StatusBadRequest, "invalid_request"},
		{"revocation by an unknown client", http.MethodPost, "/revoke", url.Values{"client_id": {"nobody"}, "token": {"x"}}, http.StatusUnauthorized, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.status || body.Error != tc.code || body.Description == "" {
				t.Errorf("%d %q %q, want %d %s with a description", resp.StatusCode, body.Error, body.Description, tc.status, tc.code)
			}
			if tc.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "POST" {
				t.Errorf("405 with Allow %q, want POST", resp.Header.Get("Allow"))
			}
		})
	}
}
