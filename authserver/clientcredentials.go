package authserver

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// GrantClientCredentials is the client credentials grant (RFC 6749 §4.4)
// of the MCP authorization extension
// io.modelcontextprotocol/oauth-client-credentials: a client with no
// person present (a background service, a CI pipeline, an agent) obtains
// an access token with its own credentials.
const GrantClientCredentials = "client_credentials"

// MachineClient is a client of the config that may use the client
// credentials grant, and where the downstream token its requests carry to
// the upstream comes from. Only clients of the config can be one: a client
// that registered itself chose its own credentials, and nobody vouched for
// it.
type MachineClient struct {
	// Scopes bound what the client may be granted at any server, besides
	// each server's own scopes; empty allows every scope of the server.
	Scopes scopes.Set
	// Keys verify the client's private_key_jwt assertions; nil when it
	// authenticates with its secret.
	Keys *ClientKeys
	// AsUser makes the client act with the downstream grant of this user
	// (who authorized the gateway once in a browser), narrowed to the
	// scopes the client is granted, as that user's own clients are.
	AsUser string
	// Downstream obtains the client's own downstream token, narrowed to
	// the granted scopes and bound to the gateway's downstream audience,
	// when AsUser is empty: the gateway's downstream client's client
	// credentials grant, or that of downstream credentials configured for
	// this client.
	Downstream ClientCredentialer
	// TokenKey names the client's own downstream tokens in the Broker,
	// with the granted scopes: it must differ between clients, and change
	// when the credentials behind Downstream do.
	TokenKey string
}

// ClientCredentialer obtains downstream access tokens with the client
// credentials grant; downstream.Client implements it.
type ClientCredentialer interface {
	// ClientCredentials obtains a token for the gateway's scope names.
	ClientCredentials(ctx context.Context, names []string) (*oauth2.Token, error)
}

// clientCredentials handles grant_type=client_credentials for an
// authenticated client: a machine client of the config, for the scopes of
// the server it may be granted, which a scope parameter may narrow (none
// asked grants them all; a scope the server does not offer is refused). The access token is the server's like any other
// (issuer, audience), with the client ID as its subject and no refresh
// token; it belongs to a refresh family of its own that lives as long as
// it does, through which the client's tokens are revoked.
func (e *Edge) clientCredentials(ctx context.Context, s *Server, client *grants.Client, form url.Values) (*tokenResponse, *oauthError) {
	g := s.Gateway()
	m := g.Machines[client.ID]
	if m == nil || client.Source != grants.SourceConfig {
		return nil, &oauthError{Status: http.StatusBadRequest, Code: "unauthorized_client", Description: "only clients configured with client_credentials at the gateway may use this grant; this client authorizes with a user instead"}
	}
	if oerr := e.checkTarget(s, client, form); oerr != nil {
		return nil, oerr
	}
	allowed := machineScopes(s, m)
	granted := allowed
	if form.Has("scope") {
		asked, err := scopes.Parse(form.Get("scope"))
		if err != nil {
			return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: err.Error()}
		}
		if asked = asked.Minus(ignoredScopes); !asked.IsEmpty() {
			// A scope the server does not offer is refused, as strict
			// servers refuse it at authorization: nobody is there to
			// notice a token that lacks it. One the server offers but the
			// client may not have is narrowed away, as consent would: SDK
			// clients ask for every scope the challenge names.
			if !s.Rule.Offered.ContainsAll(asked) {
				return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "scope " + asked.Minus(s.Rule.Offered).String() + " is not offered by server " + s.Name + "; it offers " + s.Rule.Offered.String()}
			}
			granted = asked.Intersect(allowed)
		}
	}
	if granted.IsEmpty() {
		return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "none of the scopes asked for at server " + s.Name + " is allowed to this client; it may ask for " + allowed.String()}
	}
	if m.AsUser != "" {
		switch grant, err := g.Ledger.Grant(ctx, m.AsUser); {
		case isNotFound(err):
			return nil, errInvalidGrant("the user this client acts as has not authorized the gateway yet: they sign in once with an MCP client in a browser")
		case err != nil:
			e.log.Error("reading a downstream grant", zap.String("server", s.Name), zap.Error(err))
			return nil, errServer("the gateway's storage is unavailable; retry")
		case grant.Dead:
			return nil, errInvalidGrant("the sign-in at the identity provider of the user this client acts as has ended: they authorize again in a browser")
		}
	}
	return e.issueWithoutRefresh(ctx, s, m.AsUser, accesstoken.Claims{
		Subject:   client.ID, // RFC 9068 §2.2: no resource owner, the client
		Scope:     granted.String(),
		ClientID:  client.ID,
		GrantType: GrantClientCredentials,
	})
}

// checkTarget refuses a token for server s, asked for without a user's
// authorization, that the client may not be granted, or whose resource
// parameter names another server.
func (e *Edge) checkTarget(s *Server, client *grants.Client, form url.Values) *oauthError {
	if len(client.Servers) > 0 && !contains(client.Servers, s.Name) {
		return &oauthError{Status: http.StatusBadRequest, Code: "unauthorized_client", Description: "this client may not be authorized for server " + s.Name}
	}
	if form.Has("resource") && !e.resourceMatches(s, form.Get("resource")) {
		return &oauthError{Status: http.StatusBadRequest, Code: "invalid_target", Description: "resource must be " + s.Resource}
	}
	return nil
}

// machineScopes is what server s may grant the machine client m (nil for
// a client that is none): the scopes s offers, narrowed to m's own when
// the config names any.
func machineScopes(s *Server, m *MachineClient) scopes.Set {
	if m == nil || m.Scopes.IsEmpty() {
		return s.Rule.Offered
	}
	return s.Rule.Offered.Intersect(m.Scopes)
}

// errNotMachine refuses a client credentials token whose client the
// config no longer lets use the grant.
var errNotMachine = errors.New("the client may no longer use the client credentials grant")

// machineToken returns the downstream token for a request of a machine
// client's access token: the configured user's grant narrowed to the
// token's scopes, or the client's own token obtained with the client
// credentials grant for those scopes, once across the instances sharing
// the storage and renewed before it expires.
func (e *Edge) machineToken(ctx context.Context, s *Server, claims *accesstoken.Claims) (*oauth2.Token, error) {
	g := s.Gateway()
	m := g.Machines[claims.ClientID]
	if claims.GrantType != GrantClientCredentials || m == nil {
		return nil, errNotMachine
	}
	if m.AsUser != "" {
		return g.Broker.TokenFor(ctx, m.AsUser, claims.Scope, s.Narrowing)
	}
	// One token per client and granted scope set: the downstream token
	// does not depend on the server, only on what it carries.
	return g.Broker.MachineToken(ctx, m.TokenKey+"\x00"+claims.Scope, func(ctx context.Context) (*oauth2.Token, error) {
		return m.Downstream.ClientCredentials(ctx, strings.Fields(claims.Scope))
	})
}
