package e2e_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestAttacksConsent attacks the consent step: a consent remembered for
// one user must not let another user who signs in from the same browser
// skip it, and requests that cannot own an authorization in progress (no
// browser cookie, a malformed one) are refused before the gateway touches
// its storage, and rate-limited.
func TestAttacksConsent(t *testing.T) {
	other := testenv.User{Subject: "other-user", Username: "other", Password: "other-pass", Email: "other@example.com", Name: "Other User"}
	first := testenv.DefaultUser()
	e := startEnv(t, testenv.ProviderConfig{Users: []testenv.User{first, other}},
		withLines("rate_limit {\n\t\t\tcallback 40/1h\n\t\t}", ""))

	// begin starts an authorization in c's browser with a fresh PKCE pair.
	begin := func(t *testing.T, c *client) (*testenv.Page, string) {
		t.Helper()
		verifier, challenge := testenv.PKCE()
		return c.begin(t, "support-assistant", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}), verifier
	}
	// signIn signs in at the provider's login page as u.
	signIn := func(t *testing.T, c *client, page *testenv.Page, u testenv.User) *testenv.Page {
		t.Helper()
		form := page.Form("login")
		if form == nil {
			t.Fatalf("want the provider's sign-in page; got %s (status %d):\n%.1000s", page.URL, page.Status, page.Body)
		}
		page, err := c.Browser.Submit(form, "", url.Values{"username": {u.Username}, "password": {u.Password}})
		if err != nil {
			t.Fatal(err)
		}
		return page
	}
	// answer submits the consent form on page.
	answer := func(t *testing.T, c *client, page *testenv.Page, decision string) *testenv.Page {
		t.Helper()
		page, err := c.Browser.Submit(page.Form("consent"), "decision="+decision, nil)
		if err != nil {
			t.Fatal(err)
		}
		return page
	}
	// wantConsentPage fails unless page is the consent page: no code has
	// gone back to the client.
	wantConsentPage := func(t *testing.T, page *testenv.Page, why string) {
		t.Helper()
		if page.URL.Host == "127.0.0.1:33418" {
			t.Fatalf("%s: the client got %s without a consent page", why, page.URL.Redacted())
		}
		if page.Form("consent") == nil {
			t.Fatalf("%s: want the consent page; got %s (status %d):\n%.1000s", why, page.URL, page.Status, page.Body)
		}
	}
	// redeemedUser redeems the code the flow ended with and returns the
	// user the upstream sees.
	redeemedUser := func(t *testing.T, c *client, page *testenv.Page, verifier string) string {
		t.Helper()
		code := page.URL.Query().Get("code")
		if page.URL.Host != "127.0.0.1:33418" || code == "" {
			t.Fatalf("want a code at the client; got %s (status %d):\n%.1000s", page.URL.Redacted(), page.Status, page.Body)
		}
		tok := c.redeem(t, "support-assistant", code, verifier)
		if tok.Status != http.StatusOK {
			t.Fatalf("redeeming the code: %d %s", tok.Status, tok.Description)
		}
		res, err := e.callTool(t, "/support", tok.AccessToken, "whoami", map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		return whoami(t, res).XHeaders["X-Mcp-User"]
	}

	t.Run("another user signs in after a remembered consent", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		c.code(t, "support-assistant", nil) // the first user consents and signs in

		// The consent is remembered for this browser's user, so the
		// page is skipped, but someone else signs in at the provider.
		page, _ := begin(t, c)
		page = signIn(t, c, page, other)
		wantConsentPage(t, page, "another user signed in after a consent remembered for "+first.Subject)
		if !strings.Contains(page.Body, other.Subject) {
			t.Errorf("the consent page does not say who signed in (%s):\n%s", other.Subject, page.Body)
		}
		wantRedirectError(t, answer(t, c, page, "deny"), "access_denied")

		// They never approved, so nothing may have been remembered for
		// them: the next authorization in this browser asks them.
		page, _ = begin(t, c)
		if page.Form("login") != nil {
			page = signIn(t, c, page, other)
		}
		wantConsentPage(t, page, "a consent was recorded for a user who denied it")
	})

	t.Run("the other user approves after signing in", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		c.code(t, "support-assistant", nil)

		page, verifier := begin(t, c)
		page = signIn(t, c, page, other)
		wantConsentPage(t, page, "another user signed in after a remembered consent")
		if user := redeemedUser(t, c, answer(t, c, page, "approve"), verifier); user != other.Subject {
			t.Fatalf("the code is %q's, want %q's", user, other.Subject)
		}

		// Now each of them has consented: whoever signs in next in this
		// browser gets a code without being asked again.
		for _, u := range []testenv.User{other, first, first} {
			page, verifier = begin(t, c)
			page = signIn(t, c, page, u)
			if user := redeemedUser(t, c, page, verifier); user != u.Subject {
				t.Fatalf("the code is %q's, want %q's", user, u.Subject)
			}
		}
	})

	t.Run("callback and consent floods without a browser binding", func(t *testing.T) {
		bare := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		state, _ := testenv.PKCE() // 43 base64url characters, as a real state or handle is
		send := func(consent bool, cookie string) *http.Response {
			t.Helper()
			var req *http.Request
			if consent {
				form := url.Values{"handle": {state}, "csrf": {state}, "decision": {"approve"}}
				req, _ = http.NewRequest(http.MethodPost, e.public+"/oauth/support-assistant/consent", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			} else {
				req, _ = http.NewRequest(http.MethodGet, e.public+"/oauth/callback?code=abc&state="+state, nil)
			}
			if cookie != "" {
				req.Header.Set("Cookie", "mcp_gateway_browser="+cookie)
			}
			resp, err := bare.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		cookies := []string{"", "short", strings.Repeat(".", 43)}
		limited := -1
		for i := 0; i < 41 && limited < 0; i++ {
			resp := send(i%2 == 1, cookies[i%len(cookies)])
			switch resp.StatusCode {
			case http.StatusTooManyRequests:
				limited = i
				if retry, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || retry < 1 {
					t.Errorf("the 429 has Retry-After %q", resp.Header.Get("Retry-After"))
				}
				if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
					t.Errorf("the 429 to a browser is %s, not a page", resp.Header.Get("Content-Type"))
				}
			case http.StatusForbidden, http.StatusBadRequest:
			default:
				t.Fatalf("request %d without a usable browser cookie: %d", i, resp.StatusCode)
			}
		}
		if limited < 0 {
			t.Fatal("41 callbacks and consent answers from one address, with a limit of 40 an hour, were all served")
		}
		// The limit holds for both endpoints; authorization requests have
		// their own.
		for _, consent := range []bool{false, true} {
			if resp := send(consent, ""); resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("after the limit (consent answer: %v): %d", consent, resp.StatusCode)
			}
		}
		c := e.register(t, "support-assistant")
		if page, _ := begin(t, c); page.Form("consent") == nil {
			t.Errorf("an authorization request after the callback limit: %d", page.Status)
		}
	})
}
