package authserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// ignoredScopes are dropped from client requests before resolution: they
// concern the gateway's own session, not the MCP server's API.
var ignoredScopes = scopes.MustParse("openid offline_access")

// maxFormBytes bounds every form and JSON body the edge reads.
const maxFormBytes = 64 << 10

// authorizeRequest is a validated authorization request.
type authorizeRequest struct {
	client      *grants.Client
	redirectURI string
	state       string
	challenge   string
	scopes      scopes.Set
	resource    string
}

// serveAuthorize handles the authorization endpoint. Errors found before the
// client and its redirect URI are known are shown to the user as a page,
// never redirected (no open redirect); later errors go back to a client of
// the config, and are a page for one that registered itself (see
// checkAuthorizeRequest).
func (e *Edge) serveAuthorize(w http.ResponseWriter, r *http.Request, s *Server) {
	if !requireMethod(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	if t := take(e.limits.authorize, e.clientAddress(r), "authorization"); t != nil {
		e.refuseTooMany(w, r, s, "", t, true)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		e.errorPage(w, http.StatusBadRequest, "The authorization request could not be read", "Its parameters are malformed or too large. Start again from your MCP client.")
		return
	}
	q := r.Form
	for _, name := range []string{"client_id", "redirect_uri", "response_type", "state", "code_challenge", "code_challenge_method", "scope", "resource"} {
		if len(q[name]) > 1 {
			e.errorPage(w, http.StatusBadRequest, "The authorization request is ambiguous", "The parameter "+name+" appears more than once. Start again from your MCP client.")
			return
		}
	}
	ctx := r.Context()
	clientID := q.Get("client_id")
	if clientID == "" {
		e.errorPage(w, http.StatusBadRequest, "The authorization request names no client", "The client_id parameter is missing. The MCP client that sent you here must register first.")
		return
	}
	client, ok := e.clientForPage(ctx, w, s, clientID)
	if !ok {
		return
	}
	req, refused := e.checkAuthorizeRequest(s, client, q)
	if refused != nil {
		reason := refused.code
		if reason == "" {
			reason = "redirect_uri not registered"
		}
		e.count(s, AuthorizationRefused)
		e.audit("authorization refused", s, client.ID, "", "", zap.String("reason", reason))
		if refused.redirectURI == "" {
			e.errorPage(w, http.StatusBadRequest, refused.title, refused.message)
		} else {
			e.redirectError(w, r, s, refused.redirectURI, refused.state, refused.code, refused.description)
		}
		return
	}

	e.count(s, AuthorizationStarted)
	browser := e.browserCookie(w, r)
	now := e.opts.Now()
	p := &grants.Pending{
		Server:        s.Name,
		ClientID:      client.ID,
		RedirectURI:   req.redirectURI,
		State:         req.state,
		CodeChallenge: req.challenge,
		Scopes:        req.scopes.String(),
		Resource:      req.resource,
		BrowserHash:   hashWithLabel("browser", browser),
		CreatedAt:     now,
		ExpiresAt:     now.Add(e.opts.AuthorizationTTL),
	}
	user, earlier := e.earlierConsent(ctx, s, browser, p)
	if !earlier.IsEmpty() && earlier.ContainsAll(req.scopes) {
		// The consent is that user's: the callback checks that they are
		// the one who signs in, and asks anyone else.
		p.RememberedFor = user
		e.audit("consent given", s, p.ClientID, user, p.Scopes, zap.Bool("remembered", true))
		e.startDownstream(w, r, s, p)
		return
	}
	handle := randomToken()
	if err := s.Gateway().Ledger.SavePending(ctx, handle, p); err != nil {
		e.log.Error("saving a pending authorization", zap.String("server", s.Name), zap.Error(err))
		e.errorPage(w, http.StatusServiceUnavailable, "The gateway cannot record your authorization right now", "Its storage is unavailable. Try again in a moment.")
		return
	}
	e.renderConsent(w, s, client, req, earlier, handle, csrfToken(browser, handle), "")
}

// authorizeRefusal is a refused authorization request. When redirectURI is
// empty the user is shown a page with title and message; otherwise the
// client gets code and description at its redirect URI. code names the
// refusal in the audit log either way.
type authorizeRefusal struct {
	title, message                        string
	redirectURI, state, code, description string
}

// checkAuthorizeRequest validates the parameters of an authorization
// request from a known client. It does no I/O, so it can be fuzzed.
//
// A refusal goes back to the client's redirect URI only when the operator
// configured that client: any application can register itself, or publish
// a metadata document, with an https redirect URI of its choice, and
// redirecting to it before the user has seen anything would make the
// gateway an open redirector (RFC 9700 §4.11.2). Self-registered clients
// get their refusals as a page; once the user has answered the consent
// page, the answer goes back to them as usual.
func (e *Edge) checkAuthorizeRequest(s *Server, client *grants.Client, q url.Values) (*authorizeRequest, *authorizeRefusal) {
	redirectURI := q.Get("redirect_uri")
	if redirectURI == "" && len(client.RedirectURIs) == 1 && !isLoopbackRedirect(client.RedirectURIs[0]) {
		redirectURI = client.RedirectURIs[0]
	}
	if redirectURI == "" || !redirectURIMatches(client.RedirectURIs, redirectURI) {
		return nil, &authorizeRefusal{title: "Redirect URI not registered",
			message: "The application asked to return you to an address it did not register. For your safety the gateway does not send you there."}
	}

	state := q.Get("state")
	fail := func(code, desc string) (*authorizeRequest, *authorizeRefusal) {
		if client.Source != grants.SourceConfig {
			return nil, &authorizeRefusal{code: code, title: "The application's authorization request was refused",
				message: "The gateway cannot accept it (" + code + ": " + describe(desc) + "). The application registered itself, so the gateway does not send you back to it before you have answered. Start again from your MCP client; if this page comes back, the application needs fixing."}
		}
		return nil, &authorizeRefusal{redirectURI: redirectURI, state: state, code: code, description: desc}
	}
	if len(client.Servers) > 0 && !contains(client.Servers, s.Name) {
		return fail("unauthorized_client", "this client may not authorize for server "+s.Name)
	}
	if rt := q.Get("response_type"); rt != "code" {
		return fail("unsupported_response_type", "only response_type=code is supported")
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "":
		return fail("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256")
	case method != "S256":
		return fail("invalid_request", "code_challenge_method must be S256 (plain is not accepted)")
	case !isS256Challenge(challenge):
		return fail("invalid_request", "code_challenge must be the 43-character base64url SHA-256 of the code verifier")
	}
	requested, err := scopes.Parse(q.Get("scope"))
	if err != nil {
		return fail("invalid_scope", err.Error())
	}
	granted, err := s.Rule.Resolve(requested.Minus(ignoredScopes))
	if err != nil {
		return fail("invalid_scope", err.Error())
	}
	if q.Has("resource") && !e.resourceMatches(s, q.Get("resource")) {
		return fail("invalid_target", "resource "+q.Get("resource")+" is not served by this authorization endpoint; use "+s.Resource+" (the issuer of each MCP server is "+e.opts.PublicURL+OAuthPrefix+"<server>)")
	}
	return &authorizeRequest{client: client, redirectURI: redirectURI, state: state, challenge: challenge, scopes: granted, resource: s.Resource}, nil
}

// serveConsent receives the consent form. The pending authorization is taken
// (single use), bound to the browser that started it, and CSRF-checked.
// Everything that needs no storage is checked first, and the record is
// locked only once it is known to be this browser's: answers that cannot
// be, however many, never make the gateway lock its storage.
func (e *Edge) serveConsent(w http.ResponseWriter, r *http.Request, s *Server) {
	if r.Method != http.MethodPost {
		e.errorPage(w, http.StatusMethodNotAllowed, "Use the consent form", "This address only accepts the consent form's answer.")
		return
	}
	if t := take(e.limits.callback, e.clientAddress(r), "sign-in"); t != nil {
		e.refuseTooMany(w, r, s, "", t, true)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		e.errorPage(w, http.StatusBadRequest, "The consent answer could not be read", "Start again from your MCP client.")
		return
	}
	handle, csrf := r.PostForm.Get("handle"), r.PostForm.Get("csrf")
	browser := e.readBrowserCookie(r)
	if !isToken(handle) || browser == "" || csrf == "" ||
		subtle.ConstantTimeCompare([]byte(csrf), []byte(csrfToken(browser, handle))) != 1 {
		e.errorPage(w, http.StatusForbidden, "This consent answer was not sent from the consent page", "It lacks the page's security token or came from another browser. Start again from your MCP client.")
		return
	}
	ctx := r.Context()
	p, err := s.Gateway().Ledger.TakePendingOf(ctx, handle, hashWithLabel("browser", browser))
	if errors.Is(err, grants.ErrOtherBrowser) {
		e.errorPage(w, http.StatusForbidden, "This authorization belongs to another browser", "Start again from your MCP client in this browser.")
		return
	}
	if err != nil {
		e.pendingErrorPage(w, s, err)
		return
	}
	if p.Server != s.Name {
		e.errorPage(w, http.StatusForbidden, "This authorization belongs to another server", "Start again from your MCP client.")
		return
	}
	if p.DownstreamVerifier != "" {
		// A downstream state, not a consent page's handle.
		e.pendingErrorPage(w, s, grants.ErrNotFound)
		return
	}
	if r.PostForm.Get("decision") != "approve" {
		e.count(s, AuthorizationDenied)
		e.audit("consent refused", s, p.ClientID, p.User, p.Scopes)
		e.redirectError(w, r, s, p.RedirectURI, p.State, "access_denied", "the user denied the authorization request")
		return
	}
	e.audit("consent given", s, p.ClientID, p.User, p.Scopes)
	if p.User != "" {
		// Asked after the sign-in (see serveCallback): the user who
		// signed in has now approved, and their grant is already kept.
		e.issueCode(w, r, s, p, p.User, true)
		return
	}
	e.startDownstream(w, r, s, p)
}

// startDownstream stores the consented authorization under a fresh
// downstream state and sends the browser to the downstream server's login.
func (e *Edge) startDownstream(w http.ResponseWriter, r *http.Request, s *Server, p *grants.Pending) {
	g := s.Gateway()
	authURL, err := e.downstreamSignIn(r.Context(), g, p)
	switch {
	case errors.Is(err, errPendingNotSaved):
		e.log.Error("saving a pending authorization", zap.String("server", s.Name), zap.Error(err))
		e.redirectError(w, r, s, p.RedirectURI, p.State, "temporarily_unavailable", "the gateway's storage is unavailable; try again later")
	case err != nil:
		e.log.Error("reaching the downstream authorization server", zap.String("gateway", g.Name), zap.Error(err))
		e.redirectError(w, r, s, p.RedirectURI, p.State, "temporarily_unavailable", "the downstream authorization server cannot be reached; try again later")
	default:
		http.Redirect(w, r, authURL, http.StatusFound)
	}
}

// errPendingNotSaved marks a sign-in that could not be recorded.
var errPendingNotSaved = errors.New("saving the pending sign-in")

// downstreamSignIn stores p under a fresh downstream state (single use),
// with the gateway's own PKCE verifier, and returns the downstream
// server's authorization URL, where the browser signs in; serveCallback
// takes it from there. Authorizations and sign-ins to the connected-apps
// page (p.Account) start alike.
func (e *Edge) downstreamSignIn(ctx context.Context, g *Gateway, p *grants.Pending) (string, error) {
	state, verifier := randomToken(), randomToken()+randomToken()[:11] // 54 chars, within PKCE's 43-128
	p.DownstreamVerifier = verifier
	authURL, err := g.Downstream.AuthCodeURL(ctx, state, verifier)
	if err != nil {
		return "", err
	}
	if err := g.Ledger.SavePending(ctx, state, p); err != nil {
		return "", fmt.Errorf("%w: %w", errPendingNotSaved, err)
	}
	return authURL, nil
}

// earlierConsent returns the user this browser last signed in as and the
// scopes they already approved for this client, server and redirect URI
// (empty if none). When they cover the request, consent is not asked
// again, provided that user is the one who signs in (see serveCallback);
// otherwise the consent page marks the scopes that are new, as when a
// client asks for more to call a tool (step-up authorization).
func (e *Edge) earlierConsent(ctx context.Context, s *Server, browser string, p *grants.Pending) (string, scopes.Set) {
	user, err := s.Gateway().Ledger.BrowserUser(ctx, hashWithLabel("browser", browser))
	if err != nil {
		return "", scopes.Set{}
	}
	return user, e.consentedScopes(ctx, s, user, p)
}

// consentedScopes returns the scopes user approved for p's client and
// redirect URI at s (empty if none).
func (e *Edge) consentedScopes(ctx context.Context, s *Server, user string, p *grants.Pending) scopes.Set {
	c, err := s.Gateway().Ledger.Consent(ctx, user, p.ClientID, s.Name)
	if err != nil || c.RedirectURI != p.RedirectURI {
		return scopes.Set{}
	}
	consented, err := scopes.Parse(c.Scopes)
	if err != nil {
		return scopes.Set{}
	}
	return consented
}

// redirectError sends the browser back to the client with an OAuth error,
// its state and the issuer (RFC 9207).
func (e *Edge) redirectError(w http.ResponseWriter, r *http.Request, s *Server, redirectURI, state, code, desc string) {
	v := url.Values{"error": {code}, "error_description": {describe(desc)}, "iss": {s.Issuer}}
	if state != "" {
		v.Set("state", state)
	}
	http.Redirect(w, r, appendQuery(redirectURI, v), http.StatusFound)
}

func appendQuery(rawURL string, v url.Values) string {
	sep := "?"
	if strings.Contains(rawURL, "?") {
		sep = "&"
	}
	return rawURL + sep + v.Encode()
}

// resourceMatches accepts the server's canonical resource URI as clients
// really send it: with a trailing slash, an upper-case scheme or host, or
// only the origin (which, on a server's own issuer, can mean only it).
func (e *Edge) resourceMatches(s *Server, resource string) bool {
	u, err := url.Parse(resource)
	if err != nil || u.Fragment != "" || u.RawQuery != "" {
		return false
	}
	got := strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + strings.TrimSuffix(u.EscapedPath(), "/")
	want, _ := url.Parse(s.Resource)
	origin := want.Scheme + "://" + strings.ToLower(want.Host)
	return got == origin+want.EscapedPath() || got == origin
}

func (e *Edge) browserCookieName() string {
	if e.secure {
		return "__Host-mcp_gateway_browser"
	}
	return "mcp_gateway_browser"
}

// browserCookie returns the browser-binding cookie, setting a new one when
// the browser has none. It ties the consent, the downstream login and the
// callback to one browser, so a flow cannot be completed elsewhere.
func (e *Edge) browserCookie(w http.ResponseWriter, r *http.Request) string {
	if v := e.readBrowserCookie(r); v != "" {
		return v
	}
	v := randomToken()
	http.SetCookie(w, &http.Cookie{
		Name:     e.browserCookieName(),
		Value:    v,
		Path:     "/",
		MaxAge:   int(e.opts.RefreshTokenTTL.Seconds()),
		HttpOnly: true,
		Secure:   e.secure,
		SameSite: http.SameSiteLaxMode,
	})
	return v
}

// readBrowserCookie returns the request's browser-binding cookie if it has
// the form browserCookie gives it, or "".
func (e *Edge) readBrowserCookie(r *http.Request) string {
	if v := readCookie(r, e.browserCookieName()); isToken(v) {
		return v
	}
	return ""
}

func readCookie(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// isToken reports whether v has the form of a randomToken: 43 base64url
// characters. Browser cookies, consent handles and downstream states are
// checked with it before anything is looked up for them.
func isToken(v string) bool {
	if len(v) != 43 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// isS256Challenge reports whether c looks like a base64url SHA-256 digest.
func isS256Challenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil
}

// verifyPKCE checks an RFC 7636 code verifier against its S256 challenge.
func verifyPKCE(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for i := 0; i < len(verifier); i++ {
		c := verifier[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// randomToken returns 256 random bits, base64url (43 characters).
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// csrfToken is the consent form's CSRF token: bound to the browser and to
// the one pending authorization the form answers.
func csrfToken(browser, handle string) string {
	return hashWithLabel("csrf", browser+"\x00"+handle)
}

// hashWithLabel derives a value from a secret for one purpose only.
func hashWithLabel(label, secret string) string {
	sum := sha256.Sum256([]byte("mcp_gateway " + label + "\x00" + secret))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func clientLookupMessage(err error) string {
	var fe *clientError
	if errors.As(err, &fe) {
		return fe.Error()
	}
	return "The application is not registered with this gateway (or its registration was removed). Reconnect it so it registers again."
}

// pendingErrorPage explains a pending authorization that cannot be found.
func (e *Edge) pendingErrorPage(w http.ResponseWriter, s *Server, err error) {
	if errors.Is(err, grants.ErrNotFound) || errors.Is(err, grants.ErrExpired) {
		e.errorPage(w, http.StatusBadRequest, "This sign-in has expired or was already used", "Start again from your MCP client.")
		return
	}
	e.log.Error("reading a pending authorization", zap.String("server", s.Name), zap.Error(err))
	e.errorPage(w, http.StatusServiceUnavailable, "The gateway cannot read your authorization right now", "Its storage is unavailable. Try again in a moment.")
}

// clientForPage resolves the client a browser flow names, or answers with
// the error page and reports false.
func (e *Edge) clientForPage(ctx context.Context, w http.ResponseWriter, s *Server, clientID string) (*grants.Client, bool) {
	client, err := e.lookupClient(ctx, s.Gateway(), clientID)
	if storageUnavailable(err) {
		e.errorPage(w, http.StatusServiceUnavailable, "The gateway cannot read its registrations right now", clientLookupMessage(err))
		return nil, false
	}
	if err != nil {
		e.count(s, AuthorizationRefused)
		e.errorPage(w, http.StatusBadRequest, "Unknown client", clientLookupMessage(err))
		return nil, false
	}
	return client, true
}
