package downstream

import (
	"context"
	"fmt"
	"net/url"
	"slices"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Client authentication methods at the token endpoint, by their RFC 8414
// names.
const (
	AuthSecretBasic   = "client_secret_basic"
	AuthSecretPost    = "client_secret_post"
	AuthPrivateKeyJWT = "private_key_jwt"
	AuthNone          = "none"
)

// Audiences of client assertions besides an explicit URL.
const (
	// AudienceTokenEndpoint is RFC 7523's audience, which Okta, Microsoft
	// Entra and Keycloak accept.
	AudienceTokenEndpoint = "token_endpoint"
	// AudienceIssuer is the issuer identifier, which Auth0 expects and
	// which newer guidance (RFC 7523bis) prefers.
	AudienceIssuer = "issuer"
)

// assertionType is the client_assertion_type of private_key_jwt.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// ClientAuth is how the gateway authenticates at the downstream token
// endpoint.
type ClientAuth struct {
	// Method is AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT or
	// AuthNone. Empty: with a secret, client_secret_basic unless the
	// server's metadata lists only client_secret_post; without one, none.
	Method string
	// Secret is the client secret of the client_secret methods.
	Secret string
	// Key signs the client assertions of private_key_jwt.
	Key *ClientKey
	// AssertionAudience is the aud of client assertions: AudienceTokenEndpoint
	// (the default when empty), AudienceIssuer, or an absolute URL.
	AssertionAudience string
}

// method resolves an empty Method against the server's metadata.
func (a ClientAuth) method(meta *Metadata) string {
	switch {
	case a.Method != "":
		return a.Method
	case a.Secret == "":
		return AuthNone
	case len(meta.TokenEndpointAuthMethodsSupported) > 0 &&
		!slices.Contains(meta.TokenEndpointAuthMethodsSupported, AuthSecretBasic) &&
		slices.Contains(meta.TokenEndpointAuthMethodsSupported, AuthSecretPost):
		return AuthSecretPost
	default:
		// RFC 8414: a server that lists no methods supports client_secret_basic.
		return AuthSecretBasic
	}
}

// authStyle returns how golang.org/x/oauth2 presents the client, and the
// secret it presents: none for private_key_jwt and public clients, whose
// client_id then goes in the form.
func (c *Client) authStyle(meta *Metadata) (oauth2.AuthStyle, string) {
	switch c.cfg.ClientAuth.method(meta) {
	case AuthSecretBasic:
		return oauth2.AuthStyleInHeader, c.cfg.ClientAuth.Secret
	case AuthSecretPost:
		return oauth2.AuthStyleInParams, c.cfg.ClientAuth.Secret
	default:
		return oauth2.AuthStyleInParams, ""
	}
}

// assertion returns the form parameters that authenticate the client by
// private_key_jwt, or none for the other methods. Each assertion is signed
// afresh with its own jti: servers refuse a replayed one.
func (c *Client) assertion(meta *Metadata) (url.Values, error) {
	a := c.cfg.ClientAuth
	if a.method(meta) != AuthPrivateKeyJWT {
		return nil, nil
	}
	if a.Key == nil {
		return nil, fmt.Errorf("private_key_jwt needs a client key")
	}
	aud := a.AssertionAudience
	switch aud {
	case "", AudienceTokenEndpoint:
		aud = meta.TokenEndpoint
	case AudienceIssuer:
		aud = meta.Issuer // as the server writes it, trailing slash and all
	}
	signed, err := a.Key.assertion(c.cfg.ClientID, aud, c.cfg.Now())
	if err != nil {
		return nil, err
	}
	return url.Values{"client_assertion_type": {assertionType}, "client_assertion": {signed}}, nil
}

// Result is what a completed downstream login yields.
type Result struct {
	Token  *oauth2.Token // the brokered token set (access, refresh, expiry)
	User   string        // the resolved identity
	Scopes string        // the scopes the downstream server granted, when it says
}

// Exchange redeems the downstream authorization code and resolves the user.
func (c *Client) Exchange(ctx context.Context, code, verifier string) (*Result, error) {
	meta, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	conf := c.oauth2Config(meta)
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	if c.audienceParam() == ParamResource {
		// RFC 8707 §2.2: the resource of the token request.
		opts = append(opts, oauth2.SetAuthURLParam("resource", c.cfg.Resource))
	}
	assertion, err := c.assertion(meta)
	if err != nil {
		return nil, err
	}
	for k := range assertion {
		opts = append(opts, oauth2.SetAuthURLParam(k, assertion.Get(k)))
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.cfg.HTTPClient)
	tok, err := conf.Exchange(ctx, code, opts...)
	if err != nil {
		return nil, fmt.Errorf("exchanging the downstream authorization code: %w", err)
	}
	user, err := c.resolveUser(ctx, tok)
	if err != nil {
		return nil, err
	}
	scope, _ := tok.Extra("scope").(string)
	return &Result{Token: tok, User: user, Scopes: scope}, nil
}

// Refresh redeems refreshToken at the token endpoint (RFC 6749 §6). Scopes,
// when given, ask for an access token narrowed to them: downstream scope
// strings, a subset of those granted. The returned token carries
// refreshToken again when the server issues no new one, and the server's
// answer in its extra fields ("scope"). A refusal by the server is an
// *oauth2.RetrieveError.
func (c *Client) Refresh(ctx context.Context, refreshToken string, scopes []string) (*oauth2.Token, error) {
	meta, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	params := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	return c.tokenRequest(ctx, meta, params, scopes)
}

// tokenRequest posts params and scopes to the token endpoint with the
// configured client authentication. oauth2.Config's refresh sends no
// parameter but the refresh token; clientcredentials.Config sends its Scopes
// and any EndpointParams, and lets them replace grant_type for exactly this
// kind of interoperability, while keeping x/oauth2's client authentication
// styles, response parsing and RetrieveError.
func (c *Client) tokenRequest(ctx context.Context, meta *Metadata, params url.Values, scopes []string) (*oauth2.Token, error) {
	style, secret := c.authStyle(meta)
	assertion, err := c.assertion(meta)
	if err != nil {
		return nil, err
	}
	for k, v := range assertion {
		params[k] = v
	}
	conf := clientcredentials.Config{
		ClientID:       c.cfg.ClientID,
		ClientSecret:   secret,
		TokenURL:       meta.TokenEndpoint,
		Scopes:         scopes,
		EndpointParams: params,
		AuthStyle:      style,
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.cfg.HTTPClient)
	return conf.Token(ctx)
}

// Token types of RFC 8693.
const (
	tokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange"
	accessTokenType    = "urn:ietf:params:oauth:token-type:access_token"
)

// ExchangeToken trades subjectToken, a downstream access token of the
// user's, for an access token narrowed to scopes (RFC 8693 token exchange),
// bound to the configured audience the way Config.ResourceParam says. A
// refusal by the server is an *oauth2.RetrieveError.
func (c *Client) ExchangeToken(ctx context.Context, subjectToken string, scopes []string) (*oauth2.Token, error) {
	meta, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	params := url.Values{
		"grant_type":           {tokenExchangeGrant},
		"subject_token":        {subjectToken},
		"subject_token_type":   {accessTokenType},
		"requested_token_type": {accessTokenType},
	}
	if p := c.audienceParam(); p != "" {
		params.Set(p, c.cfg.Resource)
	}
	return c.tokenRequest(ctx, meta, params, scopes)
}

// TokenTypeIDJAG is the token type of an Identity Assertion JWT
// Authorization Grant (the MCP extension
// io.modelcontextprotocol/enterprise-managed-authorization).
const TokenTypeIDJAG = "urn:ietf:params:oauth:token-type:id-jag"

// ExchangeIDJAG trades idjag, an ID-JAG the downstream server issued
// itself, for the user's downstream token set (RFC 8693 token exchange with
// the gateway's client authentication), asking for the gateway's whole
// scope set as the authorization code flow does, bound to the configured
// audience. Result.User is the identity the response resolves to, or ""
// when the identity comes from an ID token and the response has none: the
// caller then relies on the ID-JAG's user, whom the same server named. A
// refusal by the server is an *oauth2.RetrieveError.
func (c *Client) ExchangeIDJAG(ctx context.Context, idjag string) (*Result, error) {
	meta, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	params := url.Values{
		"grant_type":           {tokenExchangeGrant},
		"subject_token":        {idjag},
		"subject_token_type":   {TokenTypeIDJAG},
		"requested_token_type": {accessTokenType},
	}
	if p := c.audienceParam(); p != "" {
		params.Set(p, c.cfg.Resource)
	}
	tok, err := c.tokenRequest(ctx, meta, params, c.ScopesFor(c.cfg.Scopes))
	if err != nil {
		return nil, fmt.Errorf("exchanging the ID-JAG at the downstream server: %w", err)
	}
	res := &Result{Token: tok}
	res.Scopes, _ = tok.Extra("scope").(string)
	if raw, _ := tok.Extra("id_token").(string); raw != "" || c.cfg.IdentitySource == SourceUserinfo {
		if res.User, err = c.resolveUser(ctx, tok); err != nil {
			return nil, err
		}
	}
	return res, nil
}
