package authserver_test

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// lockCountingStore counts the storage locks taken through it.
type lockCountingStore struct {
	*store.MemoryStore
	locks atomic.Int64
}

func (s *lockCountingStore) Lock(ctx context.Context, name string) error {
	s.locks.Add(1)
	return s.MemoryStore.Lock(ctx, name)
}

// TestBrowserReturnsLockOnlyForTheirOwnRecord sends the callback and the
// consent answer without a browser cookie, with malformed ones, with
// another browser's, and for records that do not exist: none of them may
// take a storage lock (a flood of them must not be able to make the
// gateway lock its storage), and none consumes the authorization in
// progress, which its own browser then answers.
func TestBrowserReturnsLockOnlyForTheirOwnRecord(t *testing.T) {
	counting := &lockCountingStore{MemoryStore: store.NewMemoryStore()}
	be := newBenchEdge(t, counting, 1)
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		if !be.edge.ServeOAuth(w, r) {
			t.Fatalf("%s %s was not served", r.Method, r.URL.Path)
		}
		return w
	}

	// An authorization in progress, at its consent page.
	const challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" // RFC 7636's example
	q := url.Values{"response_type": {"code"}, "client_id": {benchClientID}, "redirect_uri": {benchRedirect},
		"state": {"st"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	w := serve(httptest.NewRequest(http.MethodGet, benchPublicURL+"/oauth/s0/authorize?"+q.Encode(), nil))
	hidden := func(name string) string {
		m := regexp.MustCompile(`name="` + name + `" value="([^"]+)"`).FindStringSubmatch(w.Body.String())
		if m == nil {
			t.Fatalf("no %s on the consent page (%d):\n%s", name, w.Code, w.Body)
		}
		return html.UnescapeString(m[1])
	}
	handle, csrf := hidden("handle"), hidden("csrf")
	var browser *http.Cookie
	for _, c := range w.Result().Cookies() {
		browser = c
	}
	if browser == nil || len(browser.Value) != 43 {
		t.Fatalf("no browser cookie: %v", w.Result().Cookies())
	}
	// Well-formed values (43 base64url characters) the gateway never made.
	otherBrowser, unknown := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()

	callback := func(state, cookie string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, benchPublicURL+"/oauth/callback?code=abc&state="+url.QueryEscape(state), nil)
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: browser.Name, Value: cookie})
		}
		return r
	}
	consent := func(handle, csrf, cookie, decision string) *http.Request {
		form := url.Values{"handle": {handle}, "csrf": {csrf}, "decision": {decision}}
		r := httptest.NewRequest(http.MethodPost, benchPublicURL+"/oauth/s0/consent", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: browser.Name, Value: cookie})
		}
		return r
	}

	counting.locks.Store(0)
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"callback without a cookie", callback(handle, ""), http.StatusForbidden},
		{"callback with a short cookie", callback(handle, "short"), http.StatusForbidden},
		{"callback with a cookie of 43 non-base64url characters", callback(handle, strings.Repeat(".", 43)), http.StatusForbidden},
		{"callback from another browser", callback(handle, otherBrowser), http.StatusForbidden},
		{"callback with an unknown state", callback(unknown, browser.Value), http.StatusBadRequest},
		{"callback with a malformed state", callback("../"+handle, browser.Value), http.StatusBadRequest},
		{"consent answer without a cookie", consent(handle, csrf, "", "approve"), http.StatusForbidden},
		{"consent answer with a malformed cookie", consent(handle, csrf, strings.Repeat(".", 43), "approve"), http.StatusForbidden},
		{"consent answer from another browser", consent(handle, csrf, otherBrowser, "approve"), http.StatusForbidden},
		{"consent answer with a malformed handle", consent(handle+"/..", csrf, browser.Value, "approve"), http.StatusForbidden},
	} {
		w := serve(tc.req)
		if w.Code != tc.status || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Errorf("%s: %d %s, want a %d page", tc.name, w.Code, w.Header().Get("Content-Type"), tc.status)
		}
		if n := counting.locks.Swap(0); n != 0 {
			t.Errorf("%s: took %d storage locks", tc.name, n)
		}
	}

	// Nothing above consumed the authorization: its own browser answers
	// it, and that takes the lock that makes the answer single use.
	w = serve(consent(handle, csrf, browser.Value, "deny"))
	if loc, _ := url.Parse(w.Header().Get("Location")); w.Code != http.StatusFound || loc == nil || loc.Query().Get("error") != "access_denied" {
		t.Fatalf("the browser's own answer: %d %s\n%s", w.Code, w.Header().Get("Location"), w.Body)
	}
	if counting.locks.Load() == 0 {
		t.Error("taking the authorization took no storage lock")
	}
}
