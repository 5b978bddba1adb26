package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

const (
	// authRequestTTL bounds how long a person may take on the login page.
	authRequestTTL = 10 * time.Minute
	// refreshTokenTTL is long enough for any test or demo session.
	refreshTokenTTL = 24 * time.Hour
	// idTokenTTL is independent of the access token lifetime: ID tokens
	// prove a login, they are not presented to APIs.
	idTokenTTL = time.Hour
	// expiredTokenRetention keeps expired access tokens answerable by
	// Provider.TokenInfo for a while, so a test can still identify a token
	// that reached an upstream after it lapsed.
	expiredTokenRetention = 10 * time.Minute
)

// storage is the provider's in-memory op.Storage: one confidential client,
// a fixed set of users, and the grants they make.
type storage struct {
	clientID     string
	clientSecret []byte
	apiScopes    []string
	audience     string
	accessTTL    time.Duration
	users        []User
	signingKey   signingKey

	mu            sync.Mutex
	redirectURIs  []string
	authRequests  map[string]*authRequest  // by ID
	codes         map[string]string        // authorization code to auth request ID
	accessTokens  map[string]*accessToken  // by token ID (the JWT's jti)
	refreshTokens map[string]*refreshGrant // by token value
	refreshCount  int
}

var (
	_ op.Storage                        = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest      = (*storage)(nil)
	_ op.CanGetPrivateClaimsFromRequest = (*storage)(nil)
)

func newStorage(cfg ProviderConfig) (*storage, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &storage{
		clientID:      cfg.ClientID,
		clientSecret:  []byte(cfg.ClientSecret),
		apiScopes:     slices.Clone(cfg.Scopes),
		audience:      cfg.Audience,
		accessTTL:     cfg.AccessTokenTTL,
		users:         slices.Clone(cfg.Users),
		signingKey:    signingKey{id: rand.Text(), key: key},
		redirectURIs:  slices.Clone(cfg.RedirectURIs),
		authRequests:  make(map[string]*authRequest),
		codes:         make(map[string]string),
		accessTokens:  make(map[string]*accessToken),
		refreshTokens: make(map[string]*refreshGrant),
	}, nil
}

// authRequest is an authorization request waiting for, or done with, the
// login page. Storage hands op copies, so op never reads a request while the
// login handler changes it.
type authRequest struct {
	id            string
	created       time.Time
	clientID      string
	redirectURI   string
	state         string
	nonce         string
	scopes        []string
	audience      []string
	responseType  oidc.ResponseType
	responseMode  oidc.ResponseMode
	codeChallenge *oidc.CodeChallenge

	subject  string
	authTime time.Time
	done     bool
}

var _ op.AuthRequest = (*authRequest)(nil)

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return audienceOrClient(a.audience, a.clientID) }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.codeChallenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return slices.Clone(a.scopes) }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

func (a *authRequest) clone() *authRequest {
	c := *a
	c.scopes = slices.Clone(a.scopes)
	c.audience = slices.Clone(a.audience)
	return &c
}

// refreshGrant is what a refresh token stands for. Rotation moves it to a new
// token value; the old value is then unknown and fails with invalid_grant.
type refreshGrant struct {
	token    string
	expiry   time.Time
	subject  string
	clientID string
	scopes   []string // granted at login; a refresh may narrow, never widen
	current  []string // narrowed by the refresh request, if it asked to
	audience []string
	authTime time.Time
}

var _ op.RefreshTokenRequest = (*refreshGrant)(nil)

func (g *refreshGrant) GetAMR() []string       { return []string{"pwd"} }
func (g *refreshGrant) GetAudience() []string  { return audienceOrClient(g.audience, g.clientID) }
func (g *refreshGrant) GetAuthTime() time.Time { return g.authTime }
func (g *refreshGrant) GetClientID() string    { return g.clientID }
func (g *refreshGrant) GetSubject() string     { return g.subject }

func (g *refreshGrant) GetScopes() []string {
	if g.current != nil {
		return slices.Clone(g.current)
	}
	return slices.Clone(g.scopes)
}

func (g *refreshGrant) SetCurrentScopes(scopes []string) { g.current = slices.Clone(scopes) }

func (g *refreshGrant) clone() *refreshGrant {
	c := *g
	c.scopes = slices.Clone(g.scopes)
	c.current = slices.Clone(g.current)
	c.audience = slices.Clone(g.audience)
	return &c
}

// accessToken is the provider's record of an access token it signed.
type accessToken struct {
	id       string
	subject  string
	clientID string
	scopes   []string
	audience []string
	expiry   time.Time
}

// audienceOrClient returns a fresh slice each time: op appends the client ID
// to the audience it gets for ID tokens.
func audienceOrClient(audience []string, clientID string) []string {
	if len(audience) == 0 {
		return []string{clientID}
	}
	return slices.Clone(audience)
}

// resourceKey carries the RFC 8707 resource values of the HTTP request into
// storage; op does not parse them.
type resourceKey struct{}

func withResources(ctx context.Context, resources []string) context.Context {
	return context.WithValue(ctx, resourceKey{}, resources)
}

// audienceFor maps the resource values of the request in ctx to an access
// token audience: none asks for no API audience, the configured audience
// binds the token to it, anything else is an invalid target.
func (s *storage) audienceFor(ctx context.Context) ([]string, error) {
	resources, _ := ctx.Value(resourceKey{}).([]string)
	if len(resources) == 0 {
		return nil, nil
	}
	for _, r := range resources {
		if r != s.audience {
			return nil, oidc.ErrInvalidTarget().WithDescription("unknown resource; this provider serves only its configured audience")
		}
	}
	return []string{s.audience}, nil
}

func (s *storage) user(subject string) (User, bool) {
	for _, u := range s.users {
		if u.Subject == subject {
			return u, true
		}
	}
	return User{}, false
}

// authenticate checks a username and password, comparing the password in
// constant time even for unknown users.
func (s *storage) authenticate(username, password string) (User, bool) {
	found, match := User{}, 0
	for _, u := range s.users {
		if u.Username == username {
			found = u
			match = 1
		}
	}
	ok := subtle.ConstantTimeCompare([]byte(found.Password), []byte(password)) & match
	return found, ok == 1
}

// completeLogin marks an authorization request as authenticated by subject.
func (s *storage) completeLogin(id, subject string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.authRequests[id]
	if !ok || time.Since(req.created) > authRequestTTL {
		return errors.New("this sign-in request is unknown or expired; start again from the application")
	}
	req.subject = subject
	req.authTime = time.Now()
	req.done = true
	return nil
}

func (s *storage) addRedirectURI(uri string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.redirectURIs, uri) {
		s.redirectURIs = append(s.redirectURIs, uri)
	}
}

// revokeSubject forgets every refresh token of subject and reports how many.
func (s *storage) revokeSubject(subject string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for token, g := range s.refreshTokens {
		if g.subject == subject {
			delete(s.refreshTokens, token)
			n++
		}
	}
	return n
}

func (s *storage) refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshCount
}

func (s *storage) accessTokenByID(id string) (accessToken, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.accessTokens[id]
	if !ok {
		return accessToken{}, false
	}
	c := *t
	c.scopes = slices.Clone(t.scopes)
	c.audience = slices.Clone(t.audience)
	return c, true
}

// CreateAuthRequest stores a validated authorization request. OAuth 2.1
// requires PKCE for every authorization code grant, and so does this
// provider, with S256.
func (s *storage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired()
	}
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send code_challenge with code_challenge_method=S256")
	}
	audience, err := s.audienceFor(ctx)
	if err != nil {
		return nil, err
	}
	a := &authRequest{
		id:           rand.Text(),
		created:      time.Now(),
		clientID:     req.ClientID,
		redirectURI:  req.RedirectURI,
		state:        req.State,
		nonce:        req.Nonce,
		scopes:       slices.Clone(req.Scopes),
		audience:     audience,
		responseType: req.ResponseType,
		responseMode: req.ResponseMode,
		codeChallenge: &oidc.CodeChallenge{
			Challenge: req.CodeChallenge,
			Method:    req.CodeChallengeMethod,
		},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(a.created)
	s.authRequests[a.id] = a
	return a.clone(), nil
}

// sweepLocked drops abandoned authorization requests and long-expired
// tokens, so a long-running demo does not grow without bound.
func (s *storage) sweepLocked(now time.Time) {
	for id, a := range s.authRequests {
		if now.Sub(a.created) > authRequestTTL {
			delete(s.authRequests, id)
		}
	}
	for code, id := range s.codes {
		if _, ok := s.authRequests[id]; !ok {
			delete(s.codes, code)
		}
	}
	for id, t := range s.accessTokens {
		if now.Sub(t.expiry) > expiredTokenRetention {
			delete(s.accessTokens, id)
		}
	}
	for token, g := range s.refreshTokens {
		if now.After(g.expiry) {
			delete(s.refreshTokens, token)
		}
	}
}

// AuthRequestByID implements op.Storage.
func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	if !ok || time.Since(a.created) > authRequestTTL {
		return nil, errors.New("auth request unknown or expired")
	}
	return a.clone(), nil
}

// AuthRequestByCode implements op.Storage.
func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("authorization code unknown or already used")
	}
	return s.AuthRequestByID(ctx, id)
}

// SaveAuthCode implements op.Storage.
func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest implements op.Storage; op calls it once the code is
// redeemed, which makes every authorization code single-use.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for code, reqID := range s.codes {
		if reqID == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// bindTokenRequest applies a resource sent to the token endpoint. RFC 8707
// lets a client name the resource there as well as at authorization; the
// request objects handed in are storage's own copies, so setting the
// audience here reaches the JWT op signs next.
func (s *storage) bindTokenRequest(ctx context.Context, req op.TokenRequest) error {
	audience, err := s.audienceFor(ctx)
	if err != nil || audience == nil {
		return err
	}
	switch r := req.(type) {
	case *authRequest:
		r.audience = audience
	case *refreshGrant:
		r.audience = audience
	}
	return nil
}

// newAccessTokenLocked records an access token for req. The expiry carries
// one extra second so that op's whole-second expires_in never rounds below
// the configured lifetime (a one-second token would otherwise be announced
// as "expires_in":0, which clients read as "never expires").
func (s *storage) newAccessTokenLocked(req op.TokenRequest, clientID string) *accessToken {
	now := time.Now()
	s.sweepLocked(now)
	t := &accessToken{
		id:       rand.Text(),
		subject:  req.GetSubject(),
		clientID: clientID,
		scopes:   req.GetScopes(),
		audience: req.GetAudience(),
		expiry:   now.Add(s.accessTTL + time.Second),
	}
	if te, ok := req.(op.TokenExchangeRequest); ok && len(te.GetAudience()) == 0 {
		// An exchanged token keeps its subject token's audience.
		if subject, ok := s.accessTokens[te.GetExchangeSubjectTokenIDOrToken()]; ok {
			t.audience = slices.Clone(subject.audience)
		}
	}
	s.accessTokens[t.id] = t
	return t
}

func clientOf(req op.TokenRequest) (string, error) {
	switch r := req.(type) {
	case *authRequest:
		return r.clientID, nil
	case *refreshGrant:
		return r.clientID, nil
	case op.TokenExchangeRequest:
		return r.GetClientID(), nil
	case *clientCredentialsRequest:
		return r.clientID, nil
	}
	return "", oidc.ErrUnsupportedGrantType()
}

// issueTokens starts a grant for subject and clientID outside op (an
// exchanged ID-JAG): it records an access token and a refresh token, which
// op's refresh grant then rotates, and returns the access token's ID, the
// refresh token and the access token's expiry.
func (s *storage) issueTokens(subject, clientID string, scopes, audience []string) (string, string, time.Time) {
	req := &refreshGrant{subject: subject, clientID: clientID, scopes: slices.Clone(scopes), audience: slices.Clone(audience), authTime: time.Now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	req.token = rand.Text()
	req.expiry = time.Now().Add(refreshTokenTTL)
	s.refreshTokens[req.token] = req
	t := s.newAccessTokenLocked(req, clientID)
	return t.id, req.token, t.expiry
}

// CreateAccessToken implements op.Storage.
func (s *storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	clientID, err := clientOf(req)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := s.bindTokenRequest(ctx, req); err != nil {
		return "", time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.newAccessTokenLocked(req, clientID)
	return t.id, t.expiry, nil
}

// CreateAccessAndRefreshTokens implements op.Storage. With an empty
// currentRefreshToken it starts a grant (code flow with offline_access);
// otherwise it rotates: the presented refresh token is consumed and a new
// one issued, so a token presented twice fails the second time.
func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	clientID, err := clientOf(req)
	if err != nil {
		return "", "", time.Time{}, err
	}
	if err := s.bindTokenRequest(ctx, req); err != nil {
		return "", "", time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	var grant *refreshGrant
	if currentRefreshToken == "" {
		a, ok := req.(*authRequest)
		if !ok {
			return "", "", time.Time{}, oidc.ErrUnsupportedGrantType()
		}
		grant = &refreshGrant{
			subject:  a.subject,
			clientID: a.clientID,
			scopes:   slices.Clone(a.scopes),
			audience: slices.Clone(a.audience),
			authTime: a.authTime,
		}
	} else {
		old, ok := s.refreshTokens[currentRefreshToken]
		if !ok {
			// Consumed by a concurrent refresh or revoked meanwhile.
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token unknown, already used or revoked")
		}
		delete(s.refreshTokens, currentRefreshToken)
		grant = old.clone()
		grant.current = nil
		if r, ok := req.(*refreshGrant); ok && r.audience != nil {
			grant.audience = slices.Clone(r.audience)
		}
		s.refreshCount++
	}
	grant.token = rand.Text()
	grant.expiry = time.Now().Add(refreshTokenTTL)
	s.refreshTokens[grant.token] = grant

	t := s.newAccessTokenLocked(req, clientID)
	return t.id, grant.token, t.expiry, nil
}

// TokenRequestByRefreshToken implements op.Storage.
func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refreshTokens[token]
	if !ok || time.Now().After(g.expiry) {
		return nil, errors.New("refresh token unknown, expired or revoked")
	}
	return g.clone(), nil
}

// TerminateSession implements op.Storage (end_session endpoint): it ends
// every token of userID at clientID.
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for token, g := range s.refreshTokens {
		if g.subject == userID && g.clientID == clientID {
			delete(s.refreshTokens, token)
		}
	}
	for id, t := range s.accessTokens {
		if t.subject == userID && t.clientID == clientID {
			delete(s.accessTokens, id)
		}
	}
	return nil
}

// GetRefreshTokenInfo implements op.Storage. The refresh token value is its
// own ID here.
func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refreshTokens[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return g.subject, token, nil
}

// RevokeToken implements op.Storage (RFC 7009). Unknown tokens are not an
// error: the token is invalid afterwards either way.
func (s *storage) RevokeToken(_ context.Context, tokenOrID, _ string, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.accessTokens[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.accessTokens, tokenOrID)
		return nil
	}
	if g, ok := s.refreshTokens[tokenOrID]; ok {
		if g.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.refreshTokens, tokenOrID)
	}
	return nil
}

// signingKey is the provider's RS256 key, RS256 being what most identity
// providers sign ID tokens with by default.
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

// publicKey is the JWKS entry of signingKey.
type publicKey struct{ signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

// SigningKey implements op.Storage.
func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.signingKey, nil }

// SignatureAlgorithms implements op.Storage.
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet implements op.Storage.
func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.signingKey}}, nil
}

// GetClientByClientID implements op.Storage.
func (s *storage) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	if clientID != s.clientID {
		return nil, errors.New("unknown client")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &client{id: s.clientID, redirectURIs: slices.Clone(s.redirectURIs), scopes: s.apiScopes}, nil
}

// AuthorizeClientIDSecret implements op.Storage; the secret is compared in
// constant time.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, clientID, secret string) error {
	idOK := subtle.ConstantTimeCompare([]byte(clientID), []byte(s.clientID))
	secretOK := subtle.ConstantTimeCompare([]byte(secret), s.clientSecret)
	if idOK&secretOK != 1 {
		return errors.New("invalid client credentials")
	}
	return nil
}

// SetUserinfoFromScopes implements op.Storage. op deprecates it in favour of
// SetUserinfoFromRequest.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest implements op.CanSetUserinfoFromRequest: the ID
// token carries the claims its scopes allow.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return s.fillUserinfo(info, req.GetSubject(), scopes)
}

func (s *storage) fillUserinfo(info *oidc.UserInfo, subject string, scopes []string) error {
	u, ok := s.user(subject)
	if !ok {
		return errors.New("user no longer exists")
	}
	info.Subject = u.Subject
	if slices.Contains(scopes, oidc.ScopeProfile) {
		info.Name = u.Name
		info.PreferredUsername = u.Username
	}
	if slices.Contains(scopes, oidc.ScopeEmail) {
		info.Email = u.Email
		info.EmailVerified = true
	}
	return nil
}

// liveAccessToken returns the record of an unexpired access token.
func (s *storage) liveAccessToken(id, subject string) (accessToken, error) {
	t, ok := s.accessTokenByID(id)
	if !ok || t.subject != subject || time.Now().After(t.expiry) {
		return accessToken{}, errors.New("access token unknown, expired or revoked")
	}
	return t, nil
}

// SetUserinfoFromToken implements op.Storage (userinfo endpoint).
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	t, err := s.liveAccessToken(tokenID, subject)
	if err != nil {
		return err
	}
	return s.fillUserinfo(info, subject, t.scopes)
}

// SetIntrospectionFromToken implements op.Storage (RFC 7662). An unknown or
// expired token leaves the response inactive.
func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, _ string) error {
	t, err := s.liveAccessToken(tokenID, subject)
	if err != nil {
		return nil
	}
	info := new(oidc.UserInfo)
	if err := s.fillUserinfo(info, subject, t.scopes); err != nil {
		return nil
	}
	resp.SetUserInfo(info)
	resp.Active = true
	resp.Scope = t.scopes
	resp.ClientID = t.clientID
	resp.Audience = t.audience
	resp.Expiration = oidc.FromTime(t.expiry)
	resp.JWTID = t.id
	return nil
}

// GetPrivateClaimsFromScopes implements op.Storage; op calls
// GetPrivateClaimsFromRequest instead because storage implements it.
func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetPrivateClaimsFromRequest implements op.CanGetPrivateClaimsFromRequest:
// the access token records every granted scope in its "scope" claim
// (RFC 9068), which op leaves empty.
func (s *storage) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	return map[string]any{"scope": strings.Join(req.GetScopes(), " ")}, nil
}

// GetKeyByIDAndClientID implements op.Storage; private_key_jwt is not
// offered.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("private_key_jwt client authentication is not supported")
}

// ValidateJWTProfileScopes implements op.Storage; the JWT profile grant is
// not offered.
func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, oidc.ErrUnsupportedGrantType()
}

// Health implements op.Storage.
func (s *storage) Health(context.Context) error { return nil }

// client is the gateway's confidential client as op sees it.
type client struct {
	id           string
	redirectURIs []string
	scopes       []string
}

var _ op.Client = (*client)(nil)

func (c *client) GetID() string                       { return c.id }
func (c *client) RedirectURIs() []string              { return c.redirectURIs }
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }

// AuthMethod names the registered method; op accepts the secret from the
// form (client_secret_post) too, because the provider enables it.
func (c *client) AuthMethod() oidc.AuthMethod { return oidc.AuthMethodBasic }

func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

func (c *client) GrantTypes() []oidc.GrantType {
	// client_credentials is served only where ProviderConfig says so.
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeTokenExchange, oidc.GrantTypeClientCredentials}
}

func (c *client) LoginURL(id string) string {
	return loginPath + "?" + loginRequestParam + "=" + url.QueryEscape(id)
}

func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration       { return idTokenTTL }
func (c *client) DevMode() bool                        { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) IsScopeAllowed(scope string) bool     { return slices.Contains(c.scopes, scope) }

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}
