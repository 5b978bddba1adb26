package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// sharedAppClient is a client declared under the same ID in both sites'
// gateways, as a client ID metadata document's URL is the same at every
// gateway a client talks to.
const sharedAppClient = `client shared-app {
				redirect_uris http://127.0.0.1:33418/callback
			}`

// secondSite is a site beside the env's, on the same storage, whose gateway
// is also called acme but signs its users in at another provider.
const secondSite = `

%[1]s {
	mcp_gateway {
		public_url %[1]s
		gateway acme {
			authorization_server %[2]s
			client_id mcp-gateway
			client_secret {env.MCP_GATEWAY_TEST_SECRET}
			resource https://api.example.com
			scopes tickets.read tickets.write accounts.read admin.read
			identity claim sub
			` + sharedAppClient + `
		}
		server support-assistant /support {
			gateway acme
			scopes tickets.read accounts.read
			reverse_proxy %[3]s
		}
	}
}
`

// TestAttacksBoundary runs two sites on one storage whose gateways share
// the name acme but not their boundary: each has its own provider (whose
// users share a subject), public URL and MCP server. Nothing of one may
// serve the other: keys, clients, consents, downstream tokens. The admin
// API refuses the name that names both, and an operator's revocation
// forgets the consents it covers.
func TestAttacksBoundary(t *testing.T) {
	addr, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	publicB := "http://" + addr
	providerB, err := testenv.StartProvider(testenv.ProviderConfig{RedirectURIs: []string{publicB + "/oauth/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { providerB.Close() })
	supportB, err := testenv.StartMCPServer(testenv.MCPServerConfig{Name: "support-of-b"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { supportB.Close() })
	if providerB.Config().Users[0].Subject != testenv.DefaultUser().Subject {
		t.Fatal("the two providers' users must share a subject for this test to mean anything")
	}

	e := startEnv(t, testenv.ProviderConfig{}, withLines("", sharedAppClient), withEdit(func(e *env, caddyfile string) string {
		return caddyfile + fmt.Sprintf(secondSite, publicB, providerB.Issuer(), testenv.HostOf(supportB.URL()))
	}))
	hostA, hostB := strings.TrimPrefix(e.public, "http://"), addr
	restart := func(t *testing.T) {
		t.Helper()
		if err := testenv.StopCaddy(); err != nil {
			t.Fatal(err)
		}
		e.load("tickets.read accounts.read")
	}
	onB := func(c *client) *client { return c.on(publicB) }
	siteB := *e
	siteB.public, siteB.provider, siteB.support = publicB, providerB, supportB

	// The same person's sign-ins at both sites, each with a client of its
	// own and a browser of its own.
	a := e.register(t, "support-assistant")
	b, err := testenv.RegisterClient(nil, publicB, "support-assistant", map[string]any{
		"redirect_uris": []string{clientRedirect}, "client_name": "B", "token_endpoint_auth_method": "none",
	})
	if err != nil {
		t.Fatal(err)
	}
	b.State = "st-123"
	clientB := &client{b}
	tokA := a.login(t, "support-assistant", "")
	tokB := clientB.login(t, "support-assistant", "")

	t.Run("signing keys are the boundary's own", func(t *testing.T) {
		jwks := func(public string) string {
			t.Helper()
			resp, err := http.Get(public + "/oauth/support-assistant/jwks")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"keys"`) {
				t.Fatalf("jwks at %s: %d %s", public, resp.StatusCode, body)
			}
			return string(body)
		}
		if jwks(e.public) == jwks(publicB) {
			t.Fatal("two gateways of one name but of different boundaries publish the same signing keys")
		}
		if status := bearerStatus(t, publicB+"/support", tokA.AccessToken); status != http.StatusUnauthorized {
			t.Errorf("site A's token at site B: %d", status)
		}
	})

	t.Run("a client registered at one site is unknown at the other", func(t *testing.T) {
		_, challenge := testenv.PKCE()
		other := onB(&client{a.WithNewBrowser()})
		wantErrorPage(t, other.begin(t, "support-assistant", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}), http.StatusBadRequest, "Unknown client")
	})

	t.Run("a consent given at one site is not remembered at the other", func(t *testing.T) {
		// One browser (cookies are not told apart by port) approves
		// shared-app at site B, then shared-app asks site A.
		shared := e.client("shared-app")
		if _, err := shared.on(publicB).Login("support-assistant", url.Values{}); err != nil {
			t.Fatal(err)
		}
		_, challenge := testenv.PKCE()
		page := shared.begin(t, "support-assistant", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}})
		if page.Form("consent") == nil {
			t.Fatalf("site A skipped its consent page for a client the user approved only at site B: ended at %s (%d)", page.URL.Redacted(), page.Status)
		}
	})

	t.Run("no downstream token of one boundary reaches the other's upstream", func(t *testing.T) {
		// A restart empties the caches: each gateway reads its user's
		// grant from storage, where site B's sign-in came last.
		restart(t)
		e.upstreamSees(t, "/support", tokA.AccessToken)
		siteB.upstreamSees(t, "/support", tokB.AccessToken)
	})

	t.Run("a grant stored for another issuer is treated as absent", func(t *testing.T) {
		// A fresh sign-in at site A, then its stored grant claims another
		// downstream issuer: the gateway must not hand its token on.
		fresh := a.login(t, "support-assistant", "")
		if status := bearerStatus(t, e.public+"/support", fresh.AccessToken); status != http.StatusOK {
			t.Fatalf("a fresh sign-in at site A: %d", status)
		}
		if err := testenv.StopCaddy(); err != nil {
			t.Fatal(err)
		}
		records, _ := filepath.Glob(filepath.Join(e.storage, "mcp_gateway", "*", "grants", "*"))
		if len(records) == 0 {
			t.Fatal("no grant record in storage")
		}
		for _, path := range records {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var rec map[string]any
			if err := json.Unmarshal(raw, &rec); err != nil {
				t.Fatal(err)
			}
			rec["issuer"] = "https://elsewhere.example"
			if raw, err = json.Marshal(rec); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, raw, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		e.load("tickets.read accounts.read")
		before := e.support.Requests()
		status, challenge := challengeOf(t, e.public+"/support", fresh.AccessToken)
		if status != http.StatusUnauthorized || !strings.Contains(challenge, "invalid_token") {
			t.Errorf("a grant of another issuer: %d %s, want 401 invalid_token", status, challenge)
		}
		if e.support.Requests() != before {
			t.Error("a request reached the upstream on a grant of another issuer")
		}
	})

	t.Run("the admin API refuses a gateway name two sites share", func(t *testing.T) {
		status, body := adminCall(t, e.admin, http.MethodGet, "/mcp_gateway/gateways/acme/grants")
		if status != http.StatusConflict || !strings.Contains(body, "acme@"+hostA) || !strings.Contains(body, "acme@"+hostB) {
			t.Fatalf("the ambiguous name acme: %d %s, want 409 naming acme@%s and acme@%s", status, body, hostA, hostB)
		}
		status, body = adminCall(t, e.admin, http.MethodGet, "/mcp_gateway/gateways/acme@"+hostB+"/grants")
		if status != http.StatusOK || !strings.Contains(body, b.ID) || strings.Contains(body, a.ID) {
			t.Fatalf("site B's grants by the qualified name: %d %s", status, body)
		}
		if status, body := adminCall(t, e.admin, http.MethodGet, "/mcp_gateway/gateways/acme@nowhere.example/grants"); status != http.StatusNotFound {
			t.Fatalf("a qualified name of no site: %d %s", status, body)
		}
	})

	t.Run("an operator's revocation forgets the consents it covers", func(t *testing.T) {
		_, challenge := testenv.PKCE()
		pkce := url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
		grantsAt := "/mcp_gateway/gateways/acme@" + hostA + "/grants"
		byID := func() string {
			var list struct{ Grants []struct{ ID string } }
			status, body := adminCall(t, e.admin, http.MethodGet, grantsAt+"?client_id="+url.QueryEscape(a.ID))
			if err := json.Unmarshal([]byte(body), &list); status != http.StatusOK || err != nil || len(list.Grants) == 0 {
				t.Fatalf("client a's grants: %d %s", status, body)
			}
			return "/" + list.Grants[0].ID
		}
		for _, revoke := range []func() string{
			func() string { return "?user=" + url.QueryEscape(testenv.DefaultUser().Subject) },
			func() string { return "?client_id=" + url.QueryEscape(a.ID) },
			byID,
		} {
			a.login(t, "support-assistant", "")
			if page := a.begin(t, "support-assistant", pkce); page.Form("consent") != nil {
				t.Fatal("the consent was not remembered to begin with")
			}
			which := revoke()
			if status, body := adminCall(t, e.admin, http.MethodDelete, grantsAt+which); status != http.StatusOK || !strings.Contains(body, `"consents_forgotten":1`) {
				t.Fatalf("revoking %s: %d %s", which, status, body)
			}
			if page := a.begin(t, "support-assistant", pkce); page.Form("consent") == nil {
				t.Errorf("after revoking %s the next authorization skipped the consent page (ended at %s, %d)", which, page.URL.Redacted(), page.Status)
			}
		}
	})
}

// adminCall sends a request to Caddy's admin endpoint and returns the
// status and body.
func adminCall(t *testing.T, admin, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestUpgradeKeepsUnrecordedState starts a gateway on the state an earlier
// version kept under mcp_gateway/acme, with no boundary recorded: its
// signing keys, a registered client and a user's grant (recorded with no
// issuer). The unchanged config keeps all three, and records its boundary
// there.
func TestUpgradeKeepsUnrecordedState(t *testing.T) {
	const secret = "an encryption key of the test, 32 bytes or so"
	t.Setenv("MCP_GATEWAY_TEST_KEY", secret)
	var (
		keys   *accesstoken.Keyset
		access string
	)
	earlier := func(e *env) {
		ctx := context.Background()
		key, err := store.KeyFromSecret(secret)
		if err != nil {
			t.Fatal(err)
		}
		sealer, err := store.NewSealer(key)
		if err != nil {
			t.Fatal(err)
		}
		store := &certmagic.FileStorage{Path: e.storage}
		if keys, err = accesstoken.LoadKeyset(ctx, store, "mcp_gateway/acme/signing_keys", sealer, nil); err != nil {
			t.Fatal(err)
		}
		ledger := grants.NewLedger(store, "mcp_gateway/acme", sealer, nil)
		if err := ledger.SaveClient(ctx, &grants.Client{ID: "earlier-client", RedirectURIs: []string{clientRedirect},
			GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
			TokenEndpointAuthMethod: "none", Source: grants.SourceRegistered}); err != nil {
			t.Fatal(err)
		}
		if err := ledger.SaveGrant(ctx, &grants.Grant{User: testenv.DefaultUser().Subject, Token: &oauth2.Token{
			AccessToken: "downstream-token-of-before", TokenType: "Bearer", RefreshToken: "refresh-of-before", Expiry: time.Now().Add(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		if access, err = keys.Issue(accesstoken.Claims{Issuer: e.public + "/oauth/support-assistant", Subject: testenv.DefaultUser().Subject,
			Audience: e.public + "/support", Scope: "accounts.read tickets.read", ClientID: "earlier-client", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	e := startEnv(t, testenv.ProviderConfig{}, earlier, withLines("", "encryption_key {env.MCP_GATEWAY_TEST_KEY}\n\t\t\tper_server_tokens off"))

	resp, err := http.Get(e.public + "/oauth/support-assistant/jwks")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var published, kept struct{ Keys []struct{ Kid string } }
	if json.Unmarshal(jwks, &published) != nil || json.Unmarshal(keys.JWKS(), &kept) != nil || len(kept.Keys) != 1 ||
		len(published.Keys) != 1 || published.Keys[0].Kid != kept.Keys[0].Kid {
		t.Fatalf("the gateway publishes %s, not the signing key it had: %s", jwks, keys.JWKS())
	}
	res, err := e.callTool(t, "/support", access, "whoami", map[string]any{})
	if err != nil {
		t.Fatalf("a token signed with the key of before: %v", err)
	}
	if who := whoami(t, res); who.Authorization != "Bearer downstream-token-of-before" {
		t.Fatalf("the upstream got %q, not the user's stored downstream token", who.Authorization)
	}
	_, challenge := testenv.PKCE()
	if page := e.client("earlier-client").begin(t, "support-assistant", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}); page.Form("consent") == nil {
		t.Fatalf("the client registered before is not served: %d %s", page.Status, page.Body)
	}
	if _, err := os.Stat(filepath.Join(e.storage, "mcp_gateway", "acme", "boundary")); err != nil {
		t.Errorf("no boundary recorded with the state of before: %v", err)
	}
	if dirs, _ := filepath.Glob(filepath.Join(e.storage, "mcp_gateway", "acme-*")); len(dirs) != 0 {
		t.Errorf("the unchanged gateway made new state beside its own: %v", dirs)
	}
}
