package interop_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// screenshotEnv, when set to 1, makes TestRealBrowserConsent and
// TestAccountPage save their pages to docs/img/consent.png and
// docs/img/account.png. CI leaves it unset.
const screenshotEnv = "MCP_GATEWAY_SCREENSHOT"

// chromiumBinary returns Debian's Chromium, or the one CHROMIUM names.
func chromiumBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no Chromium at %s: install Debian's package chromium (apt-get install chromium; .ci/run does it) or set CHROMIUM", path)
	}
	return path
}

// startBrowserGateway starts a gateway with the product name and scope
// descriptions its pages show, and returns it with the Chromium to open
// them in.
func startBrowserGateway(t *testing.T) (*gateway, string) {
	t.Helper()
	requireModule(t, "playwright-core")
	chromium := chromiumBinary(t)
	return startGateway(t, gatewayOptions{
		handler: `product_name "Acme Support"`,
		acme:    `scope_description tickets.read "Read your support tickets"` + "\n" + `scope_description accounts.read "See your account details"`,
	}), chromium
}

// runChromium runs a browser script in node with chromium, and with
// docs/img/<screenshot> as its last argument where screenshotEnv asks for
// the page and screenshot is not empty.
func runChromium(t *testing.T, chromium, screenshot string, args ...string) string {
	t.Helper()
	if screenshot != "" && os.Getenv(screenshotEnv) == "1" {
		args = append(args, filepath.Join("..", "..", "docs", "img", screenshot))
	}
	return runNode(t, 90*time.Second, []string{"CHROMIUM=" + chromium}, args...)
}

// redirectTarget is a native client's loopback redirect URI, listening: it
// records the query each request brings.
func redirectTarget(t *testing.T) (string, <-chan url.Values) {
	t.Helper()
	got := make(chan url.Values, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		select {
		case got <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte("<!doctype html><title>Connected</title><p>You can close this window.</p>"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/callback", got
}

// TestRealBrowserConsent opens the authorization URL in headless Chromium:
// the consent page names the client, the redirect host, the server and the
// scopes (in words, with their names); a click on Approve, then on the
// provider's Sign in, lands on the client's redirect URI with a code that
// redeems; a click on Deny lands there with error=access_denied.
func TestRealBrowserConsent(t *testing.T) {
	g, chromium := startBrowserGateway(t)
	redirect, landed := redirectTarget(t)
	c := g.register(t, "support-assistant", map[string]any{"client_name": "Acme Desktop", "redirect_uris": []string{redirect},
		"token_endpoint_auth_method": "none"})
	redirectHost := testenv.HostOf(redirect)
	shows, _ := json.Marshal([]string{"Acme Desktop", "support-assistant", "Read your support tickets", "tickets.read", "See your account details", "accounts.read", redirectHost})

	for _, decision := range []string{"approve", "deny"} {
		t.Run(decision, func(t *testing.T) {
			verifier, challenge := testenv.PKCE()
			authorize := c.AuthorizeURL("support-assistant", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"},
				"scope": {"tickets.read accounts.read"}, "resource": {g.public + "/support"}})
			screenshot := ""
			if decision == "approve" {
				screenshot = "consent.png"
			}
			out := runChromium(t, chromium, screenshot, "browser-consent.mjs", authorize, redirect, decision, string(shows))
			if !strings.Contains(out, "LANDED "+redirect+"?") {
				t.Fatalf("the browser did not land on the redirect URI:\n%s", out)
			}
			var q url.Values
			select {
			case q = <-landed:
			case <-time.After(5 * time.Second):
				t.Fatal("the redirect URI saw no request")
			}
			if q.Get("state") != testenv.DefaultState || q.Get("iss") != g.issuer("support-assistant") {
				t.Errorf("redirect query %v lacks the state or the issuer", q)
			}
			if decision == "deny" {
				if q.Get("error") != "access_denied" || q.Get("code") != "" {
					t.Errorf("Deny landed with %v, want error=access_denied and no code", q)
				}
				return
			}
			tok := c.token(t, "support-assistant", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
				"redirect_uri": {redirect}, "code_verifier": {verifier}})
			if tok.Status != http.StatusOK || tok.Scope != "accounts.read tickets.read" {
				t.Fatalf("redeeming the code from the browser: %d %s %s", tok.Status, tok.Error, tok.Description)
			}
			if status := g.mcpStatus(t, "/support", tok.AccessToken); status != http.StatusOK {
				t.Errorf("MCP status %d with the token", status)
			}
			if user, ok := g.provider.LastAuthorize(); !ok || user.ClientID != testenv.DefaultClientID {
				t.Errorf("the provider's last authorization request came from %+v", user)
			}
		})
	}
}
