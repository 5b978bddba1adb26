package authserver

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
}

// serveToken handles the token endpoint: authorization_code,
// refresh_token, (for machine clients of the config) client_credentials,
// and (for clients an enterprise identity provider vouches for) JWT bearer
// grants.
func (e *Edge) serveToken(w http.ResponseWriter, r *http.Request, s *Server) {
	form, client, ok := e.clientRequest(w, r, s, func() { e.count(s, TokenRefusedOther) })
	if !ok {
		return
	}
	ctx := r.Context()
	var (
		resp *tokenResponse
		oerr *oauthError
	)
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
		resp, oerr = e.exchangeCode(ctx, s, client, form)
	case "refresh_token":
		resp, oerr = e.refresh(ctx, s, client, form)
	case GrantClientCredentials:
		resp, oerr = e.clientCredentials(ctx, s, client, form)
	case GrantJWTBearer:
		resp, oerr = e.jwtBearer(ctx, s, client, form)
	case "":
		oerr = errInvalidRequest("grant_type is missing")
	default:
		oerr = &oauthError{Status: http.StatusBadRequest, Code: "unsupported_grant_type", Description: "grant_type " + gt + " is not supported; use authorization_code or refresh_token"}
	}
	if oerr != nil {
		e.count(s, tokenOutcome(form.Get("grant_type"), false))
		writeOAuthError(w, oerr)
		return
	}
	e.count(s, tokenOutcome(form.Get("grant_type"), true))
	writeJSON(w, http.StatusOK, resp)
}

// tokenOutcome is the outcome of a token request of grant type gt.
func tokenOutcome(gt string, issued bool) Outcome {
	switch {
	case gt == "authorization_code" && issued:
		return TokenIssuedCode
	case gt == "authorization_code":
		return TokenRefusedCode
	case gt == "refresh_token" && issued:
		return TokenIssuedRefresh
	case gt == "refresh_token":
		return TokenRefusedRefresh
	case gt == GrantClientCredentials && issued:
		return TokenIssuedClientCredentials
	case gt == GrantClientCredentials:
		return TokenRefusedClientCredentials
	case gt == GrantJWTBearer && issued:
		return TokenIssuedJWTBearer
	case gt == GrantJWTBearer:
		return TokenRefusedJWTBearer
	}
	return TokenRefusedOther
}

func (e *Edge) exchangeCode(ctx context.Context, s *Server, client *grants.Client, form url.Values) (*tokenResponse, *oauthError) {
	code := form.Get("code")
	if code == "" {
		return nil, errInvalidRequest("code is missing")
	}
	if !allowsGrant(client, "authorization_code") {
		return nil, &oauthError{Status: http.StatusBadRequest, Code: "unauthorized_client", Description: "this client did not register the authorization_code grant"}
	}
	g := s.Gateway()
	familyID := randomToken()[:22]
	c, err := g.Ledger.RedeemCode(ctx, code, familyID)
	switch {
	case errors.Is(err, grants.ErrCodeReused):
		// A replayed code: whoever holds it may have stolen it, so what was
		// issued from it is revoked (RFC 6749 §4.1.2).
		e.revokeFamily(ctx, g, c.FamilyID, "authorization code replayed")
		e.audit("code replayed, tokens revoked", s, client.ID, c.User, c.Scopes)
		return nil, errInvalidGrant("the authorization code was already used; the tokens issued from it are revoked")
	case errors.Is(err, grants.ErrNotFound), errors.Is(err, grants.ErrExpired):
		return nil, errInvalidGrant("the authorization code is unknown or expired; authorize again")
	case err != nil:
		e.log.Error("redeeming an authorization code", zap.String("server", s.Name), zap.Error(err))
		return nil, errServer("the gateway's storage is unavailable; retry")
	}
	switch {
	case c.ClientID != client.ID:
		return nil, errInvalidGrant("the authorization code was issued to another client")
	case c.Server != s.Name:
		return nil, errInvalidGrant("the authorization code was issued for another server; redeem it at that server's token endpoint")
	case form.Get("redirect_uri") != "" && form.Get("redirect_uri") != c.RedirectURI:
		return nil, errInvalidGrant("redirect_uri differs from the one of the authorization request")
	case form.Get("code_verifier") == "":
		return nil, errInvalidRequest("code_verifier is missing (PKCE is required)")
	case !verifyPKCE(form.Get("code_verifier"), c.CodeChallenge):
		return nil, errInvalidGrant("code_verifier does not match the code_challenge of the authorization request")
	case form.Has("resource") && !e.resourceMatches(s, form.Get("resource")):
		return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_target", Description: "resource must be " + s.Resource}
	}
	granted, err := scopes.Parse(c.Scopes)
	if err != nil {
		return nil, errInvalidGrant("the authorization code's scopes are unreadable; authorize again")
	}
	now := e.opts.Now()
	fam := &grants.Family{
		ID:        familyID,
		ClientID:  client.ID,
		Server:    s.Name,
		Resource:  s.Resource,
		User:      c.User,
		Scopes:    c.Scopes,
		CreatedAt: now,
		RotatedAt: now,
		ExpiresAt: now.Add(e.opts.RefreshTokenTTL),
	}
	refresh, err := g.Ledger.StartFamily(ctx, fam)
	if err != nil {
		e.log.Error("starting a refresh token family", zap.String("server", s.Name), zap.Error(err))
		return nil, errServer("the gateway's storage is unavailable; authorize again")
	}
	resp, oerr := e.issue(s, client, c.User, fam.Ref, granted)
	if oerr != nil {
		return nil, oerr
	}
	// The family is started either way: it ties the access token to the
	// code for revocation. Only a client that registered the refresh_token
	// grant is handed the family's refresh token.
	if allowsGrant(client, "refresh_token") {
		resp.RefreshToken = refresh
	}
	e.audit("token issued", s, client.ID, c.User, granted.String(), zap.String("grant_type", "authorization_code"))
	return resp, nil
}

func (e *Edge) refresh(ctx context.Context, s *Server, client *grants.Client, form url.Values) (*tokenResponse, *oauthError) {
	token := form.Get("refresh_token")
	if token == "" {
		return nil, errInvalidRequest("refresh_token is missing")
	}
	if !allowsGrant(client, "refresh_token") {
		return nil, &oauthError{Status: http.StatusBadRequest, Code: "unauthorized_client", Description: "this client did not register the refresh_token grant; authorize again instead"}
	}
	g := s.Gateway()
	if _, ok := grants.FamilyIDOf(token); !ok {
		return nil, errInvalidGrant("the refresh token is not one this gateway issued")
	}
	// Only a token the family issued gets this far: a made-up one, even
	// with a real family's ID, changes nothing.
	fam, err := g.Ledger.FamilyOf(ctx, token)
	switch {
	case isNotFound(err):
		return nil, errInvalidGrant("the refresh token is unknown; authorize again")
	case err != nil:
		e.log.Error("reading a refresh token family", zap.String("server", s.Name), zap.Error(err))
		return nil, errServer("the gateway's storage is unavailable; retry")
	case fam.ClientID != client.ID:
		return nil, errInvalidGrant("the refresh token was issued to another client")
	case fam.Server != s.Name:
		return nil, errInvalidGrant("the refresh token was issued for another server; use that server's token endpoint")
	}
	famScopes, _ := scopes.Parse(fam.Scopes)
	granted := famScopes.Intersect(s.Rule.Offered)
	if form.Has("scope") {
		asked, err := scopes.Parse(form.Get("scope"))
		if err != nil {
			return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: err.Error()}
		}
		asked = asked.Minus(ignoredScopes)
		if !asked.IsEmpty() {
			if !famScopes.ContainsAll(asked) {
				return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "a refresh may narrow the scopes but not widen them: " + asked.Minus(famScopes).String() + " was not granted; authorize again to ask for it"}
			}
			granted = granted.Intersect(asked)
		}
	}
	if granted.IsEmpty() {
		return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "none of the granted scopes is offered by server " + s.Name + " any more; authorize again"}
	}
	if grant, err := g.Ledger.Grant(ctx, fam.User); err == nil && grant.Dead {
		e.revokeFamily(ctx, g, fam.ID, "downstream grant ended")
		return nil, errInvalidGrant("the user's sign-in at the identity provider has ended; authorize again")
	}
	fam, next, err := g.Ledger.Rotate(ctx, token, e.opts.RefreshGrace)
	switch {
	case errors.Is(err, grants.ErrRefreshReused):
		e.refuseAccessTokens(g, fam.Ref)
		e.audit("refresh token reused, family revoked", s, client.ID, "", "")
		return nil, errInvalidGrant("the refresh token was already used; every token of this authorization is revoked; authorize again")
	case errors.Is(err, grants.ErrRevoked), errors.Is(err, grants.ErrExpired), isNotFound(err):
		return nil, errInvalidGrant("the refresh token is revoked or expired; authorize again")
	case err != nil:
		e.log.Error("rotating a refresh token", zap.String("server", s.Name), zap.Error(err))
		return nil, errServer("the gateway's storage is unavailable; retry with the same refresh token")
	}
	resp, oerr := e.issue(s, client, fam.User, fam.Ref, granted)
	if oerr != nil {
		return nil, oerr
	}
	resp.RefreshToken = next
	e.audit("token refreshed", s, client.ID, fam.User, granted.String(), zap.String("grant_type", "refresh_token"))
	return resp, nil
}

// issue signs an access token for the server, of the refresh family whose
// reference is familyRef.
func (e *Edge) issue(s *Server, client *grants.Client, user, familyRef string, granted scopes.Set) (*tokenResponse, *oauthError) {
	return e.sign(s, accesstoken.Claims{
		Issuer:    s.Issuer,
		Subject:   user,
		Audience:  s.Resource,
		Scope:     granted.String(),
		ClientID:  client.ID,
		FamilyRef: familyRef,
	})
}

// issueWithoutRefresh answers a grant that hands out no refresh token
// (client credentials, jwt-bearer): it starts a family for user that only
// carries the access token's revocation, so it ends with the token, signs
// an access token of claims in it, and audits the issue with extra.
func (e *Edge) issueWithoutRefresh(ctx context.Context, s *Server, user string, claims accesstoken.Claims, extra ...zap.Field) (*tokenResponse, *oauthError) {
	now := e.opts.Now()
	fam := &grants.Family{
		ClientID:  claims.ClientID,
		Server:    s.Name,
		Resource:  s.Resource,
		User:      user,
		Scopes:    claims.Scope,
		CreatedAt: now,
		ExpiresAt: now.Add(e.opts.AccessTokenTTL),
	}
	if _, err := s.Gateway().Ledger.StartFamily(ctx, fam); err != nil {
		e.log.Error("starting a token family", zap.String("server", s.Name), zap.Error(err))
		return nil, errServer("the gateway's storage is unavailable; retry")
	}
	claims.Issuer, claims.Audience, claims.FamilyRef = s.Issuer, s.Resource, fam.Ref
	resp, oerr := e.sign(s, claims)
	if oerr != nil {
		return nil, oerr
	}
	e.audit("token issued", s, claims.ClientID, user, claims.Scope, append([]zap.Field{zap.String("grant_type", claims.GrantType)}, extra...)...)
	return resp, nil
}

// sign signs an access token of claims, valid from now for the access
// token lifetime, and answers it without a refresh token.
func (e *Edge) sign(s *Server, claims accesstoken.Claims) (*tokenResponse, *oauthError) {
	now := e.opts.Now()
	claims.IssuedAt, claims.NotBefore, claims.ExpiresAt = now, now, now.Add(e.opts.AccessTokenTTL)
	at, err := s.Gateway().Keys.Issue(claims)
	if err != nil {
		e.log.Error("signing an access token", zap.String("server", s.Name), zap.Error(err))
		return nil, errServer("the gateway cannot sign tokens right now; retry")
	}
	return &tokenResponse{
		AccessToken: at,
		TokenType:   "Bearer",
		ExpiresIn:   int64(e.opts.AccessTokenTTL.Seconds()),
		Scope:       claims.Scope,
	}, nil
}

// serveRevoke handles RFC 7009 revocation of refresh and access tokens. It
// answers 200 whether or not the token was known, as the RFC requires.
func (e *Edge) serveRevoke(w http.ResponseWriter, r *http.Request, s *Server) {
	form, client, ok := e.clientRequest(w, r, s, nil)
	if !ok {
		return
	}
	ctx := r.Context()
	token := form.Get("token")
	if token == "" {
		writeOAuthError(w, errInvalidRequest("token is missing"))
		return
	}
	g := s.Gateway()
	// Only a token this gateway issued revokes: a refresh token the
	// family's key produced, or an access token whose signature verified.
	// The family ID alone, which a refresh token shows, revokes nothing.
	var (
		fam *grants.Family
		err error
	)
	if _, ok := grants.FamilyIDOf(token); ok {
		fam, err = g.Ledger.FamilyOf(ctx, token)
	} else if claims, verr := g.Verifier.Verify(token); verr == nil && claims.ClientID == client.ID {
		fam, err = g.Ledger.FamilyByRef(ctx, claims.FamilyRef)
	}
	switch {
	case err != nil && !isNotFound(err):
		// RFC 7009 §2.2.1: the token still stands, and the client may
		// retry.
		e.log.Error("reading a refresh token family", zap.String("server", s.Name), zap.Error(err))
		writeOAuthError(w, errServer("the gateway's storage is unavailable; retry"))
		return
	case fam != nil && fam.ClientID == client.ID:
		e.revokeFamily(ctx, g, fam.ID, "revoked by the client")
		e.audit("token revoked", s, client.ID, "", "")
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// clientRequest begins the token and revocation endpoints alike: CORS,
// POST only, the per-address limit they share, the form and the client's
// authentication. When one fails it answers the request itself and
// reports false; unauthenticated, if set, is called when the client's
// authentication is what failed.
func (e *Edge) clientRequest(w http.ResponseWriter, r *http.Request, s *Server, unauthenticated func()) (url.Values, *grants.Client, bool) {
	if allowCORS(w, r, "POST, OPTIONS") || !requireMethod(w, r, http.MethodPost) {
		return nil, nil, false
	}
	if t := take(e.limits.token, e.clientAddress(r), "token"); t != nil {
		e.refuseTooMany(w, r, s, "", t, false)
		return nil, nil, false
	}
	form, oerr := readForm(w, r)
	if oerr != nil {
		writeOAuthError(w, oerr)
		return nil, nil, false
	}
	client, oerr := e.authenticateClient(r.Context(), s, r, form)
	if oerr != nil {
		// A 429 of the client's authentication limit is counted as rate
		// limited, like the per-address one above, and only so.
		if unauthenticated != nil && oerr.Status != http.StatusTooManyRequests {
			unauthenticated()
		}
		writeOAuthError(w, oerr)
		return nil, nil, false
	}
	return form, client, true
}

// revokeFamily revokes a refresh family and the access tokens issued from it.
func (e *Edge) revokeFamily(ctx context.Context, g *Gateway, familyID, reason string) {
	if familyID == "" {
		return
	}
	_, err := RevokeFamily(ctx, g.Ledger, g.Verifier, familyID, reason, e.opts.Now())
	if err != nil && !isNotFound(err) {
		e.log.Error("revoking a refresh token family", zap.String("gateway", g.Name), zap.Error(err))
	}
}

// refuseAccessTokens refuses at once, on this instance, the access tokens
// of the revoked family whose reference is ref; other instances read the
// revocation's record. As long as those tokens may be valid, as every
// instance holds a revocation it reads (grants.RevocationRetention).
func (e *Edge) refuseAccessTokens(g *Gateway, ref string) {
	g.Verifier.RevokeFamily(ref, e.opts.Now().Add(grants.RevocationRetention))
}

// readForm reads a bounded application/x-www-form-urlencoded body.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return nil, errInvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return nil, errInvalidRequest("the body could not be read: it is malformed or larger than 64 KiB")
	}
	for name, vals := range r.PostForm {
		if len(vals) > 1 {
			return nil, errInvalidRequest("parameter " + name + " appears more than once")
		}
	}
	return r.PostForm, nil
}

// authenticateClient identifies the client at the token and revocation
// endpoints: client_secret_basic, client_secret_post, private_key_jwt (a
// client of the config with a key), or a public client's client_id.
// Secrets are compared in constant time.
func (e *Edge) authenticateClient(ctx context.Context, s *Server, r *http.Request, form url.Values) (*grants.Client, *oauthError) {
	if form.Has("client_assertion") || form.Has("client_assertion_type") {
		return e.authenticateAssertion(ctx, s, r, form)
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, errInvalidClient("malformed HTTP Basic client credentials")
		}
		if form.Has("client_secret") {
			return nil, errInvalidRequest("use one client authentication method, not both Basic and client_secret")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if form.Has("client_id") && form.Get("client_id") != id {
		return nil, errInvalidClient("client_id differs from the authenticated client")
	}
	if id == "" {
		return nil, errInvalidClient("client authentication is missing: send client_id (public clients) or client credentials")
	}
	client, err := e.lookupClient(ctx, s.Gateway(), id)
	if storageUnavailable(err) {
		return nil, errServer("the gateway's storage is unavailable; retry shortly")
	}
	if err != nil {
		return nil, errInvalidClient("unknown client; register again")
	}
	if client.TokenEndpointAuthMethod == AuthPrivateKeyJWT {
		// No secret, and not public either: only its assertion proves it.
		return nil, errInvalidClient("this client authenticates with private_key_jwt: send a client_assertion")
	}
	if len(client.SecretHash) > 0 {
		// Every attempt is charged and a success refunded, so that
		// concurrent guesses are counted exactly.
		if t := take(e.limits.clientAuth, client.ID, "client authentication"); t != nil {
			e.count(s, RateLimited)
			e.audit("request refused", s, client.ID, "", "", zap.String("reason", "too many failed client authentications"))
			return nil, t.oauthError()
		}
		if secret == "" || !client.CheckSecret(secret) {
			return nil, errInvalidClient("client authentication failed")
		}
		e.limits.clientAuth.Refund(client.ID)
	} else if secret != "" {
		return nil, errInvalidClient("this client is public and has no secret")
	}
	return client, nil
}

func allowsGrant(c *grants.Client, grant string) bool {
	return len(c.GrantTypes) == 0 || contains(c.GrantTypes, grant)
}

func isNotFound(err error) bool {
	return errors.Is(err, grants.ErrNotFound)
}
