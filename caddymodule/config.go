package caddymodule

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
)

// Gateway is one auth boundary: one downstream authorization server, one
// downstream client ID, one downstream resource (audience) and one rule for
// resolving the user's identity. It holds the full set of scopes that the
// servers attached to it may request. Servers that need a different value for
// any of these belong to a different gateway.
type Gateway struct {
	// Name identifies the gateway in server references, storage keys, logs
	// and metrics. Letters, digits, '-', '_' and '.'. Its stored state
	// (signing keys, clients, consents, grants) belongs to its auth
	// boundary, the site's public_url with the gateway's
	// authorization_server, client_id and resource, not to the name alone:
	// gateways of one name on two sites sharing a storage keep apart, and
	// changing one of those four starts the gateway's state afresh.
	Name string `json:"name"`

	// AuthorizationServer is the issuer URL of the downstream OAuth 2.0 /
	// OpenID Connect authorization server. Its metadata is discovered lazily
	// (RFC 8414, then OpenID discovery) on the first authorization, not at
	// config load, unless AuthorizationEndpoint and TokenEndpoint are given.
	AuthorizationServer string `json:"authorization_server"`

	// AuthorizationEndpoint and TokenEndpoint are the downstream server's
	// endpoints, for a server that publishes no discovery document (GitHub).
	// Given together, they replace discovery: the gateway then has no keys
	// to verify ID tokens with, so Identity must use userinfo with an
	// endpoint.
	AuthorizationEndpoint string `json:"authorization_endpoint,omitempty"`
	TokenEndpoint         string `json:"token_endpoint,omitempty"`

	// ClientID is the gateway's one client ID at the downstream authorization
	// server. Runtime placeholders such as {env.ACME_CLIENT_ID} are resolved
	// at provision time.
	ClientID string `json:"client_id"`

	// ClientSecret is the gateway's client secret at the downstream server.
	// Give it as a runtime placeholder ({env.NAME} or {file./path}) so that it
	// never appears in the config that the admin API shows.
	ClientSecret string `json:"client_secret,omitempty"`

	// ClientAuth is how the gateway authenticates at the downstream token
	// endpoint. Default: client_secret_basic with a ClientSecret (or
	// client_secret_post if the server's metadata lists only that), none
	// without one.
	ClientAuth *ClientAuth `json:"client_auth,omitempty"`

	// Resource is the downstream API's resource indicator (RFC 8707) or
	// audience that the brokered downstream tokens are bound to.
	Resource string `json:"resource,omitempty"`

	// ResourceParameter is how Resource is sent: "resource" (RFC 8707, at
	// the authorization endpoint and in the code exchange; the default),
	// "audience" (an audience parameter at the authorization endpoint, as
	// Auth0 expects) or "none" (not sent, for servers that derive the
	// audience from the scopes, like Microsoft Entra).
	ResourceParameter string `json:"resource_parameter,omitempty"`

	// AuthorizationParams are added to every downstream authorization
	// request, e.g. {"prompt": "consent", "access_type": "offline"} for a
	// refresh token at Google. They cannot replace the parameters the
	// gateway sets itself (client_id, redirect_uri, scope, state, PKCE,
	// resource, audience).
	AuthorizationParams map[string]string `json:"authorization_params,omitempty"`

	// Scopes is the full set of scopes that servers attached to this gateway
	// may request. Each server requests a subset.
	Scopes []string `json:"scopes"`

	// ScopeMap gives the downstream scope strings of gateway scopes that the
	// downstream server names differently, e.g. "tickets.read" ->
	// ["api://acme/tickets.read"] at Microsoft Entra. A scope it does not
	// list is sent under its own name. MCP clients see only the gateway's
	// names.
	ScopeMap map[string][]string `json:"scope_map,omitempty"`

	// LoginScopes are added to every downstream authorization for the
	// gateway's own needs. Default (when absent): "openid" (an ID token to
	// resolve the user) and "offline_access" (a refresh token). An empty
	// list adds none, for a server that is not an OpenID provider (GitHub)
	// or that refuses offline_access (Google, which wants access_type
	// offline in AuthorizationParams instead).
	LoginScopes []string `json:"login_scopes,omitzero"`

	// PerServerTokens narrows the downstream token each server receives to
	// the scopes the calling client was granted for that server.
	// Default: on, handing out the full token (with a logged warning)
	// where the downstream server cannot narrow.
	PerServerTokens *PerServerTokens `json:"per_server_tokens,omitempty"`

	// Identity is the rule that resolves the user behind a downstream grant.
	// Default: the "sub" claim of the verified ID token.
	Identity *IdentityRule `json:"identity,omitempty"`

	// EncryptionKey is a secret (at least 16 bytes, given as a runtime
	// placeholder) from which the key that encrypts stored downstream tokens
	// and signing keys is derived. When empty, a random key is generated once
	// and kept in Caddy storage. Earlier keys listed in
	// PreviousEncryptionKeys still decrypt old records after a change.
	EncryptionKey string `json:"encryption_key,omitempty"`

	// PreviousEncryptionKeys keep records sealed under earlier keys readable.
	PreviousEncryptionKeys []string `json:"previous_encryption_keys,omitempty"`

	// Clients are pre-registered OAuth clients of this gateway, for operators
	// who register their own applications instead of relying on dynamic
	// client registration or client ID metadata documents.
	Clients []*ClientConfig `json:"clients,omitempty"`

	// EnterpriseIdPs are organisations' identity providers whose ID-JAGs
	// the gateway's servers redeem for access tokens (enterprise-managed
	// authorization).
	EnterpriseIdPs []*EnterpriseIdPConfig `json:"enterprise_idps,omitempty"`

	// AllowPrivateMetadataDocuments lets client ID metadata documents be
	// fetched from any address, and over http. Off by default, when only
	// public addresses are fetched from (global unicast outside every
	// special-purpose range: no loopback, private, link-local, shared or
	// documentation addresses, no NAT64, 6to4 or Teredo), checked on the
	// address dialled: a URL client ID must not turn the gateway into a
	// proxy into the private network (SSRF). Turn it on only for local
	// development and tests.
	AllowPrivateMetadataDocuments bool `json:"allow_private_metadata_documents,omitempty"`

	// TrustedClientHosts are host names (such as claude.ai or chatgpt.com,
	// no scheme, port or path) whose client ID metadata documents the
	// operator vouches for. The consent page names every metadata-document
	// client by its client ID's host, since its name and logo are only the
	// document's claims, and warns that the application is not verified
	// unless that host (on any port) is listed here. Applications that
	// register dynamically are always shown as not verified; clients of the
	// config never are.
	TrustedClientHosts []string `json:"trusted_client_hosts,omitempty"`

	// ScopeDescriptions say in a few words what each scope lets an
	// application do, such as "Read your support tickets" for
	// tickets.read. The consent page and the connected-apps page show them,
	// with the scope's name in small print; a scope without one is shown
	// by its name. Keys must be scopes of the gateway; each text is 1 to
	// 200 characters without control characters.
	ScopeDescriptions map[string]string `json:"scope_descriptions,omitempty"`
}

// IdentityRule says how the gateway resolves the user's identity after the
// downstream login.
type IdentityRule struct {
	// Source is "id_token" (the verified ID token's claims, the default) or
	// "userinfo" (the downstream server's userinfo endpoint). Some providers
	// refuse audience-bound access tokens at userinfo, hence the default.
	Source string `json:"source,omitempty"`

	// Claim is the claim that names the user: a top-level member of the ID
	// token or of the userinfo response (a string, or a number such as
	// GitHub's "id"). Default: "sub".
	Claim string `json:"claim,omitempty"`

	// Endpoint replaces the discovered userinfo endpoint (source userinfo):
	// any URL that answers the user's JSON for the downstream access token,
	// such as GitHub's https://api.github.com/user.
	Endpoint string `json:"endpoint,omitempty"`
}

// ClientAuth is how the gateway authenticates itself at the downstream
// token endpoint.
type ClientAuth struct {
	// Method is "client_secret_basic" (HTTP Basic), "client_secret_post"
	// (the secret in the form), "private_key_jwt" (a client assertion
	// signed with PrivateKey, RFC 7523) or "none" (a public client).
	Method string `json:"method"`

	// PrivateKey is the PEM private key (RSA, ECDSA or Ed25519) that signs
	// private_key_jwt assertions. Give it as a runtime placeholder such as
	// {file./etc/caddy/gateway-key.pem} so that it never appears in the
	// config that the admin API shows.
	PrivateKey string `json:"private_key,omitempty"`

	// Certificate is the X.509 certificate (PEM) of PrivateKey, for
	// servers that register the client's certificate rather than its key
	// (Microsoft Entra ID): each assertion then names it by its SHA-256 and
	// SHA-1 thumbprints (x5t#S256 and x5t headers). It may instead be given
	// in PrivateKey's PEM text, after the key.
	Certificate string `json:"certificate,omitempty"`

	// KeyID is put in each assertion's kid header, for servers that hold
	// several keys of the client.
	KeyID string `json:"key_id,omitempty"`

	// AssertionAudience is the assertions' aud: "token_endpoint" (the
	// default; Okta, Microsoft Entra, Keycloak), "issuer" (Auth0, and newer
	// guidance) or an absolute URL.
	AssertionAudience string `json:"assertion_audience,omitempty"`
}

// keyPEM is the PEM text of the private key and its certificate, each
// passed through resolve (placeholders).
func (ca *ClientAuth) keyPEM(resolve func(string) string) string {
	key, cert := resolve(ca.PrivateKey), resolve(ca.Certificate)
	if cert == "" {
		return key
	}
	return key + "\n" + cert
}

// PerServerTokens says how the downstream token a server receives is
// narrowed to the scopes the user granted the calling client for that
// server (the scope of the client's access token), so that an upstream
// never holds access its client was not given: neither another server's
// scopes nor those of its own that the client was not granted, which a
// tool without a call scope of its own would otherwise act with. The
// narrowed token carries the granted scopes in the downstream server's
// names (scope_map) and the login scopes. A client granted the gateway's
// whole set gets the full token, which carries exactly that.
type PerServerTokens struct {
	// Mode is "refresh" (the default: a refresh-token grant that asks for
	// the granted scopes, RFC 6749 §6), "token_exchange" (an RFC 8693
	// token exchange of the grant's access token for one with the granted
	// scopes, for servers that offer it; no refresh token is rotated) or
	// "off" (every server gets the grant's full token, whatever its
	// clients were granted: the gateway's own checks, such as call scopes,
	// are then all that stands between a client and the scopes it was not
	// given). A narrowed token is kept sealed per user, server and granted
	// scope set (up to 16 per user, the oldest dropped first), and renewed
	// on its own; a client granted more later (a step-up) gets a token of
	// its own, and the narrower one stays as it is.
	Mode string `json:"mode,omitempty"`

	// Fallback is what happens where the downstream server cannot narrow
	// (it refuses or ignores the narrower scope, issues no refresh token,
	// or does not exchange tokens): "full_token" (the default: the full
	// token, and a warning in the log once an hour per server and scope
	// set) or "refuse" (the request is answered 503
	// temporarily_unavailable with Retry-After set to when the provider is
	// asked again, an hour later, and the log says why once an hour per
	// server and scope set).
	Fallback string `json:"fallback,omitempty"`
}

// ClientConfig is an OAuth client registered by the operator.
type ClientConfig struct {
	// ID is the client_id the client presents.
	ID string `json:"id"`

	// Secret makes the client confidential (client_secret_basic or
	// client_secret_post). Give it as a runtime placeholder.
	Secret string `json:"secret,omitempty"`

	// Name is shown on the consent page.
	Name string `json:"name,omitempty"`

	// RedirectURIs are matched exactly, except that loopback redirect URIs
	// match on any port (RFC 8252 §7.3). A client with ClientCredentials
	// needs none unless it also authorizes users in a browser.
	RedirectURIs []string `json:"redirect_uris,omitempty"`

	// Servers limits the client to these servers. Empty: all servers of the
	// gateway.
	Servers []string `json:"servers,omitempty"`

	// PublicKey is the PEM public key (RSA, ECDSA or Ed25519; or a
	// certificate holding one) that verifies the client's private_key_jwt
	// assertions (RFC 7523): the client then has no secret. Give it as a
	// runtime placeholder such as {file./etc/caddy/ci-bot.pub}. Only for
	// a client with ClientCredentials.
	PublicKey string `json:"public_key,omitempty"`

	// JWKSURI is where the client publishes its public keys as a JWKS,
	// for private_key_jwt instead of PublicKey: fetched on first use,
	// again every 5 minutes, and at once (at most every 30 seconds) for
	// an assertion naming a kid it lacks. Only for a client with
	// ClientCredentials.
	JWKSURI string `json:"jwks_uri,omitempty"`

	// ClientCredentials lets the client use the client credentials grant
	// (the MCP authorization extension
	// io.modelcontextprotocol/oauth-client-credentials): a background
	// service, CI pipeline or agent with no person present obtains a
	// server's access token with its Secret or a private_key_jwt
	// assertion (PublicKey, JWKSURI), without a browser. Its tokens have
	// no refresh token, and the admin API revokes them by client.
	ClientCredentials *ClientCredentials `json:"client_credentials,omitempty"`
}

// ClientCredentials is what a client of the config that uses the client
// credentials grant may be granted, and which downstream token its
// requests carry to the upstream.
type ClientCredentials struct {
	// Scopes are the gateway scopes the client may be granted, at each
	// server within that server's scopes; a request that asks for none
	// is granted all of those. Default: every scope of the server.
	Scopes []string `json:"scopes,omitempty"`

	// AsUser makes the client act with the downstream grant of this user
	// (as the identity rule names them), who authorized the gateway once
	// in a browser, narrowed to the scopes granted to the client: for a
	// service account that a person set up. The client's tokens are
	// refused (invalid_grant) while that user has no live grant. Default:
	// the gateway obtains a downstream token of its own with the client
	// credentials grant at the downstream server, for the granted scopes
	// (in their downstream names, scope_map) and the gateway's resource,
	// kept sealed in storage and renewed before it expires, once across
	// instances.
	AsUser string `json:"as_user,omitempty"`

	// DownstreamClientID and DownstreamClientSecret are the credentials
	// of the client credentials grant at the downstream server for this
	// client, when it must not share the gateway's own downstream client
	// (client_id, client_secret, client_auth). Give the secret as a
	// runtime placeholder. Not with AsUser.
	DownstreamClientID     string `json:"downstream_client_id,omitempty"`
	DownstreamClientSecret string `json:"downstream_client_secret,omitempty"`
}

// Server is one MCP server behind the gateway: a path prefix on this site,
// the gateway whose auth boundary it shares, the subset of scopes it asks
// for, and the upstream that serves it.
type Server struct {
	// Name identifies the server in the consent page, logs, metrics and the
	// authorization endpoints (/oauth/<name>/...).
	Name string `json:"name"`

	// Path is the path prefix the MCP server is reached at, e.g. "/support".
	// The server's canonical resource URI is the public URL plus this path.
	Path string `json:"path"`

	// Gateway names the gateway this server is attached to. Optional when
	// exactly one gateway is declared.
	Gateway string `json:"gateway,omitempty"`

	// Scopes is the subset of the gateway's scopes this server may request.
	// Default: all of the gateway's scopes. A client that asks for no scope
	// is granted this set.
	Scopes []string `json:"scopes,omitempty"`

	// StrictScopes refuses (invalid_scope) an authorization request that asks
	// for a scope outside Scopes instead of narrowing it away.
	StrictScopes bool `json:"strict_scopes,omitempty"`

	// CallScopes gives single tools, resources and prompts of the server
	// scopes of their own, on top of the server's: a call whose scopes the
	// token lacks is refused with 403 insufficient_scope, so that the
	// client asks the user for more (step-up authorization), and list
	// results show only what the token may use. Tools, resources and
	// prompts it does not name need only a token for the server.
	CallScopes *CallScopes `json:"call_scopes,omitempty"`

	// Upstream is the handler that serves the MCP server once a request is
	// authorized: usually Caddy's reverse_proxy. It receives the request with
	// the path prefix stripped and the user's downstream token in place of
	// the client's.
	UpstreamRaw json.RawMessage `json:"upstream,omitempty" caddy:"namespace=http.handlers inline_key=handler"`
}

// CallScopes are the scopes single tools, resources and prompts of one
// server need. Every scope named must be one of the server's scopes. A
// server with call scopes has each request's JSON-RPC body read before the
// upstream sees it (up to MaxBodyBytes; a larger body is refused with
// 413). Refused with 400 are Mcp-Method and Mcp-Name headers that disagree
// with the body, request ids other than strings and integers (1.0, 1e0,
// -0, null), and batches in which two requests share an id: the gateway
// tells the replies to list requests by their ids.
type CallScopes struct {
	// Tools maps a tool name to the scopes a token needs, all of them, to
	// call the tool (tools/call) and to see it in tools/list.
	Tools map[string][]string `json:"tools,omitempty"`

	// Resources maps a resource URI prefix to the scopes a token needs to
	// read (resources/read) or subscribe to a resource whose URI starts
	// with it (resources/subscribe, or subscriptions/listen with the URI
	// among its resourceSubscriptions), and to see the resource in
	// resources/list. Of several
	// prefixes of one URI the longest decides. Prefixes are compared with
	// the URI as the client sends it, byte for byte: an upstream that also
	// accepts other spellings of a URI (percent-encoded, with dot segments,
	// in another case) needs a prefix for each. A resource template is
	// judged by its literal start, up to its first '{': one that can only
	// expand under a prefix needs the prefix's scopes to be seen in
	// resources/templates/list or to have its arguments completed
	// (completion/complete).
	Resources map[string][]string `json:"resources,omitempty"`

	// Prompts maps a prompt name to the scopes a token needs to get the
	// prompt (prompts/get), to complete its arguments
	// (completion/complete) and to see it in prompts/list.
	Prompts map[string][]string `json:"prompts,omitempty"`

	// ListAll leaves tools/list, resources/list, resources/templates/list
	// and prompts/list results whole: a client sees everything and is
	// refused only when it uses what its token does not cover. Default:
	// lists show only what the token may use.
	ListAll bool `json:"list_all,omitempty"`

	// MaxBodyBytes is the largest request body the gateway reads to judge
	// a request; a larger one is refused with 413. The body is held in
	// memory until the upstream has read it. At most 64 MiB; it needs call
	// scope rules to apply to. Default: 1048576 (1 MiB).
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`

	// UncheckedMethods are JSON-RPC methods outside MCP's tool, resource
	// and prompt methods that pass though their params seem to name a
	// tool, resource or prompt (a name, uri, uriTemplate or ref member, in
	// any case, or params that are not an object), needing only the
	// server's own scopes. Any other such method is refused with 403 and
	// JSON-RPC error -32601: no rule can say what it needs, and passing it
	// would let a method that MCP adds later, or one of the upstream's own,
	// reach what the rules guard. List only methods that cannot reach a
	// tool, resource or prompt of the rules. Methods that name nothing
	// pass without being listed. Default: none.
	UncheckedMethods []string `json:"unchecked_methods,omitempty"`
}

// Durations and limits of the tokens the gateway issues; zero values take
// the defaults documented on each field.
type Lifetimes struct {
	// AccessToken is how long an access token is valid. Default: 1h.
	AccessToken caddy.Duration `json:"access_token,omitempty"`

	// RefreshToken is the absolute lifetime of a refresh-token family.
	// Default: 30 days.
	RefreshToken caddy.Duration `json:"refresh_token,omitempty"`

	// RefreshGrace is how long a just-rotated refresh token is still accepted
	// (for clients that race two refreshes). Default: 30s.
	RefreshGrace caddy.Duration `json:"refresh_grace,omitempty"`

	// AuthorizationCode is how long an authorization code is valid.
	// Default: 1m.
	AuthorizationCode caddy.Duration `json:"authorization_code,omitempty"`

	// Authorization is how long a user may take between the authorization
	// request and the end of the downstream login, and again to answer a
	// consent page shown after the login (to a user other than the one
	// whose remembered consent skipped it). Default: 10m.
	Authorization caddy.Duration `json:"authorization,omitempty"`
}

// RateLimits bound how often one client address may use the auth endpoints,
// and how often one client may fail to authenticate. Each limit is
// "<events>/<window>", e.g. "30/10m": a burst of up to events, refilled
// evenly over the window. "off" lifts one limit; unset limits take the
// defaults. A refused request gets 429 with Retry-After. Limits are counted
// by each instance on its own; client addresses are Caddy's client IP, so
// set the server's trusted_proxies when the gateway sits behind a proxy.
type RateLimits struct {
	// Off lifts every limit, e.g. where a proxy in front already limits.
	Off bool `json:"off,omitempty"`

	// Register bounds dynamic client registrations per client address.
	// Default: 60/10m.
	Register string `json:"register,omitempty"`

	// Authorize bounds authorization requests per client address.
	// Default: 120/1m.
	Authorize string `json:"authorize,omitempty"`

	// Token bounds token and revocation requests per client address.
	// Default: 300/1m.
	Token string `json:"token,omitempty"`

	// Callback bounds the browser's returns to the gateway per client
	// address: consent answers and downstream sign-in callbacks (at most
	// two per authorization). Default: 240/1m.
	Callback string `json:"callback,omitempty"`

	// ClientAuthFailures bounds failed client authentications per client ID,
	// from any address, for clients with a secret; for clients with a key
	// (private_key_jwt), whose signatures cannot be guessed, per client ID
	// and address, so that no one locks a key client out by sending junk
	// assertions in its name. Default: 10/1m.
	ClientAuthFailures string `json:"client_auth_failures,omitempty"`
}

// downstreamConfig is the config of the gateway's downstream client, each
// value passed through resolve (runtime placeholders, or none to check
// the config as written), but for its HTTP client and redirect URL. path
// and who locate an error in the config.
func (gw *Gateway) downstreamConfig(path, who string, resolve func(string) string) (downstream.Config, error) {
	// The gateway asks the downstream server for its whole scope set once,
	// plus what it needs for identity and refresh; each MCP server's
	// downstream token is then narrowed to that server's subset.
	login := downstream.DefaultLoginScopes()
	if gw.LoginScopes != nil {
		login = slices.Clone(gw.LoginScopes)
	}
	dc := downstream.Config{
		Issuer:   strings.TrimSuffix(resolve(gw.AuthorizationServer), "/"),
		ClientID: resolve(gw.ClientID),
		Endpoints: downstream.Metadata{
			AuthorizationEndpoint: resolve(gw.AuthorizationEndpoint),
			TokenEndpoint:         resolve(gw.TokenEndpoint),
		},
		ClientAuth:     downstream.ClientAuth{Secret: resolve(gw.ClientSecret)},
		Resource:       resolve(gw.Resource),
		ResourceParam:  gw.ResourceParameter,
		Scopes:         slices.Clone(gw.Scopes),
		ScopeMap:       gw.ScopeMap,
		LoginScopes:    login,
		AuthParams:     make(map[string]string, len(gw.AuthorizationParams)),
		IdentitySource: downstream.SourceIDToken,
		IdentityClaim:  "sub",
	}
	for k, v := range gw.AuthorizationParams {
		dc.AuthParams[k] = resolve(v)
	}
	if id := gw.Identity; id != nil {
		dc.IdentitySource = cmp.Or(id.Source, dc.IdentitySource)
		dc.IdentityClaim = cmp.Or(id.Claim, dc.IdentityClaim)
		dc.UserinfoURL = resolve(id.Endpoint)
	}
	if ca := gw.ClientAuth; ca != nil {
		dc.ClientAuth.Method = ca.Method
		dc.ClientAuth.AssertionAudience = resolve(ca.AssertionAudience)
		key, err := checkClientKey(path, who, ca, resolve)
		if err != nil {
			return downstream.Config{}, err
		}
		dc.ClientAuth.Key = key
	}
	return dc, nil
}
