package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestAttacksClientTrust attacks what the gateway believes of clients that
// introduced themselves (dynamic registration, client ID metadata
// documents): their redirect URIs are not followed before the user has
// answered, their names do not pass for another application's, and their
// documents leave nothing fetched on the gateway's pages.
func TestAttacksClientTrust(t *testing.T) {
	mux := http.NewServeMux()
	docs := httptest.NewServer(mux)
	defer docs.Close()
	docsHost := testenv.HostOf(docs.URL)
	serveDoc := func(path string, doc map[string]any) string {
		id := docs.URL + path
		if _, ok := doc["client_id"]; !ok {
			doc["client_id"] = id
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc)
		})
		return id
	}

	// The documents are served from loopback, which only
	// allow_private_metadata_documents lets the gateway fetch; the
	// configured client keeps the redirects that self-registered ones lose.
	gatewayLines := `allow_private_metadata_documents
			client desktop-app {
				name "Desktop App"
				redirect_uris https://app.example/callback
			}`
	e := startEnv(t, testenv.ProviderConfig{}, withLines("", gatewayLines))
	gatewayHost := testenv.HostOf(e.public)
	_, challenge := testenv.PKCE()
	withPKCE := url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	refusals := []struct {
		name   string
		params url.Values
	}{
		{"response_type token", url.Values{"response_type": {"token"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}},
		{"no PKCE", url.Values{}},
		{"plain PKCE", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"plain"}}},
		{"foreign resource", url.Values{"resource": {e.public + "/ops"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}},
	}

	t.Run("refusals before consent are no redirect to a self-registered client", func(t *testing.T) {
		reg, err := testenv.RegisterClient(nil, e.public, "support-assistant", map[string]any{
			"redirect_uris": []string{"https://evil.example/land"}, "client_name": "Evil", "token_endpoint_auth_method": "none",
		})
		if err != nil {
			t.Fatal(err)
		}
		registered := &client{reg}
		docClient := &client{testenv.NewOAuthClient(e.public, serveDoc("/evil.json", map[string]any{
			"client_name": "Evil Doc", "redirect_uris": []string{"https://evil.example/doc"}, "token_endpoint_auth_method": "none",
		}), "https://evil.example/doc")}
		for _, c := range []*client{registered, docClient} {
			for _, tc := range refusals {
				page := c.begin(t, "support-assistant", tc.params)
				if page.URL.Host != gatewayHost || page.Header.Get("Location") != "" || page.Status != http.StatusBadRequest ||
					!strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
					t.Errorf("client %s, %s: the browser ended at %s (%d, Location %q); want the gateway's HTML error page",
						c.ID, tc.name, page.URL.Redacted(), page.Status, page.Header.Get("Location"))
				}
			}
		}

		// Once the user has answered, the answer goes back to the client.
		form := registered.begin(t, "support-assistant", withPKCE).Form("consent")
		if form == nil {
			t.Fatal("no consent page for a well-formed request")
		}
		page, err := registered.Browser.Submit(form, "decision=deny", nil)
		if err != nil {
			t.Fatal(err)
		}
		if page.URL.Host != "evil.example" || page.URL.Query().Get("error") != "access_denied" {
			t.Errorf("a denied consent ended at %s; want access_denied at the client's redirect URI", page.URL.Redacted())
		}
	})

	t.Run("a configured client still gets its refusals at its redirect URI", func(t *testing.T) {
		c := &client{testenv.NewOAuthClient(e.public, "desktop-app", "https://app.example/callback")}
		for _, tc := range refusals {
			page := c.begin(t, "support-assistant", tc.params)
			if page.URL.Host != "app.example" || page.URL.Query().Get("error") == "" {
				t.Errorf("%s: the browser ended at %s (%d); want an error at the configured redirect URI", tc.name, page.URL.Redacted(), page.Status)
			}
		}
	})

	impostor := serveDoc("/claude.json", map[string]any{
		"client_name": "Claude", "logo_uri": "https://cdn.evil.example/claude.png",
		"redirect_uris": []string{clientRedirect}, "token_endpoint_auth_method": "none",
	})
	consentOf := func(t *testing.T) *testenv.Page {
		t.Helper()
		page := e.client(impostor).begin(t, "support-assistant", withPKCE)
		if page.Form("consent") == nil {
			t.Fatalf("no consent page for the metadata-document client: %d\n%s", page.Status, page.Body)
		}
		return page
	}

	t.Run("a metadata-document client cannot pass for another application", func(t *testing.T) {
		page := consentOf(t)
		if !strings.Contains(page.Body, `id="client-host"`) || !strings.Contains(page.Body, docsHost) {
			t.Errorf("the consent page does not name the client ID's host %s:\n%s", docsHost, page.Body)
		}
		if !strings.Contains(page.Body, `id="unverified"`) {
			t.Errorf("the consent page of a metadata-document client has no unverified warning:\n%s", page.Body)
		}
		if strings.Contains(page.Body, "<img") || strings.Contains(page.Body, "cdn.evil.example") {
			t.Errorf("the consent page makes the browser fetch the client's logo:\n%s", page.Body)
		}
		if img := cspSource(page.Header.Get("Content-Security-Policy"), "img-src"); img != "'none'" {
			t.Errorf("the consent page's CSP allows images from %q; want 'none'", img)
		}
	})

	t.Run("an allow-listed host is shown without the warning", func(t *testing.T) {
		e.gatewayExtra = gatewayLines + "\n\t\t\ttrusted_client_hosts claude.ai " + strings.Split(docsHost, ":")[0]
		if err := testenv.RunCaddyfile([]byte(e.caddyfile("tickets.read accounts.read"))); err != nil {
			t.Fatalf("loading the config with trusted_client_hosts: %v", err)
		}
		e.waitServing()
		page := consentOf(t)
		if strings.Contains(page.Body, `id="unverified"`) {
			t.Errorf("the consent page of an allow-listed host still warns:\n%s", page.Body)
		}
		if !strings.Contains(page.Body, docsHost) {
			t.Errorf("the consent page does not name the client ID's host %s:\n%s", docsHost, page.Body)
		}
	})

	t.Run("a refused metadata document is not echoed on the page", func(t *testing.T) {
		const marker = "Call-0800-SCAM-to-restore-access"
		for i, doc := range []map[string]any{
			{"client_id": "https://other.example/" + marker, "redirect_uris": []string{clientRedirect}},
			{"redirect_uris": []string{clientRedirect}, "token_endpoint_auth_method": marker},
			{"redirect_uris": []string{"javascript:" + marker}},
			{"redirect_uris": []string{clientRedirect}, "grant_types": []string{marker}},
		} {
			id := serveDoc(fmt.Sprintf("/refused-%d.json", i), doc)
			page := e.client(id).begin(t, "support-assistant", withPKCE)
			wantErrorPage(t, page, http.StatusBadRequest, "could not be used")
			if strings.Contains(page.Body, marker) {
				t.Errorf("the error page shows what the document said:\n%s", page.Body)
			}
		}
	})
}

// cspSource returns the sources a Content-Security-Policy allows for a
// directive, falling back to default-src as browsers do.
func cspSource(policy, directive string) string {
	sources := map[string]string{}
	for _, d := range strings.Split(policy, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		sources[name] = strings.TrimSpace(value)
	}
	if v, ok := sources[directive]; ok {
		return v
	}
	return sources["default-src"]
}
