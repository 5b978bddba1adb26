package grants

import (
	"context"
	"errors"
	"time"
)

// Consent records that a user allowed a client to act for them at one MCP
// server of the gateway, with these scopes and this redirect URI.
type Consent struct {
	User        string    `json:"user"`
	ClientID    string    `json:"client_id"`
	Server      string    `json:"server"`
	Scopes      string    `json:"scopes"`
	RedirectURI string    `json:"redirect_uri"`
	GrantedAt   time.Time `json:"granted_at,omitzero"`
}

// SaveConsent stores c, replacing the user's earlier consent for the same
// client and server. A zero GrantedAt is set to now.
func (l *Ledger) SaveConsent(ctx context.Context, c *Consent) error {
	if c.User == "" || c.ClientID == "" || c.Server == "" {
		return errors.New("grants: a consent needs a user, a client ID and a server")
	}
	if c.GrantedAt.IsZero() {
		c.GrantedAt = l.now()
	}
	return l.put(ctx, kindConsents, l.key(kindConsents, c.User, c.ClientID, c.Server), c)
}

// Consent returns the user's consent for the client at the server, or
// ErrNotFound.
func (l *Ledger) Consent(ctx context.Context, user, clientID, server string) (*Consent, error) {
	c := new(Consent)
	if err := l.get(ctx, kindConsents, l.key(kindConsents, user, clientID, server), c); err != nil {
		return nil, err
	}
	if c.User != user || c.ClientID != clientID || c.Server != server {
		return nil, errors.New("grants: a consent record is stored under another consent's key; the storage is corrupted")
	}
	return c, nil
}

// deleteConsent removes the user's consent for the client at the server, so
// the next authorization asks again. Removing a missing consent is no error.
func (l *Ledger) deleteConsent(ctx context.Context, user, clientID, server string) error {
	return l.del(ctx, kindConsents, l.key(kindConsents, user, clientID, server))
}

// browserRecord remembers which user last signed in from a browser.
type browserRecord struct {
	User      string    `json:"user"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RememberBrowser records that user signed in from the browser whose
// binding cookie hashes to browserHash, until expires (zero: for good). It lets a later
// authorization from that browser find the user's consent before sending
// them to the downstream login again.
func (l *Ledger) RememberBrowser(ctx context.Context, browserHash, user string, expires time.Time) error {
	if browserHash == "" || user == "" {
		return errors.New("grants: remembering a browser needs its hash and a user")
	}
	return l.put(ctx, kindBrowsers, l.key(kindBrowsers, browserHash), &browserRecord{User: user, ExpiresAt: expires})
}

// BrowserUser returns the user last remembered for the browser, or
// ErrNotFound (also once the memory has expired; it is then deleted).
func (l *Ledger) BrowserUser(ctx context.Context, browserHash string) (string, error) {
	if browserHash == "" {
		return "", ErrNotFound
	}
	key := l.key(kindBrowsers, browserHash)
	var rec browserRecord
	if err := l.get(ctx, kindBrowsers, key, &rec); err != nil {
		return "", err
	}
	if expired(rec.ExpiresAt, l.now()) {
		_ = l.del(ctx, kindBrowsers, key) // best effort: Prune removes it otherwise
		return "", ErrNotFound
	}
	return rec.User, nil
}
