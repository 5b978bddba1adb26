// Package testenv runs the real parts around the gateway that the project's
// tests and its demo share: an OpenID Connect provider playing the downstream
// authorization server, MCP servers playing the upstreams, and a scripted
// browser playing the person who signs in.
//
// Nothing here is a fake of a protocol. The provider is
// github.com/zitadel/oidc/v3/pkg/op, a certified OpenID Provider library, over
// an in-memory op.Storage written for this package. It was chosen over
// github.com/oauth2-proxy/mockoidc because it meets every requirement without
// patching the library: mockoidc has no login step (it signs in a queued user
// on every authorization request), reads client credentials from the form only
// (HTTP Basic is advertised but refused), returns the same refresh token on
// every refresh instead of rotating it, has no revocation endpoint, always sets
// the access token audience to the client ID, and validates scopes against a
// package-level list that a test would have to mutate. With op, PKCE, both
// client_secret methods, refresh-token rotation, revocation, introspection,
// discovery, JWKS and userinfo are the library's own code; this package only
// stores grants, renders the login form and adds a thin HTTP layer that
// records what clients sent and maps RFC 8707 resource indicators to the
// access token audience, which op does not parse at the authorization
// endpoint.
//
// The MCP servers use the official SDK, github.com/modelcontextprotocol/go-sdk,
// with its streamable HTTP transport. They do no authorization themselves and
// report what reached them, so that tests can see the token the gateway
// swapped in.
//
// Every type here owns its listener and goroutines; Close releases them. The
// package keeps no global state, so tests may run environments in parallel.
// It does not import package testing: the demo binary links it too.
package testenv
