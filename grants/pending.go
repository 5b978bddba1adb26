package grants

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

// DefaultPendingTTL is how long a pending authorization lives when its
// ExpiresAt is left zero.
const DefaultPendingTTL = 10 * time.Minute

// Pending is an authorization in progress, between the gateway's authorize
// endpoint and the downstream server's callback.
type Pending struct {
	Server        string `json:"server"`
	ClientID      string `json:"client_id"`
	RedirectURI   string `json:"redirect_uri"`
	State         string `json:"state,omitempty"`
	CodeChallenge string `json:"code_challenge"`
	Scopes        string `json:"scopes"`
	Resource      string `json:"resource,omitempty"`
	// BrowserHash is the hash of the browser-binding cookie, set by the
	// caller, so the flow can only be completed in the browser that began it.
	BrowserHash string `json:"browser_hash,omitempty"`
	// RememberedFor is the user whose remembered consent skipped the
	// consent page, set by the caller before anyone has signed in. After
	// the downstream login, a user who is not this one (and has no
	// consent of their own) must be asked before a code is issued.
	RememberedFor string `json:"remembered_for,omitempty"`
	// User is the user who signed in at the downstream server, set when
	// the consent page is shown after the sign-in: approving it issues
	// the code for this user, without another login.
	User string `json:"user,omitempty"`
	// Account marks a sign-in to the connected-apps page rather than an
	// authorization: it has no server, client or redirect URI, and its
	// callback opens a session of that page instead of issuing a code.
	Account bool `json:"account,omitempty"`
	// DownstreamVerifier is the PKCE verifier toward the downstream server.
	// It is secret: stored sealed, never in the clear (hence no JSON name).
	DownstreamVerifier string `json:"-"`

	CreatedAt time.Time `json:"created_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at"`
}

// pendingRecord is a Pending as stored.
type pendingRecord struct {
	Pending
	SealedVerifier []byte `json:"downstream_verifier_sealed,omitempty"`
}

// SavePending stores p under handle, an opaque random value chosen by the
// caller: first the handle of the consent page, after consent the
// downstream state. Moving a pending authorization to a new handle is
// TakePending then SavePending. A zero CreatedAt is set to now and a zero
// ExpiresAt to DefaultPendingTTL after CreatedAt.
func (l *Ledger) SavePending(ctx context.Context, handle string, p *Pending) error {
	if handle == "" {
		return errors.New("grants: saving a pending authorization without a handle")
	}
	if p.CreatedAt.IsZero() {
		p.CreatedAt = l.now()
	}
	if p.ExpiresAt.IsZero() {
		p.ExpiresAt = p.CreatedAt.Add(DefaultPendingTTL)
	}
	key := l.key(kindPending, handle)
	rec := pendingRecord{Pending: *p}
	if p.DownstreamVerifier != "" {
		sealed, err := l.seal(key, []byte(p.DownstreamVerifier))
		if err != nil {
			return err
		}
		rec.SealedVerifier = sealed
	}
	return l.put(ctx, kindPending, key, &rec)
}

// Pending returns the pending authorization stored under handle without
// consuming it. It is ErrNotFound when unknown and when expired (an expired
// one is deleted).
func (l *Ledger) Pending(ctx context.Context, handle string) (*Pending, error) {
	if handle == "" {
		return nil, ErrNotFound
	}
	key := l.key(kindPending, handle)
	p, err := l.loadPending(ctx, key)
	if errors.Is(err, ErrExpired) {
		_ = l.del(ctx, kindPending, key) // best effort: Prune removes it otherwise
		return nil, ErrNotFound
	}
	return p, err
}

// TakePending returns the pending authorization stored under handle and
// deletes it, once across every instance sharing the storage: of
// concurrent callers, one gets it and the others ErrNotFound. It is
// ErrNotFound when unknown and when expired.
func (l *Ledger) TakePending(ctx context.Context, handle string) (*Pending, error) {
	if handle == "" {
		return nil, ErrNotFound
	}
	key := l.key(kindPending, handle)
	var p *Pending
	err := l.locked(ctx, key, func() error {
		var err error
		p, err = l.loadPending(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return err
		}
		// Deleted whether it is usable or not: it is single use, and an
		// expired or unreadable one is of no use either.
		if derr := l.del(ctx, kindPending, key); derr != nil && err == nil {
			return derr
		}
		if errors.Is(err, ErrExpired) {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// TakePendingOf is TakePending for the browser whose binding cookie hashes
// to browserHash. It reads the record first, without the storage lock,
// and refuses one that is missing or expired (ErrNotFound) or bound to
// another browser (ErrOtherBrowser, returned with the record, which stays
// in storage, so the caller can report whose it was). Only the owner's
// request takes the lock, re-reads and deletes the record: requests that
// cannot own it, however many, never make the storage lock, and cannot
// consume another browser's authorization.
func (l *Ledger) TakePendingOf(ctx context.Context, handle, browserHash string) (*Pending, error) {
	p, err := l.Pending(ctx, handle)
	if err != nil {
		return nil, err
	}
	if !sameBrowser(p.BrowserHash, browserHash) {
		return p, ErrOtherBrowser
	}
	if p, err = l.TakePending(ctx, handle); err != nil {
		return nil, err
	}
	// Handles are random and a record is written once under each, so this
	// is the record read above; checked again all the same, as it is the
	// one handed out.
	if !sameBrowser(p.BrowserHash, browserHash) {
		return p, ErrOtherBrowser
	}
	return p, nil
}

// sameBrowser compares browser-binding hashes in constant time. An empty
// hash binds nothing and matches nothing.
func sameBrowser(stored, presented string) bool {
	return stored != "" && presented != "" && subtle.ConstantTimeCompare([]byte(stored), []byte(presented)) == 1
}

// loadPending reads and unseals the record at key. It returns ErrExpired
// for an expired record.
func (l *Ledger) loadPending(ctx context.Context, key string) (*Pending, error) {
	var rec pendingRecord
	if err := l.get(ctx, kindPending, key, &rec); err != nil {
		return nil, err
	}
	if expired(rec.ExpiresAt, l.now()) {
		return nil, ErrExpired
	}
	p := rec.Pending
	if len(rec.SealedVerifier) > 0 {
		v, err := l.open(key, rec.SealedVerifier)
		if err != nil {
			return nil, fmt.Errorf("grants: opening a pending authorization's verifier: %w", err)
		}
		p.DownstreamVerifier = string(v)
	}
	return &p, nil
}
