// Package grants keeps the durable state of one MCP gateway: the clients
// registered with it, the users' consents, authorizations in progress,
// single-use authorization codes, rotating refresh-token families, and the
// downstream token set brokered for each user.
//
// Everything lives in a [store.Store], the key-value storage Caddy is
// configured with (certmagic.Storage satisfies it), so several gateway
// instances sharing that storage share one state. Operations that must
// happen once across instances (redeeming a code, rotating a refresh token,
// refreshing a downstream token) run under the storage's lock and re-read
// the record after taking it.
//
// Records are JSON. Their secret fields are sealed with a [store.Sealer]
// (AES-256-GCM) bound to the record's storage key, and records addressed by
// a secret or by a user or client identifier are stored under a SHA-256
// digest of it, so neither a copy of the storage nor a listing of it reveals
// tokens, codes, verifiers or user names.
//
// A [Ledger] is the state of one gateway; a [Broker] hands out a user's
// downstream access token on the proxy's hot path and refreshes it when it
// is about to expire.
package grants
