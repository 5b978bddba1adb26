package caddymodule

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/gateway"
)

// EnterpriseIdPConfig is an organisation's identity provider that the
// gateway trusts for the MCP authorization extension
// io.modelcontextprotocol/enterprise-managed-authorization ("Cross App
// Access"): a client signed in at the provider exchanges the user's ID
// token there (RFC 8693) for an ID-JAG naming a server of the gateway, and
// redeems it at that server's token endpoint with the JWT bearer grant
// (RFC 7523) for an access token, with no consent page. The provider's
// policy decides who may use which server. The user's calls carry the
// user's brokered downstream token, so each user authorizes the gateway
// once in a browser before ID-JAGs are accepted for them.
type EnterpriseIdPConfig struct {
	// Issuer is the provider's issuer identifier, the iss of its ID-JAGs.
	Issuer string `json:"issuer"`

	// JWKSURI is where the provider publishes the keys that sign its
	// ID-JAGs. Exactly one of JWKSURI and Discovery.
	JWKSURI string `json:"jwks_uri,omitempty"`

	// Discovery finds the keys through the provider's metadata
	// (<issuer>/.well-known/openid-configuration, else the RFC 8414
	// document), on first use; its issuer must be Issuer.
	Discovery bool `json:"discovery,omitempty"`

	// Clients are the client IDs (clients of this gateway's config) the
	// provider may issue ID-JAGs to; only they may redeem ID-JAGs. The
	// provider knows each by the same client ID (the extension's §6.1).
	Clients []string `json:"clients"`

	// UserClaim is the ID-JAG claim that identifies the user; its value
	// unlocks that user's downstream grant, so it must name the user as
	// the gateway's identity rule does. A provider whose Issuer is the
	// gateway's authorization_server names users as the downstream server
	// does. Any other provider's subjects are its own, unrelated to the
	// downstream server's: it must set UserClaim to the identity rule's
	// claim, which may then not be "sub" (e.g. user_claim email with
	// identity claim email), and a gateway trusts at most one such
	// provider, so that no provider vouches for another's users.
	// Default: the identity rule's claim, else "sub" (only for the
	// authorization_server).
	UserClaim string `json:"user_claim,omitempty"`

	// DownstreamTokenExchange lets a user who has not yet authorized the
	// gateway in a browser use ID-JAGs at once: the gateway trades the
	// ID-JAG at the downstream token endpoint by RFC 8693 token exchange
	// (subject_token_type urn:ietf:params:oauth:token-type:id-jag, with
	// the gateway's client credentials and its whole scope set) for the
	// user's downstream grant, and keeps it as the browser sign-in would.
	// Only for a provider whose Issuer is the gateway's
	// authorization_server, which must accept such an exchange from the
	// gateway's client.
	DownstreamTokenExchange bool `json:"downstream_token_exchange,omitempty"`
}

// unmarshalEnterpriseIdP parses: enterprise_idp <issuer> { jwks_uri <url>
// | discovery; clients <client id...>; user_claim <claim>;
// downstream_token_exchange }
func unmarshalEnterpriseIdP(d *caddyfile.Dispenser) (*EnterpriseIdPConfig, error) {
	idp := new(EnterpriseIdPConfig)
	if !d.NextArg() {
		return nil, d.Err("enterprise_idp needs the provider's issuer: enterprise_idp <issuer> { jwks_uri <url> | discovery; clients <client id...> }")
	}
	idp.Issuer = d.Val()
	if d.NextArg() {
		return nil, d.Errf("enterprise_idp %q: unexpected argument %q; its settings go in its block", idp.Issuer, d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "jwks_uri":
			err = oneArg(d, &idp.JWKSURI)
		case "discovery":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			idp.Discovery = true
		case "clients", "client":
			var ids []string
			ids, err = someArgs(d)
			idp.Clients = append(idp.Clients, ids...)
		case "user_claim":
			err = oneArg(d, &idp.UserClaim)
		case "downstream_token_exchange":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			idp.DownstreamTokenExchange = true
		default:
			return nil, d.Errf("enterprise_idp %q: unrecognized option %q (expected jwks_uri, discovery, clients, user_claim or downstream_token_exchange)", idp.Issuer, d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return idp, nil
}

// checkEnterpriseIdPs checks the gateway's enterprise identity providers:
// an issuer URL each, once; exactly one way to their keys; confidential
// clients of the config; and a user claim that names the user as the
// downstream grant does.
func checkEnterpriseIdPs(path, who string, gw *Gateway) error {
	seen := map[string]bool{}
	foreign := -1 // the provider other than the downstream server, if any
	for j, idp := range gw.EnterpriseIdPs {
		p := fmt.Sprintf("%s/enterprise_idps/%d", path, j)
		if err := downstream.CheckEndpointURL(idp.Issuer); err != nil {
			return &ConfigError{p + "/issuer", fmt.Sprintf("%s: enterprise_idp issuer %v", who, err)}
		}
		if seen[idp.Issuer] {
			return &ConfigError{p + "/issuer", fmt.Sprintf("%s: enterprise_idp %q is declared twice", who, idp.Issuer)}
		}
		seen[idp.Issuer] = true
		if (idp.JWKSURI != "") == idp.Discovery {
			return &ConfigError{p + "/jwks_uri", fmt.Sprintf("%s: enterprise_idp %q needs exactly one of jwks_uri <url> and discovery, for the keys that sign its ID-JAGs", who, idp.Issuer)}
		}
		if idp.JWKSURI != "" {
			if err := downstream.CheckEndpointURL(idp.JWKSURI); err != nil {
				return &ConfigError{p + "/jwks_uri", fmt.Sprintf("%s: enterprise_idp %q: jwks_uri %v", who, idp.Issuer, err)}
			}
		}
		if len(idp.Clients) == 0 {
			return &ConfigError{p + "/clients", fmt.Sprintf("%s: enterprise_idp %q needs clients: the client IDs of the config it may issue ID-JAGs to", who, idp.Issuer)}
		}
		for k, id := range idp.Clients {
			i := slices.IndexFunc(gw.Clients, func(c *ClientConfig) bool { return c.ID == id })
			if i < 0 {
				return &ConfigError{fmt.Sprintf("%s/clients/%d", p, k), fmt.Sprintf("%s: enterprise_idp %q: client %q is not a client of the gateway's config (client %s { secret ... })", who, idp.Issuer, id, id)}
			}
			// An ID-JAG is a bearer credential: a public client would
			// let whoever holds a stolen one redeem it by its client_id.
			if c := gw.Clients[i]; c.Secret == "" && c.PublicKey == "" && c.JWKSURI == "" {
				return &ConfigError{fmt.Sprintf("%s/clients/%d", p, k), fmt.Sprintf("%s: enterprise_idp %q: client %q is public; a client that redeems ID-JAGs must authenticate, with a secret (or a public_key or jwks_uri for private_key_jwt)", who, idp.Issuer, id)}
			}
		}
		if sameIssuer(idp.Issuer, gw.AuthorizationServer) {
			continue
		}
		if idp.DownstreamTokenExchange {
			return &ConfigError{p + "/downstream_token_exchange", fmt.Sprintf("%s: enterprise_idp %q: downstream_token_exchange needs the provider to be the downstream server, but the authorization_server is %s", who, idp.Issuer, gw.AuthorizationServer)}
		}
		// Another provider's subjects are not the downstream server's:
		// only a claim both name the user by, such as an email address,
		// ties its ID-JAG to the user's downstream grant.
		claim := identityClaim(gw)
		switch {
		case idp.UserClaim == "" || idp.UserClaim == "sub":
			return &ConfigError{p + "/user_claim", fmt.Sprintf("%s: enterprise_idp %q is not the authorization_server %s, so its sub is not the downstream server's: set user_claim to the claim both name the user by, with the same claim in identity (e.g. user_claim email and identity claim email)", who, idp.Issuer, gw.AuthorizationServer)}
		case idp.UserClaim != claim:
			return &ConfigError{p + "/user_claim", fmt.Sprintf("%s: enterprise_idp %q: user_claim %q must be the claim of the gateway's identity rule (identity claim %s), so that the user it names is the downstream grant's", who, idp.Issuer, idp.UserClaim, claim)}
		case foreign >= 0:
			return &ConfigError{p + "/issuer", fmt.Sprintf("%s: enterprise_idp %q and enterprise_idp %q are both other than the authorization_server; trust at most one such provider, so that no provider vouches for another's users", who, gw.EnterpriseIdPs[foreign].Issuer, idp.Issuer)}
		}
		foreign = j
	}
	return nil
}

// sameIssuer says whether issuer identifiers a and b are the same, up to
// a trailing slash.
func sameIssuer(a, b string) bool {
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

// identityClaim is the claim that names the user for the downstream grant.
func identityClaim(gw *Gateway) string {
	if gw.Identity != nil {
		return cmp.Or(gw.Identity.Claim, "sub")
	}
	return "sub"
}

// enterpriseClient says whether an enterprise identity provider of gw may
// vouch for client id: such a client needs no redirect URIs.
func enterpriseClient(gw *Gateway, id string) bool {
	return slices.ContainsFunc(gw.EnterpriseIdPs, func(idp *EnterpriseIdPConfig) bool { return slices.Contains(idp.Clients, id) })
}

// resolveEnterpriseIdPs adds the gateway's enterprise identity providers
// to its settings.
func resolveEnterpriseIdPs(gw *Gateway, s *gateway.Settings) {
	claim := identityClaim(gw)
	for _, idp := range gw.EnterpriseIdPs {
		s.EnterpriseIdPs = append(s.EnterpriseIdPs, gateway.EnterpriseIdP{
			Issuer:    idp.Issuer,
			JWKSURI:   idp.JWKSURI,
			Clients:   slices.Clone(idp.Clients),
			UserClaim: cmp.Or(idp.UserClaim, claim),

			DownstreamTokenExchange: idp.DownstreamTokenExchange,
		})
	}
}
