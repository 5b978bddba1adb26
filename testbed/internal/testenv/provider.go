package testenv

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
)

// Defaults of ProviderConfig.
const (
	DefaultProviderAddr   = "127.0.0.1:0"
	DefaultClientID       = "mcp-gateway"
	DefaultClientSecret   = "demo-secret"
	DefaultAudience       = "https://api.example.com"
	DefaultAccessTokenTTL = time.Hour
)

// DefaultScopes are the API scopes a provider offers when ProviderConfig
// names none: the full scope set of the shared-gateway example, which one
// support server and one operations server split between them.
func DefaultScopes() []string {
	return []string{"tickets.read", "tickets.write", "accounts.read", "admin.read"}
}

// DefaultUser is the person who signs in when ProviderConfig names no users.
func DefaultUser() User {
	return User{
		Subject:  "demo-user",
		Username: "demo",
		Password: "demo",
		Email:    "demo@example.com",
		Name:     "Demo User",
	}
}

const (
	// maxRequestBody bounds every request body the provider reads.
	maxRequestBody = 64 << 10
	// maxRecordedClientIDs bounds ClientIDs against clients that invent IDs.
	maxRecordedClientIDs = 100
)

// User is an account at the provider.
type User struct {
	Subject  string // stable identifier, the "sub" claim
	Username string // what the person types on the login page
	Password string
	Email    string
	Name     string
	// NumericID is the "id" the /user endpoint of a PlainOAuth provider
	// answers, a number as at GitHub; default 1000 plus the user's position
	// in ProviderConfig.Users.
	NumericID int64
}

// ProviderConfig configures StartProvider. The zero value is a working
// provider with the defaults documented on each field.
type ProviderConfig struct {
	// Addr is the TCP address to listen on; default DefaultProviderAddr.
	Addr string
	// ClientID and ClientSecret are the credentials of the one confidential
	// client, the gateway; defaults DefaultClientID and DefaultClientSecret.
	ClientID, ClientSecret string
	// RedirectURIs are the gateway callback URIs allowed for that client,
	// matched exactly. More can be added after start with AddRedirectURI.
	RedirectURIs []string
	// Scopes are the API scopes offered besides openid, profile, email and
	// offline_access; default DefaultScopes(). Unknown scopes in a request
	// are dropped, as op does, not refused.
	Scopes []string
	// Audience is the API audience an access token is bound to when the
	// request names it as RFC 8707 resource; default DefaultAudience.
	Audience string
	// AccessTokenTTL is the access token lifetime, announced as expires_in;
	// default DefaultAccessTokenTTL. Tests use a few seconds to force
	// refreshes.
	AccessTokenTTL time.Duration
	// Users are the accounts that can sign in; default DefaultUser() alone.
	// The first user's credentials are prefilled on the login page.
	Users []User

	// The fields below make the provider behave like a particular kind of
	// identity provider. Their zero values keep the behaviour above.

	// AudienceParameter names the authorization parameter that carries the
	// API audience: "resource" (RFC 8707, the default) or "audience" (as at
	// Auth0). With "audience", a resource parameter is refused.
	AudienceParameter string
	// RefuseUnknownScopes refuses (invalid_scope) an authorization request
	// that names a scope the provider does not offer, as Microsoft Entra
	// and Google do, instead of dropping it.
	RefuseUnknownScopes bool
	// OfflineByParameter makes the provider refuse the offline_access scope
	// and issue a refresh token only for access_type=offline, as Google
	// does.
	OfflineByParameter bool
	// PlainOAuth makes the provider a plain OAuth server, as GitHub is: no
	// discovery document, the openid scope refused (so no ID token), token
	// responses form-encoded, and the user served at /user as JSON with a
	// numeric "id".
	PlainOAuth bool
	// ClientAuthMethod is the one way the client may authenticate at the
	// token endpoint: "client_secret_basic", "client_secret_post" or
	// "private_key_jwt". Empty accepts either secret method.
	ClientAuthMethod string
	// ClientPublicKey verifies private_key_jwt client assertions.
	ClientPublicKey crypto.PublicKey
	// ClientKeyID, if set, is the kid every client assertion must name, as
	// servers holding several keys of a client require.
	ClientKeyID string
	// ClientCertificate, if set, is the client's registered certificate,
	// as Microsoft Entra ID holds one: each assertion must name it by its
	// thumbprint (an x5t#S256 or x5t header), and its key verifies them
	// when ClientPublicKey is nil.
	ClientCertificate *x509.Certificate
	// AssertionAudience is the aud a client assertion must carry:
	// "token_endpoint" (the default) or "issuer".
	AssertionAudience string
	// IgnoreRefreshScope makes the provider ignore the scope of a refresh
	// request and issue the grant's whole scope again, as servers that do
	// not narrow on refresh do.
	IgnoreRefreshScope bool
	// TokenExchange offers RFC 8693 token exchange: the client trades one
	// of its access tokens for another of the same user with a subset of
	// its scopes (and, unless the request names one, its audience).
	TokenExchange bool
	// ClientCredentials offers the client credentials grant: the client
	// obtains an access token of its own (its client ID the subject) for
	// the API scopes it asks for that the provider offers, bound to the
	// audience it names as the authorization endpoint would.
	ClientCredentials bool
	// IDJAG makes the provider an enterprise identity provider of the
	// MCP enterprise-managed authorization extension: its client trades
	// an ID token it issued, by RFC 8693 token exchange with
	// requested_token_type urn:ietf:params:oauth:token-type:id-jag, for an
	// ID-JAG naming the audience and resource asked for and IDJAGClientID.
	IDJAG bool
	// IDJAGClientID is the client_id of the ID-JAGs: the client's ID at
	// the MCP authorization server; default the provider's ClientID.
	// An IDJAG provider also redeems, for its client, an ID-JAG it issued
	// (RFC 8693, subject_token_type
	// urn:ietf:params:oauth:token-type:id-jag) for the user's access and
	// refresh tokens, as a downstream server that is also the enterprise
	// identity provider may.
	IDJAGClientID string
}

func (c ProviderConfig) withDefaults() (ProviderConfig, error) {
	if c.Addr == "" {
		c.Addr = DefaultProviderAddr
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.ClientSecret == "" {
		c.ClientSecret = DefaultClientSecret
	}
	if len(c.Scopes) == 0 {
		c.Scopes = DefaultScopes()
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.AccessTokenTTL == 0 {
		c.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if len(c.Users) == 0 {
		c.Users = []User{DefaultUser()}
	}
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	c.Scopes = slices.Clone(c.Scopes)
	c.Users = slices.Clone(c.Users)
	for i := range c.Users {
		if c.Users[i].NumericID == 0 {
			c.Users[i].NumericID = 1000 + int64(i)
		}
	}
	if c.AudienceParameter == "" {
		c.AudienceParameter = "resource"
	}
	if c.AssertionAudience == "" {
		c.AssertionAudience = "token_endpoint"
	}
	if c.AudienceParameter != "resource" && c.AudienceParameter != "audience" {
		return c, fmt.Errorf("testenv: AudienceParameter %q is neither resource nor audience", c.AudienceParameter)
	}
	switch c.ClientAuthMethod {
	case "", "client_secret_basic", "client_secret_post":
	case "private_key_jwt":
		if c.ClientPublicKey == nil && c.ClientCertificate != nil {
			c.ClientPublicKey = c.ClientCertificate.PublicKey
		}
		if c.ClientPublicKey == nil {
			return c, errors.New("testenv: private_key_jwt needs a ClientPublicKey")
		}
	default:
		return c, fmt.Errorf("testenv: unknown ClientAuthMethod %q", c.ClientAuthMethod)
	}
	if c.AssertionAudience != "token_endpoint" && c.AssertionAudience != "issuer" {
		return c, fmt.Errorf("testenv: AssertionAudience %q is neither token_endpoint nor issuer", c.AssertionAudience)
	}

	if c.AccessTokenTTL < time.Second {
		return c, fmt.Errorf("testenv: AccessTokenTTL %v is below one second, the resolution of expires_in", c.AccessTokenTTL)
	}
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return c, fmt.Errorf("testenv: scope %q is empty or contains white space", s)
		}
	}
	seen := make(map[string]bool)
	for _, u := range c.Users {
		if u.Subject == "" || u.Username == "" {
			return c, errors.New("testenv: every user needs a Subject and a Username")
		}
		if seen["s:"+u.Subject] || seen["u:"+u.Username] {
			return c, fmt.Errorf("testenv: user %q or subject %q appears twice", u.Username, u.Subject)
		}
		seen["s:"+u.Subject], seen["u:"+u.Username] = true, true
	}
	return c, nil
}

// AuthorizeRequest is what a client asked for at the authorization endpoint.
type AuthorizeRequest struct {
	ClientID    string
	RedirectURI string
	Resources   []string // RFC 8707 resource values, in order
	Scopes      []string // as requested, before the provider drops unknown ones
	Audiences   []string // audience parameter values, in order
	// Params are all the request's parameters, as sent.
	Params url.Values
}

// TokenInfo describes an access token the provider issued.
type TokenInfo struct {
	Subject  string
	ClientID string
	Scopes   []string
	Audience []string
	// Expiry is the token's "exp", in whole seconds like the claim.
	Expiry time.Time
}

// Provider is a running OpenID provider acting as the downstream
// authorization server. Its methods are safe for concurrent use.
type Provider struct {
	cfg    ProviderConfig
	issuer string
	op     *op.Provider
	store  *storage
	server *http.Server

	tokenDown atomic.Bool

	mu            sync.Mutex
	clientIDs     []string
	lastAuthorize *AuthorizeRequest
	authMethods   []string             // client authentication methods seen
	refreshScopes []string             // the scope of each refresh request
	exchanges     []string             // the scope of each token exchange request
	clientGrants  []string             // the scope of each client credentials request
	assertionIDs  map[string]time.Time // jti of accepted assertions, until their expiry
}

// StartProvider starts a provider on cfg.Addr and returns once it accepts
// connections. Its issuer is http://<listen address>; discovery is at
// Issuer()+"/.well-known/openid-configuration".
func StartProvider(cfg ProviderConfig) (*Provider, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("testenv: provider listen: %w", err)
	}
	store, err := newStorage(cfg)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("testenv: generate signing key: %w", err)
	}
	p := &Provider{cfg: cfg, issuer: "http://" + dialableAddr(ln.Addr()), store: store}

	var cryptoKey [32]byte
	rand.Read(cryptoKey[:])
	p.op, err = op.NewProvider(&op.Config{
		CryptoKey:             cryptoKey,
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
		SupportedScopes: append([]string{
			oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess,
		}, cfg.Scopes...),
	}, opStorage(store, cfg.TokenExchange, cfg.ClientCredentials), op.StaticIssuer(p.issuer), op.WithAllowInsecure())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("testenv: create provider: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle(loginPath, op.NewIssuerInterceptor(p.op.IssuerFromRequest).Handler(&loginPage{
		store:    store,
		prefill:  cfg.Users[0],
		callback: op.AuthCallbackURL(p.op),
	}))
	if cfg.PlainOAuth {
		mux.HandleFunc("GET "+plainUserPath, p.serveUser)
	}
	mux.Handle("/", p.op)
	p.server = &http.Server{Handler: p.observe(mux), ReadHeaderTimeout: 10 * time.Second}
	go p.server.Serve(ln)
	return p, nil
}

// dialableAddr turns a listen address into one a client can dial: a
// wildcard host becomes the loopback address.
func dialableAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// observe is the thin layer in front of op: it records what clients send,
// carries RFC 8707 resource values to storage, and can take the token
// endpoint down.
func (p *Provider) observe(next http.Handler) http.Handler {
	authorizePath := p.op.AuthorizationEndpoint().Relative()
	tokenPath := p.op.TokenEndpoint().Relative()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
		switch r.URL.Path {
		case authorizePath:
			if r.ParseForm() == nil {
				p.recordAuthorize(r.Form)
				audience, err := p.authorizeQuirks(r)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				r = r.WithContext(withResources(r.Context(), audience))
			}
		case tokenPath:
			if p.tokenDown.Load() {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"the token endpoint is down"}`))
				return
			}
			if r.ParseForm() == nil {
				id := r.PostForm.Get("client_id")
				if user, _, ok := r.BasicAuth(); ok {
					// RFC 6749 section 2.3.1: the ID is form-encoded in Basic.
					if unescaped, err := url.QueryUnescape(user); err == nil {
						id = unescaped
					}
				}
				p.recordClientID(id)
				if status, err := p.tokenQuirks(r); err != nil {
					writeOAuthError(w, status, err)
					return
				}
				r = r.WithContext(withResources(r.Context(), r.PostForm[p.cfg.AudienceParameter]))
				if p.cfg.IDJAG && r.PostForm.Get("grant_type") == tokenExchangeGrant && r.PostForm.Get("requested_token_type") == TokenTypeIDJAG {
					p.serveIDJAG(w, r)
					return
				}
				if p.cfg.IDJAG && r.PostForm.Get("grant_type") == tokenExchangeGrant && r.PostForm.Get("subject_token_type") == TokenTypeIDJAG {
					p.redeemIDJAG(w, r)
					return
				}
			}
			if p.cfg.PlainOAuth {
				formEncoded(next, w, r)
				return
			}
		default:
			if p.cfg.PlainOAuth && strings.HasPrefix(r.URL.Path, "/.well-known/") {
				http.NotFound(w, r)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (p *Provider) recordAuthorize(form url.Values) {
	req := &AuthorizeRequest{
		ClientID:    form.Get("client_id"),
		RedirectURI: form.Get("redirect_uri"),
		Resources:   slices.Clone(form["resource"]),
		Scopes:      strings.Fields(form.Get("scope")),
		Audiences:   slices.Clone(form["audience"]),
		Params:      cloneValues(form),
	}
	p.recordClientID(req.ClientID)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastAuthorize = req
}

func (p *Provider) recordClientID(id string) {
	if id == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.Contains(p.clientIDs, id) && len(p.clientIDs) < maxRecordedClientIDs {
		p.clientIDs = append(p.clientIDs, id)
	}
}

// Issuer returns the issuer URL, without a trailing slash.
func (p *Provider) Issuer() string { return p.issuer }

// Config returns the configuration in effect, defaults filled in.
func (p *Provider) Config() ProviderConfig {
	c := p.cfg
	c.Scopes = slices.Clone(c.Scopes)
	c.Users = slices.Clone(c.Users)
	p.store.mu.Lock()
	c.RedirectURIs = slices.Clone(p.store.redirectURIs)
	p.store.mu.Unlock()
	return c
}

// Endpoint returns the authorization and token endpoints for
// golang.org/x/oauth2, with the client authenticating by HTTP Basic.
func (p *Provider) Endpoint() oauth2.Endpoint {
	return oauth2.Endpoint{
		AuthURL:   p.op.AuthorizationEndpoint().Absolute(p.issuer),
		TokenURL:  p.op.TokenEndpoint().Absolute(p.issuer),
		AuthStyle: oauth2.AuthStyleInHeader,
	}
}

// AddRedirectURI allows one more callback URI for the client, for a gateway
// whose address is known only after the provider started.
func (p *Provider) AddRedirectURI(uri string) { p.store.addRedirectURI(uri) }

// RefreshCount reports how many refresh-token grants the provider has
// served successfully.
func (p *Provider) RefreshCount() int { return p.store.refreshes() }

// ClientIDs returns every distinct client ID presented at the authorization
// and token endpoints, in the order first seen.
func (p *Provider) ClientIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.clientIDs)
}

// LastAuthorize returns the most recent authorization request, and false if
// there was none.
func (p *Provider) LastAuthorize() (AuthorizeRequest, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastAuthorize == nil {
		return AuthorizeRequest{}, false
	}
	r := *p.lastAuthorize
	r.Resources = slices.Clone(r.Resources)
	r.Scopes = slices.Clone(r.Scopes)
	r.Audiences = slices.Clone(r.Audiences)
	r.Params = cloneValues(r.Params)
	return r, true
}

// RevokeUserTokens invalidates every refresh token of the user with this
// subject, as an administrator revoking sessions at the provider would: the
// next refresh with any of them fails with invalid_grant. Access tokens stay
// valid until they expire. It reports how many refresh tokens it revoked.
func (p *Provider) RevokeUserTokens(subject string) int { return p.store.revokeSubject(subject) }

// TokenInfo reports on an access token this provider signed, and false if
// the signature does not verify or the token was revoked or long expired.
// It is for tests proving which token reached an upstream.
func (p *Provider) TokenInfo(accessToken string) (TokenInfo, bool) {
	jws, err := jose.ParseSigned(accessToken, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return TokenInfo{}, false
	}
	payload, err := jws.Verify(&p.store.signingKey.key.PublicKey)
	if err != nil {
		return TokenInfo{}, false
	}
	var claims struct {
		ID string `json:"jti"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return TokenInfo{}, false
	}
	t, ok := p.store.accessTokenByID(claims.ID)
	if !ok {
		return TokenInfo{}, false
	}
	return TokenInfo{
		Subject:  t.subject,
		ClientID: t.clientID,
		Scopes:   t.scopes,
		Audience: t.audience,
		Expiry:   t.expiry.Truncate(time.Second),
	}, true
}

// SetTokenEndpointDown makes the token endpoint answer 503 with
// temporarily_unavailable while down is true, to test transient failures.
func (p *Provider) SetTokenEndpointDown(down bool) { p.tokenDown.Store(down) }

// Close stops the provider at once, dropping open connections.
func (p *Provider) Close() error { return p.server.Close() }
