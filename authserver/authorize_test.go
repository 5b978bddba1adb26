package authserver_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
)

// TestAuthorizeRefusals: until the client and its redirect URI check out,
// and for a client that registered itself (which chose its redirect URI),
// a refusal is a page, never a redirect; a client of the config gets its
// refusals at its redirect URI.
func TestAuthorizeRefusals(t *testing.T) {
	_, challenge := pkce()
	// with returns the valid request of client at its redirect URI, changed
	// by edit.
	with := func(client string, edit func(q url.Values)) url.Values {
		redirect := publicRedirect
		if client == configClient {
			redirect = configRedirect
		}
		q := authorizeQuery(client, redirect, challenge)
		edit(q)
		return q
	}
	set := func(name, value string) func(url.Values) { return func(q url.Values) { q.Set(name, value) } }
	del := func(name string) func(url.Values) { return func(q url.Values) { q.Del(name) } }

	for _, tc := range []struct {
		name   string
		server string
		query  url.Values
		page   int    // the status of the page, or 0 for a redirect
		code   string // the error at the redirect URI
	}{
		// Before the client and its redirect URI check out: a page.
		{"no client_id", "support", with(publicClient, del("client_id")), http.StatusBadRequest, ""},
		{"an unknown client", "support", with(publicClient, set("client_id", "nobody")), http.StatusBadRequest, ""},
		{"a repeated parameter", "support", with(configClient, func(q url.Values) { q.Add("state", "other") }), http.StatusBadRequest, ""},
		{"an unregistered redirect URI", "support", with(configClient, set("redirect_uri", "https://evil.example/callback")), http.StatusBadRequest, ""},
		{"a redirect URI that only starts like the registered one", "support", with(configClient, set("redirect_uri", configRedirect+"/../x")), http.StatusBadRequest, ""},
		{"another loopback path", "support", with(publicClient, set("redirect_uri", "http://127.0.0.1:33418/other")), http.StatusBadRequest, ""},
		{"no redirect URI, a loopback one registered", "support", with(publicClient, del("redirect_uri")), http.StatusBadRequest, ""},

		// A client that registered itself: a page.
		{"self-registered: response_type token", "support", with(publicClient, set("response_type", "token")), http.StatusBadRequest, ""},
		{"self-registered: no PKCE", "support", with(publicClient, del("code_challenge")), http.StatusBadRequest, ""},
		{"self-registered: a scope the server lacks", "support", with(publicClient, set("scope", "admin.read")), http.StatusBadRequest, ""},
		{"self-registered: another server's resource", "support", with(publicClient, set("resource", publicURL+"/teams/ops")), http.StatusBadRequest, ""},

		// A client of the config: its redirect URI.
		{"response_type token", "support", with(configClient, set("response_type", "token")), 0, "unsupported_response_type"},
		{"no response_type", "support", with(configClient, del("response_type")), 0, "unsupported_response_type"},
		{"no code_challenge", "support", with(configClient, del("code_challenge")), 0, "invalid_request"},
		{"code_challenge_method plain", "support", with(configClient, set("code_challenge_method", "plain")), 0, "invalid_request"},
		{"no code_challenge_method", "support", with(configClient, del("code_challenge_method")), 0, "invalid_request"},
		{"a short code_challenge", "support", with(configClient, set("code_challenge", challenge[:42])), 0, "invalid_request"},
		{"a code_challenge that is not base64url", "support", with(configClient, set("code_challenge", strings.Repeat("+", 43))), 0, "invalid_request"},
		{"a malformed scope", "support", with(configClient, set("scope", `tickets"read`)), 0, "invalid_scope"},
		{"only scopes the server lacks", "support", with(configClient, set("scope", "admin.read tickets.write")), 0, "invalid_scope"},
		{"only the gateway's own scopes", "support", with(configClient, set("scope", "openid offline_access admin.read")), 0, "invalid_scope"},
		{"another server's resource", "support", with(configClient, set("resource", publicURL+"/teams/ops")), 0, "invalid_target"},
		{"another site's resource", "support", with(configClient, set("resource", "https://evil.example/support")), 0, "invalid_target"},
		{"a resource with a query", "support", with(configClient, set("resource", publicURL+"/support?x=1")), 0, "invalid_target"},
		{"a server the client may not use", "ops", with(configClient, func(url.Values) {}), 0, "unauthorized_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			s := te.support
			if tc.server == "ops" {
				s = te.ops
			}
			w := te.serve(httptest.NewRequest(http.MethodGet, publicURL+"/oauth/"+tc.server+"/authorize?"+tc.query.Encode(), nil))
			if tc.page != 0 {
				wantPage(t, w, tc.page)
				if strings.Contains(w.Body.String(), `name="csrf"`) {
					t.Error("a refusal shows the consent form")
				}
			} else {
				wantRedirectError(t, w, s, configRedirect, tc.code)
			}
			if len(w.Result().Cookies()) != 0 {
				t.Errorf("a refused request set cookies %v", w.Result().Cookies())
			}
		})
	}

	t.Run("DELETE", func(t *testing.T) {
		te := newTestEdge(t)
		w := te.serve(httptest.NewRequest(http.MethodDelete, publicURL+"/oauth/support/authorize?"+with(configClient, func(url.Values) {}).Encode(), nil))
		wantOAuthError(t, w, http.StatusMethodNotAllowed, "invalid_request")
		if allow := w.Header().Get("Allow"); allow != "GET, POST" {
			t.Errorf("Allow %q", allow)
		}
	})
}

// TestAuthorize: a valid request sets the browser-binding cookie and shows
// the consent page, which names the client, the server, the scopes granted
// and where the user will be sent.
func TestAuthorize(t *testing.T) {
	_, challenge := pkce()
	for _, tc := range []struct {
		name            string
		method          string // GET with a query, or POST with a form
		client          string
		edit            func(q url.Values)
		scopes          string // the scopes listed
		redirectHost    string
		unverifiedClaim bool // the page warns that the client registered itself
	}{
		{"no scope: the server's", http.MethodGet, publicClient, func(url.Values) {}, "accounts.read tickets.read", "127.0.0.1:33418", true},
		{"a scope of the server's", http.MethodGet, publicClient, func(q url.Values) { q.Set("scope", "tickets.read") }, "tickets.read", "127.0.0.1:33418", true},
		{"the gateway's own scopes dropped", http.MethodGet, publicClient, func(q url.Values) { q.Set("scope", " openid offline_access tickets.read") }, "tickets.read", "127.0.0.1:33418", true},
		{"other servers' scopes dropped", http.MethodGet, publicClient, func(q url.Values) { q.Set("scope", "admin.read accounts.read") }, "accounts.read", "127.0.0.1:33418", true},
		{"a loopback redirect on another port", http.MethodGet, publicClient, func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:9/callback") }, "accounts.read tickets.read", "127.0.0.1:9", true},
		{"the resource as sent with a trailing slash", http.MethodGet, publicClient, func(q url.Values) { q.Set("resource", publicURL+"/support/") }, "accounts.read tickets.read", "127.0.0.1:33418", true},
		{"the resource as the origin", http.MethodGet, publicClient, func(q url.Values) { q.Set("resource", "HTTPS://MCP.example.com") }, "accounts.read tickets.read", "127.0.0.1:33418", true},
		{"a client of the config", http.MethodGet, configClient, func(url.Values) {}, "accounts.read tickets.read", "app.example.com", false},
		{"a client of the config without redirect_uri: its only one", http.MethodGet, configClient, func(q url.Values) { q.Del("redirect_uri") }, "accounts.read tickets.read", "app.example.com", false},
		{"POST", http.MethodPost, publicClient, func(url.Values) {}, "accounts.read tickets.read", "127.0.0.1:33418", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			redirect := publicRedirect
			if tc.client == configClient {
				redirect = configRedirect
			}
			q := authorizeQuery(tc.client, redirect, challenge)
			tc.edit(q)
			var r *http.Request
			if tc.method == http.MethodGet {
				r = httptest.NewRequest(http.MethodGet, publicURL+"/oauth/support/authorize?"+q.Encode(), nil)
			} else {
				r = postForm("/oauth/support/authorize", q)
			}
			w := te.serve(r)
			p := readConsentPage(t, w)
			c := p.cookie
			if c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || len(c.Value) != 43 {
				t.Errorf("browser cookie %+v, want a __Host- cookie, HttpOnly, Secure, SameSite=Lax, Path=/", c)
			}
			if xfo := w.Header().Get("X-Frame-Options"); xfo != "DENY" {
				t.Errorf("X-Frame-Options %q", xfo)
			}
			body := w.Body.String()
			for _, want := range append(strings.Fields(tc.scopes), "<strong>support</strong>", "<strong>"+tc.redirectHost+"</strong>", `action="`+te.support.Issuer+`/consent"`) {
				if !strings.Contains(body, want) {
					t.Errorf("the consent page lacks %s", want)
				}
			}
			for _, other := range []string{"accounts.read", "tickets.read", "admin.read", "openid"} {
				if !strings.Contains(" "+tc.scopes+" ", " "+other+" ") && strings.Contains(body, "<code>"+other+"</code>") {
					t.Errorf("the consent page lists %s", other)
				}
			}
			if got := strings.Contains(body, `id="unverified"`); got != tc.unverifiedClaim {
				t.Errorf("unverified warning %v, want %v", got, tc.unverifiedClaim)
			}
		})
	}

	t.Run("a browser that has the cookie keeps it", func(t *testing.T) {
		te := newTestEdge(t)
		first := te.startAuthorization()
		r := httptest.NewRequest(http.MethodGet, publicURL+"/oauth/support/authorize?"+authorizeQuery(publicClient, publicRedirect, challenge).Encode(), nil)
		r.AddCookie(first.cookie)
		w := te.serve(r)
		second := readConsentPage(t, w)
		if second.cookie != nil {
			t.Errorf("set a new browser cookie over the one the browser has")
		}
		if second.handle == first.handle {
			t.Error("two authorizations share a handle")
		}
		// The second page's form is this browser's.
		w = te.serve(second.answer("support", second.form("deny"), first.cookie))
		wantRedirectError(t, w, te.support, publicRedirect, "access_denied")
	})
}

// TestConsent: the consent answer counts only from the browser and page
// it was shown in, once; a denial goes back to the client, an approval on
// to the downstream sign-in.
func TestConsent(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(a *consentAnswer) // changes the page's own answer
	}{
		{"no browser cookie", func(a *consentAnswer) { a.cookie = nil }},
		{"another browser's cookie", func(a *consentAnswer) { a.cookie.Value = oauth2.GenerateVerifier() }},
		{"a malformed cookie", func(a *consentAnswer) { a.cookie.Value = "short" }},
		{"no CSRF token", func(a *consentAnswer) { a.form.Del("csrf") }},
		{"a wrong CSRF token", func(a *consentAnswer) { a.form.Set("csrf", oauth2.GenerateVerifier()) }},
		{"the CSRF token with another handle", func(a *consentAnswer) { a.form.Set("handle", oauth2.GenerateVerifier()) }},
		{"a malformed handle", func(a *consentAnswer) { a.form.Set("handle", a.form.Get("handle")+"/..") }},
		{"posted to another server", func(a *consentAnswer) { a.server = "ops" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			p := te.startAuthorization()
			a := &consentAnswer{server: "support", form: p.form("approve"), cookie: &http.Cookie{Name: p.cookie.Name, Value: p.cookie.Value}}
			tc.edit(a)
			wantPage(t, te.serve(p.answer(a.server, a.form, a.cookie)), http.StatusForbidden)
			if a.server != "support" {
				return // the authorization was taken, to be refused there
			}
			// A refused answer changes nothing: the page's own answer
			// still counts.
			w := te.serve(p.answer("support", p.form("deny"), p.cookie))
			wantRedirectError(t, w, te.support, publicRedirect, "access_denied")
		})
	}

	t.Run("GET", func(t *testing.T) {
		te := newTestEdge(t)
		wantPage(t, te.serve(httptest.NewRequest(http.MethodGet, publicURL+"/oauth/support/consent", nil)), http.StatusMethodNotAllowed)
	})
	t.Run("an authorization that does not exist", func(t *testing.T) {
		te := newTestEdge(t)
		p := te.startAuthorization()
		if _, err := te.gw.Ledger.TakePending(context.Background(), p.handle); err != nil {
			t.Fatal(err)
		}
		wantPage(t, te.serve(p.answer("support", p.form("approve"), p.cookie)), http.StatusBadRequest)
	})
	t.Run("deny", func(t *testing.T) {
		te := newTestEdge(t)
		p := te.startAuthorization()
		wantRedirectError(t, te.serve(p.answer("support", p.form("deny"), p.cookie)), te.support, publicRedirect, "access_denied")
		// Answered once.
		wantPage(t, te.serve(p.answer("support", p.form("approve"), p.cookie)), http.StatusBadRequest)
	})
	t.Run("approve", func(t *testing.T) {
		te := newTestEdge(t)
		p := te.startAuthorization()
		w := te.serve(p.answer("support", p.form("approve"), p.cookie))
		q := wantRedirect(t, w, downstreamAuthorize)
		state := q.Get("state")
		if q.Get("client_id") != downstreamClientID || q.Get("response_type") != "code" || q.Get("redirect_uri") != publicURL+authserver.CallbackPath ||
			q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || len(state) != 43 || state == p.handle {
			t.Errorf("downstream authorization request %v", q)
		}
		for _, want := range []string{"openid", "offline_access", "tickets.read"} {
			if !strings.Contains(" "+q.Get("scope")+" ", " "+want+" ") {
				t.Errorf("downstream scope %q lacks %s", q.Get("scope"), want)
			}
		}
		// The authorization waits for the callback under the downstream
		// state, bound to this browser.
		pending, err := te.gw.Ledger.Pending(context.Background(), state)
		if err != nil || pending.Server != "support" || pending.ClientID != publicClient || pending.RedirectURI != publicRedirect ||
			pending.State != "client-state" || pending.Scopes != "accounts.read tickets.read" || pending.DownstreamVerifier == "" {
			t.Fatalf("pending authorization %+v: %v", pending, err)
		}
		// Answered once.
		wantPage(t, te.serve(p.answer("support", p.form("approve"), p.cookie)), http.StatusBadRequest)
	})
}

// consentAnswer is a consent answer as a test sends it.
type consentAnswer struct {
	server string
	form   url.Values
	cookie *http.Cookie
}
