package grants

import (
	"context"
	"errors"
	"io/fs"
	"time"
)

// kindAccounts holds the sessions of the connected-apps page: which user
// signed in there, in the browser whose session cookie hashes to the key.
const kindAccounts = "accounts"

// SaveAccountSession records that user signed in on the connected-apps
// page in the browser whose session cookie hashes to sessionHash, until
// expires. The session is this gateway's only: a site with several
// gateways keeps one record in each gateway the person signed in to.
func (l *Ledger) SaveAccountSession(ctx context.Context, sessionHash, user string, expires time.Time) error {
	if sessionHash == "" || user == "" || expires.IsZero() {
		return errors.New("grants: an account session needs its hash, a user and an expiry")
	}
	return l.put(ctx, kindAccounts, l.key(kindAccounts, sessionHash), &browserRecord{User: user, ExpiresAt: expires})
}

// AccountSession returns the user signed in under sessionHash and when the
// session ends, or ErrNotFound (also once it has ended; it is then
// deleted).
func (l *Ledger) AccountSession(ctx context.Context, sessionHash string) (user string, expires time.Time, err error) {
	if sessionHash == "" {
		return "", time.Time{}, ErrNotFound
	}
	key := l.key(kindAccounts, sessionHash)
	var rec browserRecord
	if err := l.get(ctx, kindAccounts, key, &rec); err != nil {
		return "", time.Time{}, err
	}
	if rec.ExpiresAt.IsZero() || expired(rec.ExpiresAt, l.now()) {
		_ = l.del(ctx, kindAccounts, key) // best effort: Prune removes it otherwise
		return "", time.Time{}, ErrNotFound
	}
	return rec.User, rec.ExpiresAt, nil
}

// DeleteAccountSession ends the session under sessionHash. Ending a
// missing session is no error.
func (l *Ledger) DeleteAccountSession(ctx context.Context, sessionHash string) error {
	if sessionHash == "" {
		return nil
	}
	if err := l.del(ctx, kindAccounts, l.key(kindAccounts, sessionHash)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
