package authserver

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// serveCallback completes the downstream login: it takes the pending
// authorization named by the downstream state (single use, expiring, bound to
// this browser), exchanges the downstream code, resolves the user, keeps the
// downstream token set, and returns the browser to the MCP client with a
// single-use gateway code. A sign-in to the connected-apps page ends
// instead in finishAccountSignIn.
//
// Everything that needs no storage is checked first (the rate limit, the
// form of the state and of the browser cookie), and the record is locked
// only once a plain read shows it is this browser's: callbacks that cannot
// be, however many, never make the gateway lock its storage.
func (e *Edge) serveCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		e.errorPage(w, http.StatusMethodNotAllowed, "Wrong method", "The sign-in callback is reached by the identity provider's redirect.")
		return
	}
	if t := take(e.limits.callback, e.clientAddress(r), "sign-in"); t != nil {
		e.refuseTooMany(w, r, nil, "", t, true)
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		e.errorPage(w, http.StatusBadRequest, "The sign-in response is incomplete", "It carries no state. Start again from your MCP client.")
		return
	}
	if !isToken(state) {
		// Not a state the gateway made: as unknown as one it forgot.
		e.errorPage(w, http.StatusBadRequest, "This sign-in has expired or was already used", "Start again from your MCP client.")
		return
	}
	browser := e.readBrowserCookie(r)
	if browser == "" {
		e.audit("callback refused", nil, "", "", "", zap.String("reason", "no browser cookie, or a malformed one"))
		e.refuseOtherBrowser(w)
		return
	}
	ctx := r.Context()
	browserHash := hashWithLabel("browser", browser)
	// The state names a gateway's pending authorization; try each gateway.
	var (
		s *Server
		p *grants.Pending
	)
	for _, g := range e.gateways() {
		found, err := g.Ledger.TakePendingOf(ctx, state, browserHash)
		if errors.Is(err, grants.ErrOtherBrowser) {
			// The confused-deputy defence: the login must finish in the
			// browser that gave consent. The record stays for it.
			if s := e.byName[found.Server]; s != nil {
				e.count(s, AuthorizationRefused)
				e.audit("callback refused", s, found.ClientID, "", found.Scopes, zap.String("reason", "different browser"))
			}
			e.refuseOtherBrowser(w)
			return
		}
		if err == nil && found.Account {
			e.finishAccountSignIn(w, r, g, found)
			return
		}
		if err == nil {
			p = found
			s = e.byName[found.Server]
			break
		}
		if !isNotFound(err) {
			e.log.Error("reading a pending authorization", zap.String("gateway", g.Name), zap.Error(err))
			e.errorPage(w, http.StatusServiceUnavailable, "The gateway cannot read your authorization right now", "Its storage is unavailable. Try again in a moment.")
			return
		}
	}
	if p == nil || s == nil || p.DownstreamVerifier == "" {
		// Unknown, used, expired, of a server no longer configured, or
		// a consent page's handle rather than a downstream state.
		e.errorPage(w, http.StatusBadRequest, "This sign-in has expired or was already used", "Start again from your MCP client.")
		return
	}
	if errCode := q.Get("error"); errCode != "" {
		code := "server_error"
		if errCode == "access_denied" {
			code = "access_denied"
		}
		e.count(s, AuthorizationRefused)
		e.audit("downstream login refused", s, p.ClientID, "", p.Scopes, zap.String("downstream_error", errCode))
		e.redirectError(w, r, s, p.RedirectURI, p.State, code, "the identity provider answered "+errCode)
		return
	}
	g := s.Gateway()
	res, err := g.Downstream.Exchange(ctx, q.Get("code"), p.DownstreamVerifier)
	if err != nil {
		e.log.Warn("completing the downstream login", zap.String("gateway", g.Name), zap.Error(err))
		e.redirectError(w, r, s, p.RedirectURI, p.State, "server_error", "the sign-in at the identity provider could not be completed; try again")
		return
	}
	now := e.opts.Now()
	grant := &grants.Grant{User: res.User, Token: res.Token, Scopes: res.Scopes, CreatedAt: now, RefreshedAt: now}
	if err := g.Broker.Put(ctx, grant); err != nil {
		e.log.Error("saving a grant", zap.String("gateway", g.Name), zap.Error(err))
		e.redirectError(w, r, s, p.RedirectURI, p.State, "temporarily_unavailable", "the gateway's storage is unavailable; try again later")
		return
	}
	if err := g.Ledger.RememberBrowser(ctx, p.BrowserHash, res.User, now.Add(e.opts.RefreshTokenTTL)); err != nil {
		e.log.Warn("remembering the browser's user", zap.String("gateway", g.Name), zap.Error(err))
	}
	if p.RememberedFor == "" {
		// The consent page was shown in this browser and approved: the
		// consent is the signed-in user's.
		e.issueCode(w, r, s, p, res.User, true)
		return
	}
	// A consent remembered for the user this browser last signed in as
	// skipped the page. It holds only for that user, or for one who gave
	// the same consent themselves; anyone else is asked now.
	if res.User == p.RememberedFor || e.consentCovers(ctx, s, res.User, p) {
		e.issueCode(w, r, s, p, res.User, false)
		return
	}
	e.audit("consent asked again", s, p.ClientID, res.User, p.Scopes,
		zap.String("reason", "another user signed in than the one whose consent was remembered"))
	e.askConsentSignedIn(ctx, w, s, p, res.User, browser)
}

// consentCovers reports whether user has approved every scope of p for its
// client and redirect URI at s.
func (e *Edge) consentCovers(ctx context.Context, s *Server, user string, p *grants.Pending) bool {
	requested, err := scopes.Parse(p.Scopes)
	if err != nil || requested.IsEmpty() {
		return false
	}
	consented := e.consentedScopes(ctx, s, user, p)
	return !consented.IsEmpty() && consented.ContainsAll(requested)
}

// refuseOtherBrowser answers a callback from a browser that did not start
// the authorization (or sends no binding cookie at all).
func (e *Edge) refuseOtherBrowser(w http.ResponseWriter) {
	e.errorPage(w, http.StatusForbidden, "This sign-in was started in another browser",
		"For your safety the gateway only completes a sign-in in the browser where you approved it. Start again from your MCP client.")
}

// askConsentSignedIn shows the consent page to user, who has just signed
// in, for the authorization p, whose page was skipped for someone else.
// Its answer (serveConsent) issues the code for user, or refuses; the
// user's downstream grant is already kept either way, as after any sign-in.
func (e *Edge) askConsentSignedIn(ctx context.Context, w http.ResponseWriter, s *Server, p *grants.Pending, user, browser string) {
	client, ok := e.clientForPage(ctx, w, s, p.ClientID)
	if !ok {
		return
	}
	requested, err := scopes.Parse(p.Scopes)
	if err != nil {
		e.log.Error("reading a pending authorization's scopes", zap.String("server", s.Name), zap.Error(err))
		e.errorPage(w, http.StatusInternalServerError, "The gateway cannot read your authorization", "Start again from your MCP client.")
		return
	}
	asked := *p
	asked.RememberedFor, asked.DownstreamVerifier, asked.User = "", "", user
	asked.ExpiresAt = e.opts.Now().Add(e.opts.AuthorizationTTL)
	handle := randomToken()
	if err := s.Gateway().Ledger.SavePending(ctx, handle, &asked); err != nil {
		e.log.Error("saving a pending authorization", zap.String("server", s.Name), zap.Error(err))
		e.errorPage(w, http.StatusServiceUnavailable, "The gateway cannot record your authorization right now", "Its storage is unavailable. Try again in a moment.")
		return
	}
	req := &authorizeRequest{client: client, redirectURI: p.RedirectURI, state: p.State, challenge: p.CodeChallenge, scopes: requested, resource: p.Resource}
	e.renderConsent(w, s, client, req, e.consentedScopes(ctx, s, user, p), handle, csrfToken(browser, handle), user)
}

// issueCode ends an authorization for user, who signed in and consented:
// it saves the consent when the user gave it now (saveConsent), and
// returns the browser to the client with a single-use code and the issuer
// (RFC 9207). A consent that was remembered is left as it was.
func (e *Edge) issueCode(w http.ResponseWriter, r *http.Request, s *Server, p *grants.Pending, user string, saveConsent bool) {
	ctx := r.Context()
	g := s.Gateway()
	now := e.opts.Now()
	if saveConsent {
		consent := &grants.Consent{User: user, ClientID: p.ClientID, Server: s.Name, Scopes: p.Scopes, RedirectURI: p.RedirectURI, GrantedAt: now}
		if err := g.Ledger.SaveConsent(ctx, consent); err != nil {
			e.log.Warn("saving a consent", zap.String("gateway", g.Name), zap.Error(err))
		}
	}
	code, err := g.Ledger.IssueCode(ctx, &grants.Code{
		ClientID:      p.ClientID,
		RedirectURI:   p.RedirectURI,
		CodeChallenge: p.CodeChallenge,
		Server:        s.Name,
		Resource:      p.Resource,
		Scopes:        p.Scopes,
		User:          user,
		IssuedAt:      now,
		ExpiresAt:     now.Add(e.opts.CodeTTL),
	})
	if err != nil {
		e.log.Error("issuing an authorization code", zap.String("server", s.Name), zap.Error(err))
		e.redirectError(w, r, s, p.RedirectURI, p.State, "temporarily_unavailable", "the gateway's storage is unavailable; try again later")
		return
	}
	e.count(s, AuthorizationCompleted)
	e.audit("grant created", s, p.ClientID, user, p.Scopes)
	v := url.Values{"code": {code}, "iss": {s.Issuer}}
	if p.State != "" {
		v.Set("state", p.State)
	}
	http.Redirect(w, r, appendQuery(p.RedirectURI, v), http.StatusFound)
}

// gateways lists the distinct gateways of the edge's servers.
func (e *Edge) gateways() []*Gateway {
	var out []*Gateway
	for _, s := range e.servers {
		seen := false
		for _, g := range out {
			seen = seen || g == s.Gateway()
		}
		if !seen {
			out = append(out, s.Gateway())
		}
	}
	return out
}
