package authserver

import (
	"crypto/subtle"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
)

// serveCallback completes the downstream login: it takes the pending
// authorization named by the downstream state (single use, expiring, bound to
// this browser), exchanges the downstream code, resolves the user, keeps the
// downstream token set, and returns the browser to the MCP client with a
// single-use gateway code.
func (e *Edge) serveCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		e.errorPage(w, http.StatusMethodNotAllowed, "Wrong method", "The sign-in callback is reached by the identity provider's redirect.")
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		e.errorPage(w, http.StatusBadRequest, "The sign-in response is incomplete", "It carries no state. Start again from your MCP client.")
		return
	}
	browser := readCookie(r, e.browserCookieName())
	ctx := r.Context()
	// The state names a gateway's pending authorization; try each gateway.
	var (
		s *Server
		p *grants.Pending
	)
	for _, g := range e.gateways() {
		found, err := g.Ledger.TakePending(ctx, state)
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
	if p == nil || s == nil {
		e.errorPage(w, http.StatusBadRequest, "This sign-in has expired or was already used", "Start again from your MCP client.")
		return
	}
	if browser == "" || subtle.ConstantTimeCompare([]byte(p.BrowserHash), []byte(hashWithLabel("browser", browser))) != 1 {
		// The confused-deputy defence: the login must finish in the browser
		// that gave consent.
		e.count(s, AuthorizationRefused)
		e.audit("callback refused", s, p.ClientID, "", p.Scopes, zap.String("reason", "different browser"))
		e.errorPage(w, http.StatusForbidden, "This sign-in was started in another browser",
			"For your safety the gateway only completes a sign-in in the browser where you approved it. Start again from your MCP client.")
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
	g := s.Gateway
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
	consent := &grants.Consent{User: res.User, ClientID: p.ClientID, Server: s.Name, Scopes: p.Scopes, RedirectURI: p.RedirectURI, GrantedAt: now}
	if err := g.Ledger.SaveConsent(ctx, consent); err != nil {
		e.log.Warn("saving a consent", zap.String("gateway", g.Name), zap.Error(err))
	}
	if err := g.Ledger.RememberBrowser(ctx, p.BrowserHash, res.User, now.Add(e.opts.RefreshTokenTTL)); err != nil {
		e.log.Warn("remembering the browser's user", zap.String("gateway", g.Name), zap.Error(err))
	}
	code, err := g.Ledger.IssueCode(ctx, &grants.Code{
		ClientID:      p.ClientID,
		RedirectURI:   p.RedirectURI,
		CodeChallenge: p.CodeChallenge,
		Server:        s.Name,
		Resource:      p.Resource,
		Scopes:        p.Scopes,
		User:          res.User,
		IssuedAt:      now,
		ExpiresAt:     now.Add(e.opts.CodeTTL),
	})
	if err != nil {
		e.log.Error("issuing an authorization code", zap.String("server", s.Name), zap.Error(err))
		e.redirectError(w, r, s, p.RedirectURI, p.State, "temporarily_unavailable", "the gateway's storage is unavailable; try again later")
		return
	}
	e.count(s, AuthorizationCompleted)
	e.audit("grant created", s, p.ClientID, res.User, p.Scopes)
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
			seen = seen || g == s.Gateway
		}
		if !seen {
			out = append(out, s.Gateway)
		}
	}
	return out
}
