package downstream

import (
	"context"
	"net/url"

	"golang.org/x/oauth2"
)

// ClientCredentials obtains an access token of the gateway's own client at
// the downstream server with the client credentials grant (RFC 6749
// §4.4), for a machine client of the gateway that acts on no user's
// behalf: names are the gateway's scope names granted to it, asked for in
// the downstream server's names (MapScopes) without the login scopes (no
// user signs in), and the token is bound to the configured audience the
// way Config.ResourceParam says. A refusal by the server is an
// *oauth2.RetrieveError.
func (c *Client) ClientCredentials(ctx context.Context, names []string) (*oauth2.Token, error) {
	meta, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	params := url.Values{"grant_type": {"client_credentials"}}
	if p := c.audienceParam(); p != "" {
		params.Set(p, c.cfg.Resource)
	}
	return c.tokenRequest(ctx, meta, params, c.MapScopes(names))
}

// WithCredentials returns a client of the same downstream server, audience
// and scope names that authenticates as another client: the downstream
// credentials configured for one machine client. It shares no discovered
// metadata with c and performs no network I/O.
func (c *Client) WithCredentials(clientID string, auth ClientAuth) *Client {
	cfg := c.cfg
	cfg.ClientID, cfg.ClientAuth = clientID, auth
	return &Client{cfg: cfg}
}
