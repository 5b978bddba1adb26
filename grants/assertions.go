package grants

import (
	"context"
	"errors"
	"time"
)

// ErrAssertionReplayed reports a client assertion (RFC 7523) presented a
// second time: its jti was already used by the same client.
var ErrAssertionReplayed = errors.New("grants: client assertion already used")

// maxAssertionIDLen bounds the jti of a client assertion; clients use a
// UUID or a few dozen random characters.
const maxAssertionIDLen = 256

// assertionRecord marks a client assertion's jti as used until the
// assertion expires, after which it could not be presented anyway.
type assertionRecord struct {
	ClientID  string    `json:"client_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// UseAssertion records the jti of a client assertion of clientID that is
// valid until expires, once across every instance sharing the storage: a
// jti the client used before, while that use's record lasts, is
// ErrAssertionReplayed (RFC 7523 §3: the server may keep a list of used
// IDs). The record is stored under the digest of the client ID and jti,
// and Prune deletes it once expires has passed.
func (l *Ledger) UseAssertion(ctx context.Context, clientID, jti string, expires time.Time) error {
	if clientID == "" || jti == "" || len(jti) > maxAssertionIDLen {
		return errors.New("grants: a client assertion needs a client ID and a jti of at most 256 bytes")
	}
	key := l.key(kindAssertions, clientID, jti)
	return l.locked(ctx, key, func() error {
		var rec assertionRecord
		switch err := l.get(ctx, kindAssertions, key, &rec); {
		case err == nil && !expired(rec.ExpiresAt, l.now()):
			return ErrAssertionReplayed
		case err != nil && !errors.Is(err, ErrNotFound):
			return err
		}
		return l.put(ctx, kindAssertions, key, &assertionRecord{ClientID: clientID, ExpiresAt: expires})
	})
}
