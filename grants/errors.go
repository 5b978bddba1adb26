package grants

import "errors"

// Sentinel errors. Test for them with errors.Is: the Ledger and the Broker
// wrap them with detail.
var (
	// ErrNotFound reports a record that does not exist (or no longer does:
	// expired pending authorizations are deleted when they are read).
	ErrNotFound = errors.New("grants: not found")

	// ErrOtherBrowser reports a pending authorization bound to another
	// browser than the one that presented its handle.
	ErrOtherBrowser = errors.New("grants: pending authorization belongs to another browser")

	// ErrExpired reports an authorization code or refresh-token family past
	// its expiry.
	ErrExpired = errors.New("grants: expired")

	// ErrCodeReused reports a second redemption of an authorization code.
	// Whoever presents it may have stolen it, so the tokens issued from the
	// first redemption should be revoked.
	ErrCodeReused = errors.New("grants: authorization code already redeemed")

	// ErrRefreshReused reports a refresh token presented after it was
	// replaced. The family has been revoked: one of its tokens is in the
	// wrong hands.
	ErrRefreshReused = errors.New("grants: refresh token reused; its family is revoked")

	// ErrRevoked reports a refresh token of a revoked family.
	ErrRevoked = errors.New("grants: refresh token family revoked")

	// ErrGrantDead reports a downstream grant the downstream server no longer
	// honours: the user has to sign in again.
	ErrGrantDead = errors.New("grants: downstream grant ended; the user must sign in again")

	// ErrDownstreamUnavailable reports a downstream token endpoint that could
	// not answer (network failure, timeout, 5xx). The grant is kept as it
	// was; retrying later may succeed.
	ErrDownstreamUnavailable = errors.New("grants: downstream token endpoint unavailable")
)
