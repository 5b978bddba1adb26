// Package downstream is the gateway's OAuth client toward the downstream
// authorization server: the one client ID that brokers every user's grant.
//
// It discovers the server's metadata lazily (never at config load), or takes
// the endpoints from the config for a server without a discovery document.
// It sends the user to the server's authorization endpoint with the gateway's
// own PKCE challenge, the downstream audience (as an RFC 8707 resource, an
// audience parameter, or not at all), the downstream names of the gateway's
// scopes and any provider-specific parameters. It redeems the returned code
// and refreshes tokens with golang.org/x/oauth2, authenticating as the
// configured method says (client_secret_basic, client_secret_post,
// private_key_jwt or none), and resolves the user's identity by the
// gateway's rule: a claim of the verified ID token, or a field of the
// userinfo (or any user endpoint's) response.
package downstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/jwk"
)

// Identity sources.
const (
	SourceIDToken  = "id_token"
	SourceUserinfo = "userinfo"
)

// How Config.Resource is sent to the downstream server.
const (
	// ParamResource sends it as the RFC 8707 resource parameter, at the
	// authorization endpoint and in the code exchange.
	ParamResource = "resource"
	// ParamAudience sends it as an audience parameter at the authorization
	// endpoint, as Auth0 (and some Okta setups) expect.
	ParamAudience = "audience"
	// ParamNone does not send it: the server derives the audience itself,
	// for instance from the scope names (Microsoft Entra).
	ParamNone = "none"
)

// maxResponseBytes bounds what the gateway reads from the downstream server.
const maxResponseBytes = 1 << 20

// Config describes the gateway's client registration at the downstream
// authorization server.
type Config struct {
	Issuer   string // the downstream issuer URL
	ClientID string // the gateway's client ID there

	// Endpoints, when its AuthorizationEndpoint and TokenEndpoint are set,
	// replaces discovery: for servers that publish no metadata document,
	// such as GitHub. Its Issuer is ignored.
	Endpoints Metadata

	// ClientAuth is how the gateway authenticates at the token endpoint.
	ClientAuth ClientAuth

	// Resource is the downstream audience the brokered tokens are bound to;
	// ResourceParam says how it is sent: ParamResource (the default when
	// empty), ParamAudience or ParamNone.
	Resource      string
	ResourceParam string

	// Scopes are the gateway's scope names requested at every authorization;
	// ScopeMap gives the downstream scope strings of those that are named
	// differently there (tickets.read -> api://acme/tickets.read). A name
	// the map lacks is sent as it is.
	Scopes   []string
	ScopeMap map[string][]string
	// LoginScopes are added to every authorization for the gateway's own
	// needs, typically openid (an ID token) and offline_access (a refresh
	// token). Nil adds none.
	LoginScopes []string
	// AuthParams are added to every authorization request, e.g. prompt
	// consent or Google's access_type offline. They cannot replace the
	// parameters the gateway sets itself.
	AuthParams map[string]string

	RedirectURL string // the gateway's callback URL

	IdentitySource string // SourceIDToken (default) or SourceUserinfo
	IdentityClaim  string // default "sub"
	// UserinfoURL replaces the discovered userinfo_endpoint: any URL that
	// answers the user's JSON when given the downstream access token, such
	// as GitHub's https://api.github.com/user.
	UserinfoURL string

	// HTTPClient makes every request to the downstream server. Its Timeout
	// bounds discovery, token, userinfo and key requests. Nil: a client with
	// a 10 second timeout.
	HTTPClient *http.Client

	// MetadataTTL is how long discovered metadata and keys are reused.
	// Default: 1h.
	MetadataTTL time.Duration

	// Now is the clock for client assertions; nil means time.Now.
	Now func() time.Time
}

// Metadata is the part of the downstream server's metadata the gateway uses.
type Metadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint,omitempty"`
	JWKSURI                           string   `json:"jwks_uri,omitempty"`
	RevocationEndpoint                string   `json:"revocation_endpoint,omitempty"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported,omitempty"`
}

// Client talks to one downstream authorization server. It is safe for
// concurrent use.
type Client struct {
	cfg Config

	mu        sync.Mutex
	meta      *Metadata
	keys      map[string]jwk.Key
	fetchedAt time.Time
}

// New returns a Client; it performs no network I/O.
func New(cfg Config) *Client {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MetadataTTL <= 0 {
		cfg.MetadataTTL = time.Hour
	}
	if cfg.ResourceParam == "" {
		cfg.ResourceParam = ParamResource
	}
	if cfg.IdentitySource == "" {
		cfg.IdentitySource = SourceIDToken
	}
	if cfg.IdentityClaim == "" {
		cfg.IdentityClaim = "sub"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg}
}

// explicit reports whether the config names the endpoints itself.
func (c *Client) explicit() bool {
	return c.cfg.Endpoints.AuthorizationEndpoint != "" && c.cfg.Endpoints.TokenEndpoint != ""
}

// Metadata returns the downstream server's metadata: the configured
// endpoints, or else the discovered document, fetched on first use and
// again after MetadataTTL. Discovery tries RFC 8414 and OpenID discovery at
// the locations MCP clients also try, and insists the document's issuer is
// the configured one.
func (c *Client) Metadata(ctx context.Context) (*Metadata, error) {
	if c.explicit() {
		meta := c.cfg.Endpoints
		meta.Issuer = c.cfg.Issuer
		return &meta, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.meta != nil && time.Since(c.fetchedAt) < c.cfg.MetadataTTL {
		return c.meta, nil
	}
	meta, err := c.discover(ctx)
	if err != nil {
		if c.meta != nil {
			return c.meta, nil // keep serving what worked while the server is unreachable
		}
		return nil, err
	}
	c.meta, c.keys, c.fetchedAt = meta, nil, time.Now()
	return meta, nil
}

func (c *Client) discover(ctx context.Context) (*Metadata, error) {
	issuer := strings.TrimSuffix(c.cfg.Issuer, "/")
	var candidates []string
	if i := strings.Index(issuer, "://"); i >= 0 {
		if slash := strings.Index(issuer[i+3:], "/"); slash >= 0 {
			origin, path := issuer[:i+3+slash], issuer[i+3+slash:]
			candidates = append(candidates,
				origin+"/.well-known/oauth-authorization-server"+path,
				origin+"/.well-known/openid-configuration"+path)
		}
	}
	candidates = append(candidates,
		issuer+"/.well-known/openid-configuration",
		issuer+"/.well-known/oauth-authorization-server")
	var errs []error
	for _, u := range candidates {
		var meta Metadata
		status, err := c.getJSON(ctx, u, "", &meta)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if status != http.StatusOK {
			errs = append(errs, fmt.Errorf("GET %s: status %d", u, status))
			continue
		}
		if strings.TrimSuffix(meta.Issuer, "/") != issuer {
			return nil, fmt.Errorf("downstream metadata at %s names issuer %q, not the configured %q: fix authorization_server", u, meta.Issuer, c.cfg.Issuer)
		}
		if meta.AuthorizationEndpoint == "" || meta.TokenEndpoint == "" {
			return nil, fmt.Errorf("downstream metadata at %s lacks authorization_endpoint or token_endpoint", u)
		}
		return &meta, nil
	}
	return nil, fmt.Errorf("discovering the downstream authorization server %s (a server without a discovery document needs authorization_endpoint and token_endpoint in the config): %w",
		c.cfg.Issuer, errors.Join(errs...))
}
