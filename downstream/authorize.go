package downstream

import (
	"context"
	"maps"
	"slices"

	"golang.org/x/oauth2"
)

// DefaultLoginScopes are the scopes an OpenID provider needs for the
// gateway's own use: an ID token that names the user, and a refresh token.
func DefaultLoginScopes() []string { return []string{"openid", "offline_access"} }

// ReservedAuthParams are the authorization parameters the gateway sets
// itself; Config.AuthParams cannot name them.
var ReservedAuthParams = []string{
	"response_type", "client_id", "redirect_uri", "scope", "state",
	"code_challenge", "code_challenge_method", "resource", "audience",
	"request", "request_uri",
}

// MapScopes returns the downstream scope strings of the gateway's scope
// names: each name is replaced by its entry in Config.ScopeMap, or kept as
// it is when it has none. The result has no duplicates and keeps the order.
func (c *Client) MapScopes(names []string) []string {
	out := make([]string, 0, len(names))
	for _, name := range names {
		mapped, ok := c.cfg.ScopeMap[name]
		if !ok {
			mapped = []string{name}
		}
		for _, s := range mapped {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// ScopesFor returns the downstream scope of a token for the gateway's
// scope names: the login scopes and the names' downstream names
// (MapScopes), without duplicates. Every authorization asks for the
// gateway's whole set; a token narrowed to what one client was granted
// keeps the login scopes too, so that it is the grant's token minus the
// scopes not granted: an upstream may use it at the userinfo endpoint, and
// a server that keeps issuing refresh tokens only while offline_access is
// asked for keeps issuing them.
func (c *Client) ScopesFor(names []string) []string {
	all := slices.Clone(c.cfg.LoginScopes)
	for _, s := range c.MapScopes(names) {
		if !slices.Contains(all, s) {
			all = append(all, s)
		}
	}
	return all
}

// OAuth2Config returns the golang.org/x/oauth2 configuration of the gateway's
// downstream client, discovering the endpoints if needed. Its AuthStyle and
// ClientSecret follow Config.ClientAuth; with private_key_jwt the secret is
// empty and every token request needs a client assertion as well.
func (c *Client) OAuth2Config(ctx context.Context) (*oauth2.Config, error) {
	meta, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	return c.oauth2Config(meta), nil
}

func (c *Client) oauth2Config(meta *Metadata) *oauth2.Config {
	style, secret := c.authStyle(meta)
	return &oauth2.Config{
		ClientID:     c.cfg.ClientID,
		ClientSecret: secret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   meta.AuthorizationEndpoint,
			TokenURL:  meta.TokenEndpoint,
			AuthStyle: style,
		},
		RedirectURL: c.cfg.RedirectURL,
		Scopes:      c.ScopesFor(c.cfg.Scopes),
	}
}

// audienceParam is the parameter that names the configured audience at
// the authorization endpoint and in token exchanges: "resource",
// "audience", or "" when none is sent.
func (c *Client) audienceParam() string {
	if c.cfg.Resource == "" || c.cfg.ResourceParam == ParamNone {
		return ""
	}
	return c.cfg.ResourceParam // ParamResource and ParamAudience are the names
}

// AuthCodeURL returns where to send the user's browser: the downstream
// authorization endpoint with the gateway's client ID, state, PKCE S256
// challenge of verifier, scopes, audience and extra parameters.
func (c *Client) AuthCodeURL(ctx context.Context, state, verifier string) (string, error) {
	conf, err := c.OAuth2Config(ctx)
	if err != nil {
		return "", err
	}
	// No extra parameter may replace one the gateway sets: the config
	// refuses those names, and they are skipped here as well, since an
	// option would overwrite state or client_id.
	opts := make([]oauth2.AuthCodeOption, 0, len(c.cfg.AuthParams)+2)
	for _, k := range slices.Sorted(maps.Keys(c.cfg.AuthParams)) {
		if !slices.Contains(ReservedAuthParams, k) {
			opts = append(opts, oauth2.SetAuthURLParam(k, c.cfg.AuthParams[k]))
		}
	}
	opts = append(opts, oauth2.S256ChallengeOption(verifier))
	if p := c.audienceParam(); p != "" {
		opts = append(opts, oauth2.SetAuthURLParam(p, c.cfg.Resource))
	}
	return conf.AuthCodeURL(state, opts...), nil
}
