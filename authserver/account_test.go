package authserver_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// accountFixture is an edge whose users alice and bob each gave grants:
// alice to "Acme Desktop" (registered) and "Ticket Bot" (configured), bob
// to "Acme Desktop".
type accountFixture struct {
	be     *benchEdge
	tokens map[string]string // "<user>/<client>" → an access token of the grant
}

const (
	acmeDesktop = "acme-desktop"
	ticketBot   = "ticket-bot"
)

func newAccountFixture(t *testing.T) *accountFixture {
	t.Helper()
	ctx := context.Background()
	be := newBenchEdge(t, store.NewMemoryStore(), 1)
	be.gateway.ScopeDescriptions = map[string]string{"tickets.read": "Read your support tickets"}
	be.gateway.Clients = map[string]*grants.Client{ticketBot: {ID: ticketBot, Name: "Ticket Bot", Source: grants.SourceConfig, RedirectURIs: []string{benchRedirect}}}
	if err := be.ledger.SaveClient(ctx, &grants.Client{ID: acmeDesktop, Name: "Acme Desktop", RedirectURIs: []string{benchRedirect}, Source: grants.SourceRegistered}); err != nil {
		t.Fatal(err)
	}
	be.putGrants(t, 0)
	f := &accountFixture{be: be, tokens: map[string]string{}}
	s := be.servers[0]
	for _, g := range []struct{ user, client string }{{"alice", acmeDesktop}, {"alice", ticketBot}, {"bob", acmeDesktop}} {
		fam := &grants.Family{ClientID: g.client, Server: s.Name, Resource: s.Resource, User: g.user, Scopes: "accounts.read tickets.read"}
		if _, err := be.ledger.StartFamily(ctx, fam); err != nil {
			t.Fatal(err)
		}
		if err := be.ledger.SaveConsent(ctx, &grants.Consent{User: g.user, ClientID: g.client, Server: s.Name, Scopes: fam.Scopes, RedirectURI: benchRedirect}); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		tok, err := be.gateway.Keys.Issue(accesstoken.Claims{Issuer: s.Issuer, Subject: g.user, Audience: s.Resource, Scope: fam.Scopes,
			ClientID: g.client, FamilyRef: fam.Ref, IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[g.user+"/"+g.client] = tok
		err = be.broker.Put(ctx, &grants.Grant{User: g.user, Scopes: "openid offline_access accounts.read tickets.read",
			Token: &oauth2.Token{AccessToken: "downstream-" + g.user, RefreshToken: "r-" + g.user, TokenType: "Bearer", Expiry: now.Add(time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// browser is one browser's cookies on the page.
type browser struct {
	browserCookie, accountCookie string
}

// signIn plants a session for user, as finishAccountSignIn records one.
func (f *accountFixture) signIn(t *testing.T, user string, expires time.Time) *browser {
	t.Helper()
	b := &browser{browserCookie: oauth2.GenerateVerifier(), accountCookie: oauth2.GenerateVerifier()}
	sum := sha256.Sum256([]byte("mcp_gateway account\x00" + b.accountCookie))
	if err := f.be.ledger.SaveAccountSession(context.Background(), base64.RawURLEncoding.EncodeToString(sum[:]), user, expires); err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *accountFixture) serve(t *testing.T, r *http.Request, b *browser) *httptest.ResponseRecorder {
	t.Helper()
	if b != nil {
		r.AddCookie(&http.Cookie{Name: "__Host-mcp_gateway_browser", Value: b.browserCookie})
		if b.accountCookie != "" {
			r.AddCookie(&http.Cookie{Name: "__Host-mcp_gateway_account", Value: b.accountCookie})
		}
	}
	w := httptest.NewRecorder()
	if !f.be.edge.ServeOAuth(w, r) {
		t.Fatalf("%s %s was not served", r.Method, r.URL.Path)
	}
	return w
}

func (f *accountFixture) page(t *testing.T, b *browser) string {
	t.Helper()
	return f.pageAt(t, benchPublicURL+authserver.AccountPath, b)
}

func (f *accountFixture) pageAt(t *testing.T, target string, b *browser) string {
	t.Helper()
	w := f.serve(t, httptest.NewRequest(http.MethodGet, target, nil), b)
	if w.Code != http.StatusOK {
		t.Fatalf("the page answered %d:\n%s", w.Code, w.Body)
	}
	for h, want := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY"} {
		if got := w.Header().Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	return w.Body.String()
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return html.UnescapeString(m[1])
}

func (f *accountFixture) post(t *testing.T, b *browser, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, benchPublicURL+authserver.AccountPath, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return f.serve(t, r, b)
}

// status is what the MCP server answers the token of user's grant to
// client.
func (f *accountFixture) status(t *testing.T, user, client string) int {
	t.Helper()
	w := httptest.NewRecorder()
	s := f.be.servers[0]
	f.be.edge.Authorize(w, mcpRequest(s, f.tokens[user+"/"+client]), s)
	if w.Code == 0 || w.Code == http.StatusOK {
		return http.StatusOK
	}
	return w.Code
}

func (f *accountFixture) consented(t *testing.T, user, client string) bool {
	t.Helper()
	_, err := f.be.ledger.Consent(context.Background(), user, client, f.be.servers[0].Name)
	return err == nil
}

func TestAccountPageSignedOut(t *testing.T) {
	f := newAccountFixture(t)
	w := f.serve(t, httptest.NewRequest(http.MethodGet, benchPublicURL+authserver.AccountPath, nil), nil)
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, `value="signin"`) || strings.Contains(body, "Acme Desktop") {
		t.Fatalf("signed out: %d\n%s", w.Code, body)
	}
	var set []string
	for _, c := range w.Result().Cookies() {
		set = append(set, c.Name)
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
			t.Errorf("cookie %s lacks HttpOnly, Secure, SameSite=Lax or Path=/", c.Name)
		}
	}
	if len(set) != 1 || set[0] != "__Host-mcp_gateway_browser" {
		t.Errorf("cookies set: %v, want the browser cookie alone (the session comes with a sign-in)", set)
	}

	// An ended session, or a cookie value never signed in, is no session.
	for name, b := range map[string]*browser{
		"ended session":  f.signIn(t, "alice", time.Now().Add(-time.Second)),
		"planted cookie": {browserCookie: oauth2.GenerateVerifier(), accountCookie: oauth2.GenerateVerifier()},
	} {
		if page := f.page(t, b); strings.Contains(page, "Acme Desktop") || !strings.Contains(page, `value="signin"`) {
			t.Errorf("%s: the page lists apps:\n%s", name, page)
		}
	}
}

func TestAccountPageListsTheUsersApps(t *testing.T) {
	f := newAccountFixture(t)
	page := f.page(t, f.signIn(t, "alice", time.Now().Add(time.Minute)))
	for _, want := range []string{"Acme Desktop", "Registered itself", "Ticket Bot", "Set up by the gateway", "s0",
		"Read your support tickets", "<code>tickets.read</code>", "<code>accounts.read</code>", "Signed in as <strong>alice</strong>",
		"Last used <time", `value="` + acmeDesktop + `"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(page, "bob") {
		t.Error("alice's page mentions bob")
	}
	if page := f.page(t, f.signIn(t, "bob", time.Now().Add(time.Minute))); strings.Contains(page, "Ticket Bot") || !strings.Contains(page, "Acme Desktop") {
		t.Errorf("bob's page:\n%s", page)
	}
}

func TestAccountRevocation(t *testing.T) {
	f := newAccountFixture(t)
	alice := f.signIn(t, "alice", time.Now().Add(time.Minute))
	csrf := csrfOf(t, f.page(t, alice))
	revoke := func(client string) url.Values {
		return url.Values{"action": {"revoke"}, "gateway": {"acme"}, "client_id": {client}, "csrf": {csrf}}
	}

	t.Run("without the page's CSRF token", func(t *testing.T) {
		for name, form := range map[string]url.Values{
			"none":              {"action": {"revoke"}, "gateway": {"acme"}, "client_id": {acmeDesktop}},
			"another browser's": {"action": {"revoke"}, "gateway": {"acme"}, "client_id": {acmeDesktop}, "csrf": {csrfOf(t, f.page(t, f.signIn(t, "alice", time.Now().Add(time.Minute))))}},
		} {
			if w := f.post(t, alice, form); w.Code != http.StatusForbidden {
				t.Errorf("%s: %d, want 403", name, w.Code)
			}
		}
		// A cross-site form sends the session cookie (a top-level POST
		// does not under SameSite=Lax, but an older browser might) and no
		// token: refused all the same.
		if f.status(t, "alice", acmeDesktop) != http.StatusOK || !f.consented(t, "alice", acmeDesktop) {
			t.Fatal("a form without the page's token revoked the grant")
		}
	})

	t.Run("another user's client by ID", func(t *testing.T) {
		// bob's grant to Acme Desktop is not alice's to revoke, nor is
		// one she names that she never gave.
		bob := f.signIn(t, "bob", time.Now().Add(time.Minute))
		bobCSRF := csrfOf(t, f.page(t, bob))
		w := f.post(t, bob, url.Values{"action": {"revoke"}, "gateway": {"acme"}, "client_id": {ticketBot}, "csrf": {bobCSRF}})
		if w.Code != http.StatusSeeOther {
			t.Fatalf("%d\n%s", w.Code, w.Body)
		}
		if f.status(t, "alice", ticketBot) != http.StatusOK || !f.consented(t, "alice", ticketBot) {
			t.Error("bob revoked alice's grant to Ticket Bot")
		}
	})

	t.Run("without a session", func(t *testing.T) {
		anon := &browser{browserCookie: alice.browserCookie}
		w := f.post(t, anon, url.Values{"action": {"revoke"}, "gateway": {"acme"}, "client_id": {acmeDesktop}, "csrf": {csrfOf(t, f.page(t, anon))}})
		if w.Code != http.StatusForbidden || f.status(t, "alice", acmeDesktop) != http.StatusOK {
			t.Errorf("%d, want 403 and the grant alive", w.Code)
		}
	})

	t.Run("one client", func(t *testing.T) {
		w := f.post(t, alice, revoke(acmeDesktop))
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != benchPublicURL+authserver.AccountPath+"?done=revoked" {
			t.Fatalf("%d %s\n%s", w.Code, w.Header().Get("Location"), w.Body)
		}
		if got := f.status(t, "alice", acmeDesktop); got != http.StatusUnauthorized {
			t.Errorf("the revoked client's token: %d, want 401", got)
		}
		if f.consented(t, "alice", acmeDesktop) {
			t.Error("the revoked client's consent is remembered")
		}
		if f.status(t, "alice", ticketBot) != http.StatusOK || f.status(t, "bob", acmeDesktop) != http.StatusOK || !f.consented(t, "bob", acmeDesktop) {
			t.Error("revoking one client ended another grant")
		}
		page := f.pageAt(t, w.Header().Get("Location"), alice)
		if strings.Contains(page, "Acme Desktop") || !strings.Contains(page, "Ticket Bot") || !strings.Contains(page, `role="status"`) {
			t.Errorf("after revoking:\n%s", page)
		}
	})

	t.Run("every client", func(t *testing.T) {
		w := f.post(t, alice, url.Values{"action": {"revoke_all"}, "csrf": {csrf}})
		if w.Code != http.StatusSeeOther {
			t.Fatalf("%d\n%s", w.Code, w.Body)
		}
		if f.status(t, "alice", ticketBot) != http.StatusUnauthorized || f.consented(t, "alice", ticketBot) {
			t.Error("alice's grant to Ticket Bot survived")
		}
		if f.status(t, "bob", acmeDesktop) != http.StatusOK {
			t.Error("alice's revocation ended bob's grant")
		}
	})

	t.Run("sign out", func(t *testing.T) {
		w := f.post(t, alice, url.Values{"action": {"signout"}, "csrf": {csrf}})
		if w.Code != http.StatusSeeOther {
			t.Fatalf("%d", w.Code)
		}
		if page := f.page(t, alice); !strings.Contains(page, `value="signin"`) {
			t.Error("still signed in after signing out")
		}
	})
}

// TestAccountPageManagedApps: a client that gets new tokens for the person
// without asking them (a machine client of the config acting as them, or
// a client their organisation's identity provider vouches for with
// ID-JAGs) is shown as managed by their organisation, and revoking it
// says that it ends its current access only, where revoking any other
// says the app must ask again. The page's general text promises that to
// the others alone.
func TestAccountPageManagedApps(t *testing.T) {
	const opsBot = "ops-bot"
	f := newAccountFixture(t)
	ctx := context.Background()
	g, s := f.be.gateway, f.be.servers[0]
	g.Clients[opsBot] = &grants.Client{ID: opsBot, Name: "Ops Bot", Source: grants.SourceConfig, GrantTypes: []string{authserver.GrantClientCredentials}}
	g.Machines = map[string]*authserver.MachineClient{opsBot: {AsUser: "alice", TokenKey: opsBot}}
	g.EnterpriseIdPs = map[string]*authserver.EnterpriseIdP{"https://idp.corp.example": {Issuer: "https://idp.corp.example", Clients: []string{ticketBot}}}
	if _, err := f.be.ledger.StartFamily(ctx, &grants.Family{ClientID: opsBot, Server: s.Name, Resource: s.Resource, User: "alice", Scopes: "tickets.read"}); err != nil {
		t.Fatal(err)
	}
	alice := f.signIn(t, "alice", time.Now().Add(time.Minute))
	page := f.page(t, alice)
	const managed = "Managed by your organisation"
	apps := map[string]string{} // name → its entry on the page
	for _, entry := range strings.Split(page, `<li class="app">`)[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(entry, "<h3>"), "</h3>")
		apps[name] = entry
	}
	for name, want := range map[string]bool{"Acme Desktop": false, "Ticket Bot": true, "Ops Bot": true} {
		if entry, ok := apps[name]; !ok || strings.Contains(entry, managed) != want {
			t.Errorf("%s: listed %v, shown as managed %v, want %v", name, ok, strings.Contains(entry, managed), want)
		}
	}
	general, _, _ := strings.Cut(page, `<li class="app">`)
	if strings.Contains(general, "at once; it must ask you again") || !strings.Contains(general, "can be given access again without asking you") {
		t.Errorf("the page promises that every app must ask again:\n%s", general)
	}

	csrf := csrfOf(t, page)
	for _, tc := range []struct {
		client, done, say string
	}{
		{ticketBot, "revoked_managed", "without asking you"},
		{opsBot, "revoked_managed", "without asking you"},
		{acmeDesktop, "revoked", "must ask you again"},
	} {
		w := f.post(t, alice, url.Values{"action": {"revoke"}, "gateway": {"acme"}, "client_id": {tc.client}, "csrf": {csrf}})
		if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || loc != benchPublicURL+authserver.AccountPath+"?done="+tc.done {
			t.Errorf("revoking %s: %d to %q, want done=%s", tc.client, w.Code, loc, tc.done)
			continue
		}
		notice := regexp.MustCompile(`<p class="notice" role="status">([^<]*)</p>`).FindStringSubmatch(f.pageAt(t, w.Header().Get("Location"), alice))
		if notice == nil || !strings.Contains(html.UnescapeString(notice[1]), tc.say) {
			t.Errorf("after revoking %s the page says %q, want %q", tc.client, notice, tc.say)
		}
	}
	if f.status(t, "alice", ticketBot) != http.StatusUnauthorized {
		t.Error("a managed client's token outlived its revocation")
	}
	w := f.post(t, alice, url.Values{"action": {"revoke_all"}, "csrf": {csrf}})
	if loc := w.Header().Get("Location"); loc != benchPublicURL+authserver.AccountPath+"?done=revoked_all_managed" {
		t.Errorf("revoking every app with managed ones among them: %d to %q", w.Code, loc)
	}
}
