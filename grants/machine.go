package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// machineState is a Broker's downstream tokens of machine clients: the
// tokens the gateway obtains with its own client credentials grant at the
// downstream server on behalf of a client that has no user
// (MachineToken).
type machineState struct {
	once    sync.Once
	cache   *tokenCache
	flights singleflight.Group // obtains in progress, by key
}

// machineRecord is a machine client's downstream token as stored.
type machineRecord struct {
	Key        string    `json:"key"`
	ObtainedAt time.Time `json:"obtained_at"`
	// ExpiresAt is the token's expiry, after which Prune deletes the
	// record.
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	SealedToken []byte    `json:"token_sealed"`
}

// MachineToken returns the downstream access token kept under key, which
// names a machine client and the scopes it was granted (a token serves
// one such set only), obtaining a new one with obtain (a client
// credentials grant at the downstream server) when there is none or it is
// due for renewal. Like Token, a token in memory and not about to expire
// is returned without reading storage; otherwise the stored token is read,
// and a new one is obtained once however many goroutines ask, under the
// storage lock after a re-read (another instance may have obtained it
// already), and stored sealed before it is returned, so that every
// instance sharing the storage uses it.
//
// Any failure of obtain wraps ErrDownstreamUnavailable: there is no grant
// to end, and the next request asks again.
func (b *Broker) MachineToken(ctx context.Context, key string, obtain func(context.Context) (*oauth2.Token, error)) (*oauth2.Token, error) {
	m := &b.machine
	m.once.Do(func() { m.cache = b.newTokenCache() })
	if t := m.cache.get(key, b.now()); t != nil {
		return t, nil
	}
	return obtainOnce(ctx, &m.flights, key, func(ctx context.Context) (*oauth2.Token, error) {
		return b.obtainMachine(ctx, key, obtain)
	})
}

// obtainMachine returns the token kept under key from storage, or a new
// one from obtain. It runs once at a time per key (obtainOnce), under its
// own deadline, Timeout. It is renew's skeleton over a record of its own:
// under the record's storage lock, a re-read, the downstream server's
// answer classified and stored before it is handed out.
func (b *Broker) obtainMachine(ctx context.Context, key string, obtain func(context.Context) (*oauth2.Token, error)) (*oauth2.Token, error) {
	timeout := b.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l, m := b.Ledger, &b.machine
	skey := l.key(kindMachine, key)
	fresh := func(now time.Time) *oauth2.Token {
		rec, t, err := l.machineToken(ctx, skey, key)
		if err != nil || !now.Before(b.dueAt(t.Expiry, rec.ObtainedAt, now)) {
			return nil
		}
		m.cache.put(key, t, b.dueAt(t.Expiry, rec.ObtainedAt, now), now)
		return t
	}
	if t := fresh(b.now()); t != nil {
		return t, nil
	}
	r := renewal{machine: true}
	var token *oauth2.Token
	err := l.locked(ctx, skey, func() error {
		// Another instance may have obtained one while this one waited
		// for the lock.
		now := b.now()
		if token = fresh(now); token != nil {
			return nil
		}
		t, err := obtain(ctx)
		if err == nil && (t == nil || t.AccessToken == "") {
			err = errors.New("the downstream server answered without an access token")
		}
		if err != nil {
			if what, reason := classify(err, r); what == credentialsRefused {
				return fmt.Errorf("%w: %s", ErrDownstreamUnavailable, reason)
			}
			return fmt.Errorf("%w: %s: %w", ErrDownstreamUnavailable, r.doing(), err)
		}
		token = accessOnly(t)
		// Stored before it is handed out, and not cut short by the
		// deadline: other instances use it rather than ask again.
		if err := l.saveMachineToken(context.WithoutCancel(ctx), skey, key, token, now); err != nil {
			return fmt.Errorf("grants: keeping a machine client's downstream token: %w", err)
		}
		m.cache.put(key, token, b.dueAt(token.Expiry, now, now), now)
		return nil
	})
	if err != nil {
		return nil, overdue(err, r, timeout)
	}
	return token, nil
}

// machineToken reads the token stored at skey for key.
func (l *Ledger) machineToken(ctx context.Context, skey, key string) (*machineRecord, *oauth2.Token, error) {
	var rec machineRecord
	if err := l.get(ctx, kindMachine, skey, &rec); err != nil {
		return nil, nil, err
	}
	if rec.Key != key {
		return nil, nil, errors.New("grants: a machine token record is stored under another key; the storage is corrupted")
	}
	plain, err := l.open(skey, rec.SealedToken)
	if err != nil {
		return nil, nil, fmt.Errorf("grants: opening a machine client's downstream token: %w", err)
	}
	var f tokenFields
	if err := json.Unmarshal(plain, &f); err != nil {
		return nil, nil, fmt.Errorf("grants: a sealed machine client's downstream token is unreadable: %w", err)
	}
	return &rec, &oauth2.Token{AccessToken: f.AccessToken, TokenType: f.TokenType, Expiry: f.Expiry}, nil
}

// saveMachineToken stores t sealed at skey for key.
func (l *Ledger) saveMachineToken(ctx context.Context, skey, key string, t *oauth2.Token, now time.Time) error {
	plain, err := json.Marshal(tokenFields{AccessToken: t.AccessToken, TokenType: t.TokenType, Expiry: t.Expiry})
	if err != nil {
		return err
	}
	sealed, err := l.seal(skey, plain)
	if err != nil {
		return err
	}
	expires := t.Expiry
	if expires.IsZero() {
		expires = now.Add(maxCacheAge)
	}
	return l.put(ctx, kindMachine, skey, &machineRecord{Key: key, ObtainedAt: now, ExpiresAt: expires, SealedToken: sealed})
}
