package authserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/mcpcalls"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// The handler tests drive one edge through its exported entry points,
// ServeOAuth and Authorize, with httptest: the gateway "acme" over an
// in-memory store, two servers and two clients. The downstream
// authorization server is configured but never reached: no endpoint
// tested here talks to it (the callback, which does, is tested end to end
// in caddymodule).
const (
	publicURL = "https://mcp.example.com"

	// publicClient registered itself: a public client at a loopback
	// redirect URI.
	publicClient   = "public-app"
	publicRedirect = "http://127.0.0.1:33418/callback"

	// configClient is a confidential client of the config, allowed the
	// support server only.
	configClient   = "config-app"
	configSecret   = "config-secret-of-32-bytes-or-so.."
	configRedirect = "https://app.example.com/callback"

	downstreamAuthorize = "https://idp.example.com/authorize"
	downstreamClientID  = "gateway-at-idp"

	// user has a downstream grant with a token for each server.
	user = "alice"
)

// testEdge is the edge under test and its parts.
type testEdge struct {
	t     *testing.T
	store *store.MemoryStore
	clock *clock
	edge  *authserver.Edge
	gw    *authserver.Gateway
	// support is at /support and offers accounts.read and tickets.read;
	// ops is at /teams/ops and offers admin.read and tickets.write, and
	// its tool "restart" needs admin.read.
	support, ops *authserver.Server
}

func newTestEdge(t *testing.T) *testEdge {
	t.Helper()
	ctx := context.Background()
	te := &testEdge{t: t, store: store.NewMemoryStore(), clock: &clock{now: time.Now()}}
	te.gw = newGateway(t, te.store, te.clock.Now)
	te.gw.Downstream = downstream.New(downstream.Config{
		ClientID:    downstreamClientID,
		Endpoints:   downstream.Metadata{AuthorizationEndpoint: downstreamAuthorize, TokenEndpoint: "https://idp.example.com/token"},
		Scopes:      te.gw.Scopes.Tokens(),
		LoginScopes: []string{"openid", "offline_access"},
		RedirectURL: publicURL + authserver.CallbackPath,
	})
	te.gw.Clients = map[string]*grants.Client{configClient: {
		ID:                      configClient,
		Name:                    "Config App",
		SecretHash:              grants.HashSecret(configSecret),
		RedirectURIs:            []string{configRedirect},
		TokenEndpointAuthMethod: "client_secret_basic",
		Servers:                 []string{"support"},
		Source:                  grants.SourceConfig,
	}}
	server := func(name, path, offered string) *authserver.Server {
		return &authserver.Server{
			Name:    name,
			Path:    path,
			Rule:    scopes.Rule{Offered: scopes.MustParse(offered)},
			Gateway: func() *authserver.Gateway { return te.gw },
			// Every client of a server gets the server's narrowed token:
			// the edge's tests are about the edge, and the grant's
			// narrowing to each client's scopes has its own in grants.
			Narrowing: &grants.Narrowing{Key: name, Scopes: func(string) []string {
				return append([]string{"openid", "offline_access"}, strings.Fields(offered)...)
			}},
		}
	}
	te.support = server("support", "/support", "accounts.read tickets.read")
	te.ops = server("ops", "/teams/ops", "admin.read tickets.write")
	te.ops.Calls = mcpcalls.NewPolicy(mcpcalls.Rules{Tools: map[string]scopes.Set{"restart": scopes.MustParse("admin.read")}})
	te.edge = authserver.New(authserver.Options{PublicURL: publicURL, Now: te.clock.Now}, []*authserver.Server{te.support, te.ops})

	if err := te.gw.Ledger.SaveClient(ctx, &grants.Client{
		ID:                      publicClient,
		RedirectURIs:            []string{publicRedirect},
		TokenEndpointAuthMethod: "none",
		Source:                  grants.SourceRegistered,
	}); err != nil {
		t.Fatal(err)
	}
	// The user's downstream grant, with each server's narrowed token, as
	// the callback and the Broker would have left it.
	exp := te.clock.Now().Add(24 * time.Hour)
	if err := te.gw.Broker.Put(ctx, &grants.Grant{
		User:   user,
		Token:  &oauth2.Token{AccessToken: "downstream-" + user, RefreshToken: "downstream-refresh", Expiry: exp},
		Scopes: "openid offline_access " + te.gw.Scopes.String(),
		Narrowed: []*grants.NarrowedToken{
			{Server: "support", Token: &oauth2.Token{AccessToken: "support-token-" + user, Expiry: exp}, Scopes: "accounts.read offline_access openid tickets.read", IssuedAt: te.clock.Now()},
			{Server: "ops", Token: &oauth2.Token{AccessToken: "ops-token-" + user, Expiry: exp}, Scopes: "admin.read offline_access openid tickets.write", IssuedAt: te.clock.Now()},
		},
	}); err != nil {
		t.Fatal(err)
	}
	return te
}

// clock is the edge's and the ledger's clock, which a test may move on.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// serve runs r through ServeOAuth; it fails the test if the edge does not
// serve r.
func (te *testEdge) serve(r *http.Request) *httptest.ResponseRecorder {
	te.t.Helper()
	w := httptest.NewRecorder()
	if !te.edge.ServeOAuth(w, r) {
		te.t.Fatalf("%s %s was not served", r.Method, r.URL)
	}
	return w
}

// postForm is a form POST to path (below the public URL).
func postForm(path string, form url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, publicURL+path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

// preflight is a CORS preflight request for path.
func preflight(path string) *http.Request {
	r := httptest.NewRequest(http.MethodOptions, publicURL+path, nil)
	r.Header.Set("Origin", "https://inspector.example")
	r.Header.Set("Access-Control-Request-Method", "POST")
	return r
}

// pkce returns a fresh code verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	verifier = oauth2.GenerateVerifier()
	return verifier, oauth2.S256ChallengeFromVerifier(verifier)
}

// issueCode stores an authorization code as the callback does once the
// user has signed in downstream, and returns it.
func (te *testEdge) issueCode(c grants.Code) string {
	te.t.Helper()
	if c.User == "" {
		c.User = user
	}
	code, err := te.gw.Ledger.IssueCode(context.Background(), &c)
	if err != nil {
		te.t.Fatal(err)
	}
	return code
}

// publicCode is a code of the public client at support, and its verifier.
func (te *testEdge) publicCode() (code, verifier string) {
	verifier, challenge := pkce()
	return te.issueCode(grants.Code{ClientID: publicClient, RedirectURI: publicRedirect, CodeChallenge: challenge,
		Server: "support", Resource: te.support.Resource, Scopes: "accounts.read tickets.read"}), verifier
}

// tokens are the members of a token response the tests read.
type tokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

// exchange redeems a code of the public client at support and returns the
// tokens; it fails the test unless they are issued.
func (te *testEdge) exchange(code, verifier string) tokens {
	te.t.Helper()
	w := te.serve(postForm("/oauth/support/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {publicRedirect}, "client_id": {publicClient}}))
	return wantTokens(te.t, w)
}

// refresh posts a refresh of the public client at support.
func (te *testEdge) refresh(refreshToken string) *httptest.ResponseRecorder {
	te.t.Helper()
	return te.serve(postForm("/oauth/support/token", url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {refreshToken}, "client_id": {publicClient}}))
}

// accessToken signs an access token as the token endpoint does, for the
// user at s unless claims say otherwise.
func (te *testEdge) accessToken(s *authserver.Server, claims accesstoken.Claims) string {
	te.t.Helper()
	now := te.clock.Now()
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&claims.Issuer, s.Issuer)
	def(&claims.Audience, s.Resource)
	def(&claims.Subject, user)
	def(&claims.ClientID, publicClient)
	def(&claims.Scope, s.Rule.Offered.String())
	def(&claims.FamilyRef, "no-family")
	if claims.ExpiresAt.IsZero() {
		claims.ExpiresAt = now.Add(time.Hour)
	}
	tok, err := te.gw.Keys.Issue(claims)
	if err != nil {
		te.t.Fatal(err)
	}
	return tok
}

// mcpCall is a proxied MCP request to s with the token (none if empty).
func mcpCall(s *authserver.Server, token, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, publicURL+s.Path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

const pingBody = `{"jsonrpc":"2.0","id":1,"method":"ping"}`

// callAuthorize runs the per-request Authorize.
func (te *testEdge) callAuthorize(r *http.Request, s *authserver.Server) (authserver.Access, bool, *httptest.ResponseRecorder) {
	w := httptest.NewRecorder()
	a, ok := te.edge.Authorize(w, r, s)
	return a, ok, w
}

// consentPage is an authorization at its consent page: what the page's
// form sends back, and the browser cookie it was shown in.
type consentPage struct {
	handle, csrf string
	cookie       *http.Cookie
}

// startAuthorization sends the public client's authorization request for
// support and returns its consent page.
func (te *testEdge) startAuthorization() consentPage {
	te.t.Helper()
	_, challenge := pkce()
	w := te.serve(httptest.NewRequest(http.MethodGet, publicURL+"/oauth/support/authorize?"+authorizeQuery(publicClient, publicRedirect, challenge).Encode(), nil))
	p := readConsentPage(te.t, w)
	if p.cookie == nil {
		te.t.Fatalf("the consent page set no browser cookie: %v", w.Result().Cookies())
	}
	return p
}

// authorizeQuery is a valid authorization request's parameters.
func authorizeQuery(clientID, redirectURI, challenge string) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirectURI},
		"state": {"client-state"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
}

var hiddenInput = regexp.MustCompile(`name="(handle|csrf)" value="([^"]+)"`)

// readConsentPage reads the consent page's form and browser cookie.
func readConsentPage(t *testing.T, w *httptest.ResponseRecorder) consentPage {
	t.Helper()
	wantPage(t, w, http.StatusOK)
	var p consentPage
	for _, m := range hiddenInput.FindAllStringSubmatch(w.Body.String(), -1) {
		switch m[1] {
		case "handle":
			p.handle = html.UnescapeString(m[2])
		case "csrf":
			p.csrf = html.UnescapeString(m[2])
		}
	}
	if p.handle == "" || p.csrf == "" {
		t.Fatalf("no consent form on the page:\n%s", w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == "__Host-mcp_gateway_browser" {
			p.cookie = c
		}
	}
	return p
}

// answer posts form to server's consent endpoint from the browser holding
// cookie (none if nil).
func (p consentPage) answer(server string, form url.Values, cookie *http.Cookie) *http.Request {
	r := postForm("/oauth/"+server+"/consent", form)
	if cookie != nil {
		r.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	}
	return r
}

// form is the consent form as the page sends it.
func (p consentPage) form(decision string) url.Values {
	return url.Values{"handle": {p.handle}, "csrf": {p.csrf}, "decision": {decision}}
}

// wantOAuthError checks an OAuth error response: its status, the JSON
// error code, a description, and the headers every OAuth JSON response
// carries.
func wantOAuthError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	err := json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != status || err != nil || body.Error != code {
		t.Fatalf("got %d %s, want %d with error %q", w.Code, w.Body, status, code)
	}
	if body.Description == "" {
		t.Errorf("error %q has no error_description", code)
	}
	wantNoStore(t, w, "application/json")
}

// wantNoStore checks the content type and that the answer is not cached.
func wantNoStore(t *testing.T, w *httptest.ResponseRecorder, contentType string) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, contentType) {
		t.Errorf("Content-Type %q, want %s", ct, contentType)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
}

// wantPage checks an HTML page answer: never a redirect, never framed.
func wantPage(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("got %d, want a %d page:\n%s", w.Code, status, w.Body)
	}
	wantNoStore(t, w, "text/html")
	if loc := w.Header().Get("Location"); loc != "" {
		t.Errorf("a page with Location %s", loc)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q lets the page be framed", csp)
	}
}

// wantRedirect checks a 302 to the URL that starts with base and returns
// its query.
func wantRedirect(t *testing.T, w *httptest.ResponseRecorder, base string) url.Values {
	t.Helper()
	loc := w.Header().Get("Location")
	if w.Code != http.StatusFound || !strings.HasPrefix(loc, base+"?") {
		t.Fatalf("got %d to %q, want a redirect to %s:\n%s", w.Code, loc, base, w.Body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// wantRedirectError checks an OAuth error sent back to the client's
// redirect URI, with its state and the issuer (RFC 9207).
func wantRedirectError(t *testing.T, w *httptest.ResponseRecorder, s *authserver.Server, redirectURI, code string) {
	t.Helper()
	q := wantRedirect(t, w, redirectURI)
	if q.Get("error") != code || q.Get("error_description") == "" || q.Get("state") != "client-state" || q.Get("iss") != s.Issuer {
		t.Errorf("redirected with %v, want error %q, a description, state client-state and iss %s", q, code, s.Issuer)
	}
}

// wantTokens checks a token response and returns it.
func wantTokens(t *testing.T, w *httptest.ResponseRecorder) tokens {
	t.Helper()
	var tok tokens
	if w.Code != http.StatusOK {
		t.Fatalf("token endpoint: %d %s", w.Code, w.Body)
	}
	wantNoStore(t, w, "application/json")
	if err := json.Unmarshal(w.Body.Bytes(), &tok); err != nil || tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 {
		t.Fatalf("token response %s: %v", w.Body, err)
	}
	return tok
}

// basicAuth is the client_secret_basic header of id and secret, form-encoded
// first as RFC 6749 §2.3.1 asks.
func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}
