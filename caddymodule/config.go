package caddymodule

import (
	"encoding/json"

	"github.com/caddyserver/caddy/v2"
)

// Gateway is one auth boundary: one downstream authorization server, one
// downstream client ID, one downstream resource (audience) and one rule for
// resolving the user's identity. It holds the full set of scopes that the
// servers attached to it may request. Servers that need a different value for
// any of these belong to a different gateway.
type Gateway struct {
	// Name identifies the gateway in server references, storage keys, logs
	// and metrics. Letters, digits, '-', '_' and '.'.
	Name string `json:"name"`

	// AuthorizationServer is the issuer URL of the downstream OAuth 2.0 /
	// OpenID Connect authorization server. Its metadata is discovered lazily
	// (RFC 8414, then OpenID discovery) on the first authorization, not at
	// config load.
	AuthorizationServer string `json:"authorization_server"`

	// ClientID is the gateway's one client ID at the downstream authorization
	// server. Runtime placeholders such as {env.ACME_CLIENT_ID} are resolved
	// at provision time.
	ClientID string `json:"client_id"`

	// ClientSecret is the gateway's client secret at the downstream server.
	// Give it as a runtime placeholder ({env.NAME} or {file./path}) so that it
	// never appears in the config that the admin API shows.
	ClientSecret string `json:"client_secret,omitempty"`

	// Resource is the downstream API's resource indicator (RFC 8707) or
	// audience that the brokered downstream tokens are bound to.
	Resource string `json:"resource,omitempty"`

	// Scopes is the full set of scopes that servers attached to this gateway
	// may request. Each server requests a subset.
	Scopes []string `json:"scopes"`

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

	// AllowPrivateMetadataDocuments lets client ID metadata documents be
	// fetched from loopback and private addresses. Off by default: a URL
	// client ID must not turn the gateway into a proxy into the private
	// network (SSRF). Turn it on only for local development and tests.
	AllowPrivateMetadataDocuments bool `json:"allow_private_metadata_documents,omitempty"`
}

// IdentityRule says how the gateway resolves the user's identity after the
// downstream login.
type IdentityRule struct {
	// Source is "id_token" (the verified ID token's claims, the default) or
	// "userinfo" (the downstream server's userinfo endpoint). Some providers
	// refuse audience-bound access tokens at userinfo, hence the default.
	Source string `json:"source,omitempty"`

	// Claim is the claim that names the user. Default: "sub".
	Claim string `json:"claim,omitempty"`
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
	// match on any port (RFC 8252 §7.3).
	RedirectURIs []string `json:"redirect_uris"`

	// Servers limits the client to these servers. Empty: all servers of the
	// gateway.
	Servers []string `json:"servers,omitempty"`
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

	// Upstream is the handler that serves the MCP server once a request is
	// authorized: usually Caddy's reverse_proxy. It receives the request with
	// the path prefix stripped and the user's downstream token in place of
	// the client's.
	UpstreamRaw json.RawMessage `json:"upstream,omitempty" caddy:"namespace=http.handlers inline_key=handler"`
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
	// request and the end of the downstream login. Default: 10m.
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

	// ClientAuthFailures bounds failed client authentications per client ID,
	// from any address. Default: 10/1m.
	ClientAuthFailures string `json:"client_auth_failures,omitempty"`
}
