package authserver

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// GrantJWTBearer is the JWT bearer authorization grant (RFC 7523 §2.1),
// with which a client of the MCP authorization extension
// io.modelcontextprotocol/enterprise-managed-authorization redeems an
// Identity Assertion JWT Authorization Grant (ID-JAG) that the
// organisation's identity provider issued it for a server.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// IDJAGType is the typ header of an ID-JAG; explicit typing (RFC 8725
// §3.11) keeps an ID token or an access token of the same identity
// provider from passing as one.
const IDJAGType = "oauth-id-jag+jwt"

// Bounds of ID-JAGs.
const (
	// maxIDJAGBytes bounds an ID-JAG: a few claims and an RS512 signature
	// fit well under it.
	maxIDJAGBytes = 16 << 10
	// MaxIDJAGLifetime is how far in the future an ID-JAG's exp may lie:
	// it is redeemed once, right after the token exchange, and its jti is
	// remembered until it expires.
	MaxIDJAGLifetime = time.Hour
)

// EnterpriseIdP is an organisation's identity provider that the gateway
// trusts to vouch for its users at the gateway's servers with ID-JAGs.
type EnterpriseIdP struct {
	// Issuer is the iss of its ID-JAGs.
	Issuer string
	// Keys verify its ID-JAGs: its JWKS, from a configured URL or found
	// by discovery of Issuer.
	Keys *ClientKeys
	// Clients are the client IDs (clients of the config) it may issue
	// ID-JAGs to.
	Clients []string
	// UserClaim names the claim that identifies the user, as the
	// gateway's identity rule does for the downstream grant; "" is sub.
	UserClaim string
	// DownstreamTokenExchange: the provider is the downstream server, and
	// the ID-JAG of a user without a downstream grant is exchanged there
	// for one.
	DownstreamTokenExchange bool
}

// idjag is what a verified ID-JAG says.
type idjag struct {
	IdP       *EnterpriseIdP
	User      string
	ClientID  string
	Scope     string // as the identity provider granted it; "" for none
	HasScope  bool
	ID        string // jti
	ExpiresAt time.Time
}

// idjagRule is what an ID-JAG must satisfy.
type idjagRule struct {
	// IdPs are the trusted identity providers, by issuer.
	IdPs map[string]*EnterpriseIdP
	// Audience is the server's issuer, Resource its resource URI.
	Audience, Resource string
	// ClientID is the authenticated client's.
	ClientID string
	// Key returns the key of idp that the kid names.
	Key func(idp *EnterpriseIdP, kid string) (crypto.PublicKey, error)
	Now time.Time
}

// idjagClaims are the claims of an ID-JAG (the extension's §4.3).
type idjagClaims struct {
	jwt.RegisteredClaims
	Resource string  `json:"resource"`
	ClientID string  `json:"client_id"`
	Scope    *string `json:"scope"`
}

// verifyIDJAG checks an ID-JAG against rule (RFC 7521 §5.2 and the
// extension's §5.1): typ oauth-id-jag+jwt; iss a trusted identity
// provider, whose key made its asymmetric signature; aud the server's
// issuer and resource its resource; client_id the authenticated client,
// which that provider may vouch for; exp and iat present, exp not passed
// and at most MaxIDJAGLifetime ahead, iat and nbf not in the future; a
// jti; the user claim. Replays are the caller's to refuse, with the jti.
func verifyIDJAG(raw string, rule idjagRule) (*idjag, error) {
	if len(raw) > maxIDJAGBytes {
		return nil, fmt.Errorf("the assertion is larger than %d bytes", maxIDJAGBytes)
	}
	var unverified jwt.RegisteredClaims
	tok, _, err := jwt.NewParser().ParseUnverified(raw, &unverified)
	if err != nil {
		return nil, errors.New("the assertion is not a JWT")
	}
	if typ, _ := tok.Header["typ"].(string); !strings.EqualFold(strings.TrimPrefix(strings.ToLower(typ), "application/"), IDJAGType) {
		return nil, fmt.Errorf("the assertion's typ must be %s (an ID-JAG from the token exchange at the identity provider, not an ID token)", IDJAGType)
	}
	idp := rule.IdPs[unverified.Issuer]
	if idp == nil {
		return nil, fmt.Errorf("the assertion's issuer %q is not an identity provider this gateway trusts", truncate(unverified.Issuer, 200))
	}
	var claims idjagClaims
	tok, err = assertionParser(rule.Now).ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return rule.Key(idp, kid)
	})
	if err := jwtRefusal("the assertion", "the identity provider's keys", "exchange the ID token for a new one", tok, err); err != nil {
		return nil, err
	}
	audience := func(a string) bool { return strings.TrimSuffix(a, "/") == rule.Audience }
	switch {
	case claims.IssuedAt == nil:
		return nil, errors.New("the assertion has no iat")
	case !slices.ContainsFunc(claims.Audience, audience):
		return nil, errors.New("the assertion is for another audience: its aud must be this server's issuer " + rule.Audience)
	case strings.TrimSuffix(claims.Resource, "/") != rule.Resource:
		return nil, errors.New("the assertion is for another resource: its resource must be " + rule.Resource)
	case claims.ClientID != rule.ClientID:
		return nil, errors.New("the assertion was issued to another client: its client_id must be the authenticated client's")
	case !slices.Contains(idp.Clients, rule.ClientID):
		return nil, fmt.Errorf("the identity provider %s may not vouch for client %s at this gateway", idp.Issuer, rule.ClientID)
	case claims.ExpiresAt.Time.After(rule.Now.Add(MaxIDJAGLifetime + assertionLeeway)):
		return nil, fmt.Errorf("the assertion's exp is more than %v ahead", MaxIDJAGLifetime)
	case claims.ID == "":
		return nil, errors.New("the assertion has no jti")
	case len(claims.ID) > maxJTIBytes:
		return nil, fmt.Errorf("the assertion's jti is longer than %d bytes", maxJTIBytes)
	}
	user := claims.Subject
	if idp.UserClaim != "" && idp.UserClaim != "sub" {
		user = ""
		var all jwt.MapClaims
		if _, _, err := jwt.NewParser().ParseUnverified(raw, &all); err == nil {
			user, _ = all[idp.UserClaim].(string)
		}
	}
	if user == "" {
		name := cmpOr(idp.UserClaim, "sub")
		return nil, fmt.Errorf("the assertion has no %s claim to identify the user by", name)
	}
	a := &idjag{IdP: idp, User: user, ClientID: claims.ClientID, ID: claims.ID, ExpiresAt: claims.ExpiresAt.Time}
	if claims.Scope != nil {
		a.Scope, a.HasScope = *claims.Scope, true
	}
	return a, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// truncate cuts s to at most n bytes, for quoting untrusted input in errors.
func truncate(s string, n int) string {
	return s[:min(len(s), n)]
}

// jwtBearer handles grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
// with an ID-JAG, for an authenticated client of the config that a trusted
// identity provider may vouch for. The user the ID-JAG names is granted,
// without a consent page, the scopes of its scope claim (all of which the
// server must offer; an absent claim: those the client may have at the
// server; a claim with none of the server's scopes: invalid_scope),
// narrowed by a scope parameter. The downstream token is the user's
// brokered grant, so the user must have authorized the gateway once in a
// browser (or, with DownstreamTokenExchange, the ID-JAG is exchanged at
// the downstream server for that grant); until then the answer is
// invalid_grant naming the authorization endpoint. No refresh token: the client exchanges a new
// ID-JAG when the access token expires, and the identity provider's
// policy is asked again.
func (e *Edge) jwtBearer(ctx context.Context, s *Server, client *grants.Client, form url.Values) (*tokenResponse, *oauthError) {
	g := s.Gateway()
	if client.Source != grants.SourceConfig || !g.vouchedFor(client.ID) {
		return nil, &oauthError{Status: http.StatusBadRequest, Code: "unauthorized_client", Description: "no enterprise identity provider of this gateway may vouch for this client; only clients of the config it names may redeem ID-JAGs"}
	}
	// An ID-JAG is a bearer credential: only a client that proved itself
	// with a secret or a private_key_jwt assertion may redeem one, so a
	// stolen ID-JAG is useless without the client's credential too.
	if len(client.SecretHash) == 0 && client.TokenEndpointAuthMethod != AuthPrivateKeyJWT {
		return nil, errInvalidClient("a client that redeems ID-JAGs must authenticate with its credential; this client is public")
	}
	if oerr := e.checkTarget(s, client, form); oerr != nil {
		return nil, oerr
	}
	raw := form.Get("assertion")
	if raw == "" {
		return nil, errInvalidRequest("assertion is missing: send the ID-JAG obtained from the identity provider's token exchange")
	}
	now := e.opts.Now()
	a, err := verifyIDJAG(raw, idjagRule{
		IdPs:     g.EnterpriseIdPs,
		Audience: s.Issuer,
		Resource: s.Resource,
		ClientID: client.ID,
		Key: func(idp *EnterpriseIdP, kid string) (crypto.PublicKey, error) {
			return idp.Keys.key(ctx, kid, now)
		},
		Now: now,
	})
	if err != nil {
		e.audit("token refused", s, client.ID, "", "", zap.String("grant_type", GrantJWTBearer), zap.String("reason", err.Error()))
		return nil, errInvalidGrant(err.Error())
	}
	allowed := machineScopes(s, g.Machines[client.ID])
	granted := allowed
	if a.HasScope {
		vouched, err := scopes.Parse(a.Scope)
		if err != nil {
			return nil, errInvalidGrant("the assertion's scope is unreadable: " + err.Error())
		}
		// A scope claim that is present vouches for those scopes alone:
		// empty, or only scopes the gateway ignores, vouches for none,
		// never for everything the client may have.
		vouched = vouched.Minus(ignoredScopes)
		switch {
		case vouched.IsEmpty():
			return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "the assertion's scope vouches for none of server " + s.Name + "'s scopes; it offers " + s.Rule.Offered.String()}
		case !s.Rule.Offered.ContainsAll(vouched):
			return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "the assertion's scope " + vouched.Minus(s.Rule.Offered).String() + " is not offered by server " + s.Name + "; it offers " + s.Rule.Offered.String()}
		}
		granted = vouched.Intersect(allowed)
	}
	if form.Has("scope") {
		asked, err := scopes.Parse(form.Get("scope"))
		if err != nil {
			return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: err.Error()}
		}
		if asked = asked.Minus(ignoredScopes); !asked.IsEmpty() {
			granted = granted.Intersect(asked)
		}
	}
	if granted.IsEmpty() {
		return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "none of the scopes the assertion vouches for at server " + s.Name + " is allowed to this client; it may have " + allowed.String()}
	}
	// Single use across the instances sharing the storage; the issuer
	// namespaces the jti, apart from client assertions' (a client ID has
	// no NUL).
	switch err := g.Ledger.UseAssertion(ctx, "\x00idjag\x00"+a.IdP.Issuer, a.ID, a.ExpiresAt.Add(assertionLeeway)); {
	case errors.Is(err, grants.ErrAssertionReplayed):
		e.audit("token refused", s, client.ID, a.User, "", zap.String("grant_type", GrantJWTBearer), zap.String("reason", "ID-JAG replayed"))
		return nil, errInvalidGrant("the assertion was used before; exchange the ID token at the identity provider for a new one")
	case err != nil:
		e.log.Error("recording an ID-JAG", zap.String("server", s.Name), zap.Error(err))
		return nil, errServer("the gateway's storage is unavailable; retry with a new assertion")
	}
	switch grant, err := g.Ledger.Grant(ctx, a.User); {
	case (isNotFound(err) || err == nil && grant.Dead) && a.IdP.DownstreamTokenExchange:
		if oerr := e.exchangeIDJAG(ctx, s, client.ID, a, raw); oerr != nil {
			return nil, oerr
		}
	case isNotFound(err), err == nil && grant.Dead:
		// The gateway holds no downstream token for the user: they
		// authorize once interactively, and ID-JAGs work from then on.
		e.audit("token refused", s, client.ID, a.User, "", zap.String("grant_type", GrantJWTBearer), zap.String("reason", "no downstream grant"))
		return nil, errInvalidGrant("the gateway holds no sign-in of this user at its identity provider yet: authorize once with the authorization code flow at " + s.Issuer + "/authorize, then ID-JAGs are accepted")
	case err != nil:
		e.log.Error("reading a downstream grant", zap.String("server", s.Name), zap.Error(err))
		return nil, errServer("the gateway's storage is unavailable; retry")
	}
	return e.issueWithoutRefresh(ctx, s, a.User, accesstoken.Claims{
		Subject:   a.User,
		Scope:     granted.String(),
		ClientID:  client.ID,
		GrantType: GrantJWTBearer,
	}, zap.String("idp", a.IdP.Issuer))
}

// exchangeIDJAG obtains the downstream grant of a's user, who has none,
// by exchanging the ID-JAG at the downstream server, which issued it
// (RFC 8693), and keeps it as the callback keeps a browser sign-in's. The
// downstream server's answer must name the same user, when it names one.
func (e *Edge) exchangeIDJAG(ctx context.Context, s *Server, clientID string, a *idjag, raw string) *oauthError {
	g := s.Gateway()
	res, err := g.Downstream.ExchangeIDJAG(ctx, raw)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			e.audit("token refused", s, clientID, a.User, "", zap.String("grant_type", GrantJWTBearer), zap.String("reason", "the downstream server refused the ID-JAG exchange: "+re.ErrorCode))
			return errInvalidGrant("the downstream server refused to exchange the assertion for the user's sign-in (" + re.ErrorCode + "); authorize once with the authorization code flow at " + s.Issuer + "/authorize")
		}
		e.log.Warn("exchanging an ID-JAG downstream", zap.String("server", s.Name), zap.Error(err))
		return errServer("the downstream server could not be reached to exchange the assertion; retry with a new one")
	}
	if res.User != "" && res.User != a.User {
		e.audit("token refused", s, clientID, a.User, "", zap.String("grant_type", GrantJWTBearer), zap.String("reason", "the downstream ID-JAG exchange named another user"))
		return errInvalidGrant("the downstream server's token for the assertion is another user's")
	}
	now := e.opts.Now()
	if err := g.Broker.Put(ctx, &grants.Grant{User: a.User, Token: res.Token, Scopes: res.Scopes, CreatedAt: now, RefreshedAt: now}); err != nil {
		e.log.Error("saving a grant", zap.String("gateway", g.Name), zap.Error(err))
		return errServer("the gateway's storage is unavailable; retry with a new assertion")
	}
	e.audit("downstream grant by ID-JAG exchange", s, clientID, a.User, res.Scopes, zap.String("idp", a.IdP.Issuer))
	return nil
}

// vouchedFor says whether an enterprise identity provider of g may issue
// ID-JAGs to clientID.
func (g *Gateway) vouchedFor(clientID string) bool {
	for _, idp := range g.EnterpriseIdPs {
		if slices.Contains(idp.Clients, clientID) {
			return true
		}
	}
	return false
}

// DiscoverJWKS returns a function that finds the JWKS URL of issuer in its
// OpenID Provider metadata (or its RFC 8414 metadata), for ClientKeys'
// Discover: the metadata's issuer must be issuer itself.
func DiscoverJWKS(issuer string) func(ctx context.Context, hc *http.Client) (string, error) {
	return func(ctx context.Context, hc *http.Client) (string, error) {
		u, err := url.Parse(issuer)
		if err != nil {
			return "", err
		}
		candidates := []string{
			strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration",
			u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.EscapedPath(), "/"),
		}
		var last error
		for _, c := range candidates {
			var md struct {
				Issuer  string `json:"issuer"`
				JWKSURI string `json:"jwks_uri"`
			}
			if last = getJSON(ctx, hc, c, &md); last != nil {
				continue
			}
			switch {
			case md.Issuer != issuer:
				return "", fmt.Errorf("the metadata at %s names issuer %q, not %q", c, truncate(md.Issuer, 200), issuer)
			case md.JWKSURI == "":
				return "", fmt.Errorf("the metadata at %s has no jwks_uri", c)
			}
			// As a configured jwks_uri is checked: an absolute http(s)
			// URL, https off loopback. A discovered URL holds no
			// placeholder, which the check would leave for later.
			if strings.Contains(md.JWKSURI, "{") {
				return "", fmt.Errorf("the metadata at %s: jwks_uri %q is not a URL", c, truncate(md.JWKSURI, 200))
			}
			if err := downstream.CheckEndpointURL(md.JWKSURI); err != nil {
				return "", fmt.Errorf("the metadata at %s: jwks_uri %w", c, err)
			}
			return md.JWKSURI, nil
		}
		return "", fmt.Errorf("discovering the identity provider's keys: %w", last)
	}
}

// getJSON reads a bounded JSON document.
func getJSON(ctx context.Context, hc *http.Client, rawURL string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", rawURL, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(v)
}
