package authserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
)

func registration(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, publicURL+"/oauth/support/register", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

// TestRegister: dynamic client registration (RFC 7591) stores the client
// it answers with; a confidential client's secret is given once and then
// authenticates it.
func TestRegister(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		secret     bool // a confidential client, with a secret
	}{
		{"public client", `{"redirect_uris":["http://127.0.0.1:3000/cb"],"client_name":"Inspector","token_endpoint_auth_method":"none"}`, false},
		{"without an auth method: client_secret_basic (RFC 7591 §2)", `{"redirect_uris":["https://app.example/cb"]}`, true},
		{"client_secret_post, a private-use redirect and scopes", `{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback"],"token_endpoint_auth_method":"client_secret_post","scope":"tickets.read"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			w := te.serve(registration(tc.body))
			if w.Code != http.StatusCreated {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			wantNoStore(t, w, "application/json")
			wantCORS(t, w)
			var resp struct {
				ClientID              string   `json:"client_id"`
				ClientSecret          string   `json:"client_secret"`
				ClientSecretExpiresAt *int64   `json:"client_secret_expires_at"`
				RedirectURIs          []string `json:"redirect_uris"`
				GrantTypes            []string `json:"grant_types"`
				ResponseTypes         []string `json:"response_types"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(resp.ClientID, "mcp_") || strings.Join(resp.GrantTypes, " ") != "authorization_code refresh_token" || strings.Join(resp.ResponseTypes, " ") != "code" {
				t.Errorf("registration response %s", w.Body)
			}
			if got := resp.ClientSecret != ""; got != tc.secret || tc.secret && (resp.ClientSecretExpiresAt == nil || *resp.ClientSecretExpiresAt != 0) {
				t.Errorf("secret %v (expires %v), want a secret: %v", got, resp.ClientSecretExpiresAt, tc.secret)
			}
			c, err := te.gw.Ledger.Client(context.Background(), resp.ClientID)
			if err != nil {
				t.Fatalf("the registered client is not stored: %v", err)
			}
			if c.Source != grants.SourceRegistered || strings.Join(c.RedirectURIs, " ") != strings.Join(resp.RedirectURIs, " ") {
				t.Errorf("stored %+v", c)
			}
			if tc.secret && (!c.CheckSecret(resp.ClientSecret) || c.CheckSecret(resp.ClientSecret+"x")) {
				t.Error("the stored client is not authenticated by its secret alone")
			}
			if !tc.secret && len(c.SecretHash) != 0 {
				t.Error("a public client was stored with a secret")
			}
		})
	}
}

// TestRegisterRefusals: each metadata problem is an RFC 7591 error, and
// nothing is stored.
func TestRegisterRefusals(t *testing.T) {
	many := make([]string, 11)
	for i := range many {
		many[i] = fmt.Sprintf(`"http://127.0.0.1/cb%d"`, i)
	}
	for _, tc := range []struct {
		name, body string
		code       string
	}{
		{"not JSON", `redirect_uris=https://app.example/cb`, "invalid_client_metadata"},
		{"a JSON array", `[{"redirect_uris":["https://app.example/cb"]}]`, "invalid_client_metadata"},
		{"a repeated member", `{"redirect_uris":["https://app.example/cb"],"redirect_uris":["https://evil.example/cb"]}`, "invalid_client_metadata"},
		{"data after the object", `{"redirect_uris":["https://app.example/cb"]} {}`, "invalid_client_metadata"},
		{"not UTF-8", "{\"redirect_uris\":[\"https://app.example/cb\"],\"client_name\":\"\xff\"}", "invalid_client_metadata"},
		{"a member of the wrong type", `{"redirect_uris":"https://app.example/cb"}`, "invalid_client_metadata"},
		{"no redirect URI", `{"client_name":"x"}`, "invalid_redirect_uri"},
		{"an empty list of redirect URIs", `{"redirect_uris":[]}`, "invalid_redirect_uri"},
		{"too many redirect URIs", `{"redirect_uris":[` + strings.Join(many, ",") + `]}`, "invalid_redirect_uri"},
		{"http on a public host", `{"redirect_uris":["http://app.example/cb"]}`, "invalid_redirect_uri"},
		{"a javascript: redirect", `{"redirect_uris":["javascript:alert(1)"]}`, "invalid_redirect_uri"},
		{"a redirect with a fragment", `{"redirect_uris":["https://app.example/cb#x"]}`, "invalid_redirect_uri"},
		{"a redirect with user information", `{"redirect_uris":["https://user@app.example/cb"]}`, "invalid_redirect_uri"},
		{"a relative redirect", `{"redirect_uris":["/cb"]}`, "invalid_redirect_uri"},
		{"the client_credentials grant", `{"redirect_uris":["https://app.example/cb"],"grant_types":["client_credentials"]}`, "invalid_client_metadata"},
		{"the implicit response type", `{"redirect_uris":["https://app.example/cb"],"response_types":["token"]}`, "invalid_client_metadata"},
		{"private_key_jwt", `{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, "invalid_client_metadata"},
		{"an http logo", `{"redirect_uris":["https://app.example/cb"],"logo_uri":"http://app.example/logo.png"}`, "invalid_client_metadata"},
		{"an http client URI", `{"redirect_uris":["https://app.example/cb"],"client_uri":"http://app.example/"}`, "invalid_client_metadata"},
		{"a long name", `{"redirect_uris":["https://app.example/cb"],"client_name":"` + strings.Repeat("n", 201) + `"}`, "invalid_client_metadata"},
		{"a malformed scope", `{"redirect_uris":["https://app.example/cb"],"scope":"tickets\\\\read"}`, "invalid_client_metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			w := te.serve(registration(tc.body))
			wantOAuthError(t, w, http.StatusBadRequest, tc.code)
			wantCORS(t, w)
			wantOnlyFixtureClients(t, te)
		})
	}

	t.Run("a body over 64 KiB", func(t *testing.T) {
		te := newTestEdge(t)
		body := `{"redirect_uris":["https://app.example/cb"],"client_name":"` + strings.Repeat("n", 64<<10) + `"}`
		wantOAuthError(t, te.serve(registration(body)), http.StatusRequestEntityTooLarge, "invalid_client_metadata")
		wantOnlyFixtureClients(t, te)
	})
	t.Run("GET", func(t *testing.T) {
		te := newTestEdge(t)
		w := te.serve(httptest.NewRequest(http.MethodGet, publicURL+"/oauth/support/register", nil))
		wantOAuthError(t, w, http.StatusMethodNotAllowed, "invalid_request")
		if allow := w.Header().Get("Allow"); allow != "POST" {
			t.Errorf("Allow %q", allow)
		}
	})
	t.Run("CORS preflight", func(t *testing.T) {
		te := newTestEdge(t)
		w := te.serve(preflight("/oauth/support/register"))
		if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Methods") != "POST, OPTIONS" {
			t.Errorf("%d %v", w.Code, w.Header())
		}
		wantCORS(t, w)
		wantOnlyFixtureClients(t, te)
	})
}

// wantOnlyFixtureClients checks that no client was registered.
func wantOnlyFixtureClients(t *testing.T, te *testEdge) {
	t.Helper()
	clients, err := te.gw.Ledger.Clients(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(clients) != 1 || clients[0].ID != publicClient {
		ids := make([]string, len(clients))
		for i, c := range clients {
			ids[i] = c.ID
		}
		t.Errorf("stored clients %s, want only %s", strings.Join(ids, ", "), publicClient)
	}
}
