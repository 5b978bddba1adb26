// Package downstream is the gateway's OAuth client toward the downstream
// authorization server: the one client ID that brokers every user's grant.
//
// It discovers the server's metadata lazily (never at config load), sends the
// user to the server's authorization endpoint with the gateway's own PKCE
// challenge and the downstream resource, exchanges the returned code with
// golang.org/x/oauth2, and resolves the user's identity by the gateway's rule:
// a claim of the verified ID token, or of the userinfo response.
package downstream

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/jwk"
)

// Identity sources.
const (
	SourceIDToken  = "id_token"
	SourceUserinfo = "userinfo"
)

// maxResponseBytes bounds what the gateway reads from the downstream server.
const maxResponseBytes = 1 << 20

// Config describes the gateway's client registration at the downstream
// authorization server.
type Config struct {
	Issuer       string   // the downstream issuer URL
	ClientID     string   // the gateway's client ID there
	ClientSecret string   // empty for a public client
	Resource     string   // RFC 8707 resource / audience; empty to send none
	Scopes       []string // scopes requested at every authorization
	RedirectURL  string   // the gateway's callback URL

	IdentitySource string // SourceIDToken (default) or SourceUserinfo
	IdentityClaim  string // default "sub"

	// HTTPClient makes every request to the downstream server. Its Timeout
	// bounds discovery, exchange and userinfo calls. Nil: a client with a
	// 10 second timeout.
	HTTPClient *http.Client

	// MetadataTTL is how long discovered metadata and keys are reused.
	// Default: 1h.
	MetadataTTL time.Duration
}

// Metadata is the part of the downstream server's metadata the gateway uses.
type Metadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	UserinfoEndpoint      string `json:"userinfo_endpoint,omitempty"`
	JWKSURI               string `json:"jwks_uri,omitempty"`
	RevocationEndpoint    string `json:"revocation_endpoint,omitempty"`
}

// Result is what a completed downstream login yields.
type Result struct {
	Token  *oauth2.Token // the brokered token set (access, refresh, expiry)
	User   string        // the resolved identity
	Scopes string        // the scopes the downstream server granted, when it says
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
	if cfg.IdentitySource == "" {
		cfg.IdentitySource = SourceIDToken
	}
	if cfg.IdentityClaim == "" {
		cfg.IdentityClaim = "sub"
	}
	return &Client{cfg: cfg}
}

// Issuer returns the downstream issuer URL.
func (c *Client) Issuer() string { return c.cfg.Issuer }

// ClientID returns the gateway's client ID at the downstream server.
func (c *Client) ClientID() string { return c.cfg.ClientID }

// Metadata returns the downstream server's metadata, discovering it on first
// use and again after MetadataTTL. It tries RFC 8414 and OpenID discovery at
// the locations MCP clients also try, and insists the document's issuer is the
// configured one.
func (c *Client) Metadata(ctx context.Context) (*Metadata, error) {
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
	return nil, fmt.Errorf("discovering the downstream authorization server %s: %w", c.cfg.Issuer, errors.Join(errs...))
}

// OAuth2Config returns the golang.org/x/oauth2 configuration of the gateway's
// downstream client, discovering the endpoints if needed.
func (c *Client) OAuth2Config(ctx context.Context) (*oauth2.Config, error) {
	meta, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	return &oauth2.Config{
		ClientID:     c.cfg.ClientID,
		ClientSecret: c.cfg.ClientSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint},
		RedirectURL:  c.cfg.RedirectURL,
		Scopes:       c.cfg.Scopes,
	}, nil
}

// AuthCodeURL returns where to send the user's browser: the downstream
// authorization endpoint with the gateway's client ID, state, PKCE S256
// challenge of verifier, scopes and resource.
func (c *Client) AuthCodeURL(ctx context.Context, state, verifier string) (string, error) {
	conf, err := c.OAuth2Config(ctx)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if c.cfg.Resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", c.cfg.Resource))
	}
	return conf.AuthCodeURL(state, opts...), nil
}

// Exchange redeems the downstream authorization code and resolves the user.
func (c *Client) Exchange(ctx context.Context, code, verifier string) (*Result, error) {
	conf, err := c.OAuth2Config(ctx)
	if err != nil {
		return nil, err
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.cfg.HTTPClient)
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	if c.cfg.Resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", c.cfg.Resource))
	}
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

func (c *Client) resolveUser(ctx context.Context, tok *oauth2.Token) (string, error) {
	var claims map[string]any
	switch c.cfg.IdentitySource {
	case SourceUserinfo:
		meta, err := c.Metadata(ctx)
		if err != nil {
			return "", err
		}
		if meta.UserinfoEndpoint == "" {
			return "", errors.New("the downstream server has no userinfo_endpoint: use identity id_token")
		}
		status, err := c.getJSON(ctx, meta.UserinfoEndpoint, tok.AccessToken, &claims)
		if err != nil {
			return "", fmt.Errorf("downstream userinfo: %w", err)
		}
		if status != http.StatusOK {
			return "", fmt.Errorf("downstream userinfo answered status %d (some servers refuse audience-bound tokens there: use identity id_token)", status)
		}
	default:
		raw, _ := tok.Extra("id_token").(string)
		if raw == "" {
			return "", errors.New("the downstream server returned no ID token: request the openid scope or use identity userinfo")
		}
		var err error
		if claims, err = c.verifyIDToken(ctx, raw); err != nil {
			return "", err
		}
	}
	return claimString(claims, c.cfg.IdentityClaim)
}

func claimString(claims map[string]any, name string) (string, error) {
	switch v := claims[name].(type) {
	case string:
		if v != "" {
			return v, nil
		}
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case json.Number:
		return v.String(), nil
	}
	return "", fmt.Errorf("the downstream identity has no usable %q claim: choose another claim with identity claim <name>", name)
}

// verifyIDToken checks the ID token's signature against the downstream keys,
// its issuer, audience and expiry.
func (c *Client) verifyIDToken(ctx context.Context, raw string) (map[string]any, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return c.publicKey(ctx, kid)
	},
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}),
		jwt.WithIssuer(c.cfg.Issuer),
		jwt.WithAudience(c.cfg.ClientID),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(time.Minute),
	)
	if err != nil {
		return nil, fmt.Errorf("the downstream ID token did not verify: %w", err)
	}
	return claims, nil
}

func (c *Client) publicKey(ctx context.Context, kid string) (crypto.PublicKey, error) {
	meta, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key, ok := c.keys[kid]
	if !ok {
		// Unknown kid: the server may have rotated its keys; fetch once.
		if meta.JWKSURI == "" {
			return nil, errors.New("the downstream server publishes no jwks_uri to verify ID tokens with: use identity userinfo")
		}
		var raw json.RawMessage
		status, err := c.getJSON(ctx, meta.JWKSURI, "", &raw)
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("GET %s: status %d", meta.JWKSURI, status)
		}
		if c.keys, err = jwk.ParseSet(raw); err != nil {
			return nil, fmt.Errorf("downstream JWKS: %w", err)
		}
		if key, ok = c.keys[kid]; !ok && kid == "" && len(c.keys) == 1 {
			for _, k := range c.keys {
				key, ok = k, true
			}
		}
		if !ok {
			return nil, fmt.Errorf("the downstream ID token is signed with unknown key %q", kid)
		}
	}
	return key.PublicKey()
}

func (c *Client) getJSON(ctx context.Context, url, bearer string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return 0, err
	}
	if len(body) > maxResponseBytes {
		return 0, fmt.Errorf("GET %s: response larger than %d bytes", url, maxResponseBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	return resp.StatusCode, nil
}
