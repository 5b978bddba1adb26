package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestAttacks attacks a running gateway (real Caddy, real provider, real
// MCP servers) the way an adversary would, one subtest per attack; each
// must fail, cleanly, with nothing lost. SECURITY.md lists every attack and
// the test that proves its defence, including those covered elsewhere.
func TestAttacks(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	_, challenge := testenv.PKCE()
	withPKCE := url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	victim := e.register(t, "support-assistant")
	stolen := victim.login(t, "support-assistant", "")

	// Tokens.
	t.Run("refresh token as access token", func(t *testing.T) {
		if status, challenge := challengeOf(t, e.public+"/support", stolen.RefreshToken); status != http.StatusUnauthorized || !strings.Contains(challenge, "invalid_token") {
			t.Fatalf("%d %s", status, challenge)
		}
	})
	t.Run("access token as refresh token", func(t *testing.T) {
		wantTokenError(t, victim.refresh(t, "support-assistant", stolen.AccessToken), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("downstream token presented to the gateway", func(t *testing.T) {
		res, err := e.callTool(t, "/support", stolen.AccessToken, "whoami", map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		downstream := strings.TrimPrefix(whoami(t, res).Authorization, "Bearer ")
		if _, ok := e.provider.TokenInfo(downstream); !ok {
			t.Fatal("the upstream did not get a downstream token")
		}
		if status, _ := challengeOf(t, e.public+"/support", downstream); status != http.StatusUnauthorized {
			t.Fatalf("the provider's own token was accepted by the gateway: %d", status)
		}
	})
	t.Run("oversized bearer token", func(t *testing.T) {
		if status, _ := challengeOf(t, e.public+"/support", strings.Repeat("A", accesstoken.MaxTokenBytes+1)); status != http.StatusUnauthorized {
			t.Fatalf("%d", status)
		}
	})
	t.Run("header flood", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, e.public+"/support", strings.NewReader(`{}`))
		req.Header.Set("X-Flood", strings.Repeat("x", 2<<20))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("2 MiB of headers: %d", resp.StatusCode)
			}
		}
		if status, _ := challengeOf(t, e.public+"/support", stolen.AccessToken); status != http.StatusOK {
			t.Fatalf("the gateway no longer serves after the flood: %d", status)
		}
	})

	// Authorization requests.
	t.Run("open redirect through redirect_uri", func(t *testing.T) {
		for _, evil := range []string{
			"http://127.0.0.1.evil.test:33418/callback",
			"http://127.0.0.1:33418@evil.test/callback",
			"http://evil.test@127.0.0.1:33418/callback",
			"http://127.0.0.1:33418/callback#@evil.test",
			"http://127.0.0.1:33418/callback/../../evil",
			"http://127.0.0.1:33418/%63allback",
			"http://127.0.0.1:33418/callback?next=https://evil.test",
			"https://127.0.0.1:33418/callback",
			"http://xn--80ak6aa92e.com/callback",
			"http://localhost.evil.test/callback",
			"//evil.test/callback",
			"javascript:alert(document.cookie)",
		} {
			page := victim.begin(t, "support-assistant", url.Values{"redirect_uri": {evil},
				"code_challenge": {challenge}, "code_challenge_method": {"S256"}})
			if page.URL.Host != e.public[len("http://"):] || page.Status != http.StatusBadRequest {
				t.Errorf("redirect_uri %s: the browser ended at %s with %d, want the gateway's error page", evil, page.URL, page.Status)
			}
		}
	})
	t.Run("too-short PKCE challenge", func(t *testing.T) {
		wantErrorPage(t, victim.begin(t, "support-assistant", url.Values{"code_challenge": {"abc"}, "code_challenge_method": {"S256"}}), http.StatusBadRequest, "43-character")
	})
	t.Run("consent answer replayed", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		form := c.begin(t, "support-assistant", withPKCE).Form("consent")
		if form == nil {
			t.Fatal("no consent form")
		}
		mustSubmit(t, c, form)
		page, err := c.Browser.Submit(form, "decision=approve", nil)
		if err != nil {
			t.Fatal(err)
		}
		wantErrorPage(t, page, http.StatusBadRequest, "expired or was already used")
	})
	t.Run("clickjacking the consent page", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		page := c.begin(t, "support-assistant", withPKCE)
		if page.Form("consent") == nil {
			t.Fatal("no consent form")
		}
		if page.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(page.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Fatalf("the consent page may be framed: X-Frame-Options %q, CSP %q", page.Header.Get("X-Frame-Options"), page.Header.Get("Content-Security-Policy"))
		}
	})
	t.Run("one server's scope asked at another", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		tok := c.login(t, "support-assistant", "admin.read tickets.read")
		if tok.Status != http.StatusOK || strings.Contains(tok.Scope, "admin.read") {
			t.Fatalf("support-assistant granted %q (%d)", tok.Scope, tok.Status)
		}
	})

	// Registration.
	t.Run("registration abuse", func(t *testing.T) {
		many := make([]string, 1000)
		for i := range many {
			many[i] = "http://127.0.0.1:33418/cb"
		}
		manyJSON, _ := json.Marshal(many)
		for _, tc := range []struct {
			name, body string
			status     int
			code       string
		}{
			{"not JSON", `redirect_uris=http://127.0.0.1/cb`, http.StatusBadRequest, "invalid_client_metadata"},
			{"oversized body", `{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"` + strings.Repeat("a", 70<<10) + `"}`, http.StatusRequestEntityTooLarge, "invalid_client_metadata"},
			{"thousands of redirect URIs", `{"redirect_uris":` + string(manyJSON) + `}`, http.StatusBadRequest, "invalid_redirect_uri"},
			{"absurd client name", `{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"` + strings.Repeat("a", 5000) + `"}`, http.StatusBadRequest, "invalid_client_metadata"},
			{"duplicate keys", `{"redirect_uris":["http://127.0.0.1/cb"],"redirect_uris":["https://evil.test/cb"]}`, http.StatusBadRequest, "invalid_client_metadata"},
			{"script logo", `{"redirect_uris":["http://127.0.0.1/cb"],"logo_uri":"javascript:alert(1)"}`, http.StatusBadRequest, "invalid_client_metadata"},
			{"plain-http logo", `{"redirect_uris":["http://127.0.0.1/cb"],"logo_uri":"http://evil.test/logo.png"}`, http.StatusBadRequest, "invalid_client_metadata"},
			{"http redirect off loopback", `{"redirect_uris":["http://evil.test/cb"]}`, http.StatusBadRequest, "invalid_redirect_uri"},
			{"redirect with a fragment", `{"redirect_uris":["https://app.example/cb#x"]}`, http.StatusBadRequest, "invalid_redirect_uri"},
		} {
			status, body := postRegistration(t, e, tc.body)
			if status != tc.status || body["error"] != tc.code || body["error_description"] == "" {
				t.Errorf("%s: %d %v; want %d %s with a description", tc.name, status, body, tc.status, tc.code)
			}
		}
	})
	t.Run("markup in the client name", func(t *testing.T) {
		status, reg := postRegistration(t, e, `{"redirect_uris":["http://127.0.0.1:33418/callback"],"token_endpoint_auth_method":"none",`+
			`"client_name":"<script>alert(1)</script><img src=x onerror=alert(2)>"}`)
		if status != http.StatusCreated {
			t.Fatalf("registration: %d %v", status, reg)
		}
		c := e.client(reg["client_id"].(string))
		page := c.begin(t, "support-assistant", withPKCE)
		if page.Form("consent") == nil {
			t.Fatalf("no consent page: %d", page.Status)
		}
		if strings.Contains(page.Body, "<script>alert") || strings.Contains(page.Body, "<img src=x") || !strings.Contains(page.Body, "&lt;script&gt;") {
			t.Fatalf("the client name is not escaped on the consent page:\n%s", page.Body)
		}
	})
	t.Run("metadata document on a private address", func(t *testing.T) {
		docs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Errorf("the gateway fetched %s from a loopback address", r.URL)
		}))
		defer docs.Close()
		for _, id := range []string{docs.URL + "/client.json", strings.Replace(docs.URL, "127.0.0.1", "localhost", 1) + "/client.json",
			"http://" + testenv.HostOf(docs.URL) + "/client.json"} {
			c := e.client(id)
			wantErrorPage(t, c.begin(t, "support-assistant", withPKCE), http.StatusBadRequest, "metadata document")
		}
	})

	// Token endpoint.
	t.Run("code redeemed by another client", func(t *testing.T) {
		thief := e.register(t, "support-assistant")
		code, verifier := victim.code(t, "support-assistant", nil)
		wantTokenError(t, thief.redeem(t, "support-assistant", code, verifier), http.StatusBadRequest, "invalid_grant")
		// Whether or not the attempt burnt the code, its owner gets a clear
		// answer and the thief no token.
		if got := victim.redeem(t, "support-assistant", code, verifier); got.Status != http.StatusOK && got.Error != "invalid_grant" {
			t.Fatalf("the owner's redemption: %d %s", got.Status, got.Error)
		}
	})
	t.Run("grant type the client did not register", func(t *testing.T) {
		status, reg := postRegistration(t, e, `{"redirect_uris":["http://127.0.0.1:33418/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code"]}`)
		if status != http.StatusCreated {
			t.Fatalf("registration: %d %v", status, reg)
		}
		c := e.client(reg["client_id"].(string))
		code, verifier := c.code(t, "support-assistant", nil)
		tok := c.redeem(t, "support-assistant", code, verifier)
		if tok.Status != http.StatusOK || tok.AccessToken == "" {
			t.Fatalf("the code exchange: %d %s", tok.Status, tok.Description)
		}
		if tok.RefreshToken != "" {
			t.Error("a client without the refresh_token grant got a refresh token")
		}
		wantTokenError(t, c.refresh(t, "support-assistant", stolen.RefreshToken), http.StatusBadRequest, "unauthorized_client")
	})

	// Secrets at rest and in the admin API.
	t.Run("storage holds no readable secret", func(t *testing.T) {
		status, reg := postRegistration(t, e, `{"redirect_uris":["http://127.0.0.1:33418/callback"],"token_endpoint_auth_method":"client_secret_basic"}`)
		if status != http.StatusCreated || reg["client_secret"] == nil {
			t.Fatalf("confidential registration: %d %v", status, reg)
		}
		res, err := e.callTool(t, "/support", stolen.AccessToken, "whoami", map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		secrets := map[string]string{
			"downstream access token":  strings.TrimPrefix(whoami(t, res).Authorization, "Bearer "),
			"gateway refresh token":    stolen.RefreshToken,
			"gateway access token":     stolen.AccessToken,
			"client secret":            reg["client_secret"].(string),
			"downstream client secret": testenv.DefaultClientSecret,
		}
		files := 0
		err = filepath.WalkDir(e.storage, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			files++
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for name, secret := range secrets {
				if strings.Contains(string(data), secret) {
					t.Errorf("%s is readable in %s", name, path)
				}
			}
			return nil
		})
		if err != nil || files == 0 {
			t.Fatalf("walking the storage: %v (%d files)", err, files)
		}
	})
	t.Run("admin API shows placeholders, not secrets", func(t *testing.T) {
		resp, err := http.Get("http://" + e.admin + "/config/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(body), testenv.DefaultClientSecret) || !strings.Contains(string(body), "{env.MCP_GATEWAY_TEST_SECRET}") {
			t.Fatalf("GET /config/ shows the downstream client secret or lost its placeholder:\n%s", body)
		}
	})
}

// TestMetadataDocumentAbuse serves hostile client ID metadata documents
// (from loopback, which this gateway is configured to allow): a redirect, a
// slow document and a huge one are refused with a page, and the gateway
// keeps serving.
func TestMetadataDocumentAbuse(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{}, withLines("", "allow_private_metadata_documents"))
	mux := http.NewServeMux()
	docs := httptest.NewServer(mux)
	defer docs.Close()
	doc := func(id string) []byte {
		b, _ := json.Marshal(map[string]any{"client_id": id, "redirect_uris": []string{"http://127.0.0.1:33418/callback"}, "token_endpoint_auth_method": "none"})
		return b
	}
	mux.HandleFunc("/moved.json", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/real.json", http.StatusFound)
	})
	mux.HandleFunc("/real.json", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(doc(docs.URL + "/moved.json")) })
	mux.HandleFunc("/slow.json", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	})
	mux.HandleFunc("/huge.json", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"client_id":"` + docs.URL + `/huge.json","client_name":"` + strings.Repeat("a", 1<<20) + `"}`))
	})
	_, challenge := testenv.PKCE()
	withPKCE := url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	for _, path := range []string{"/moved.json", "/slow.json", "/huge.json"} {
		c := e.client(docs.URL + path)
		start := time.Now()
		wantErrorPage(t, c.begin(t, "support-assistant", withPKCE), http.StatusBadRequest, "metadata document")
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("%s: the gateway waited %s for the document", path, took)
		}
	}
	c := e.register(t, "support-assistant")
	if tok := c.login(t, "support-assistant", ""); tok.Status != http.StatusOK {
		t.Fatalf("after the hostile documents: %d", tok.Status)
	}
}

// postRegistration sends a dynamic client registration and decodes the
// answer.
func postRegistration(t *testing.T, e *env, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(e.public+"/oauth/support-assistant/register", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("registration answer: %v", err)
	}
	return resp.StatusCode, out
}
