package grants

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

const (
	defaultLeeway  = 30 * time.Second
	defaultTimeout = 30 * time.Second
	// maxCacheAge bounds how long a token without an expiry is served from
	// memory, so a change made by another instance (a new sign-in, a dead
	// grant) is seen eventually.
	maxCacheAge = 5 * time.Minute
)

// Broker hands out a user's downstream access token on the proxy's hot path,
// refreshing it shortly before it expires. Set its fields before first use
// and do not change them afterwards. A Broker is safe for concurrent use and
// must not be copied.
type Broker struct {
	// Ledger holds the grants.
	Ledger *Ledger
	// Issuer is the downstream authorization server whose grants this
	// Broker serves: Put records it in each grant, and a grant recorded
	// with another issuer is treated as absent (ErrNotFound). Empty serves
	// any grant.
	Issuer string
	// Refresher is the downstream server's token endpoint: the gateway's
	// downstream client, which refreshes and narrows tokens with whatever
	// client authentication the gateway is configured for. Without one, a
	// token due for refresh is ErrDownstreamUnavailable and nothing is
	// narrowed.
	Refresher Refresher
	// Leeway is how long before its expiry a token is refreshed; 0 means 30
	// seconds. It is capped at half the token's lifetime, so a short-lived
	// token is not refreshed on every request.
	Leeway time.Duration
	// Timeout bounds one refresh, waiting for the storage lock included; 0
	// means 30 seconds.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnRefresh, if set, is told of every downstream refresh or token
	// exchange: how long it took, and nil, an ErrGrantDead or an
	// ErrDownstreamUnavailable error. A server's refusal to narrow is no
	// failed refresh: Narrowing.Warn reports it.
	OnRefresh func(took time.Duration, err error)
	// CacheSize bounds the number of users whose decrypted access token is
	// kept in memory, so that memory does not grow with every user ever
	// served; a user beyond it costs a storage read. Zero or less means
	// DefaultCacheSize.
	CacheSize int

	cacheOnce sync.Once
	cache     *tokenCache

	flights singleflight.Group // refreshes in progress, by user

	narrow narrowState // narrowed tokens by server and scope set (narrow.go)

	machine machineState // machine clients' tokens (machine.go)
}

// Token returns a valid downstream access token for user: the access
// token, its type and expiry, never the refresh token, which stays sealed
// in storage. The token is shared with other callers and must not be
// modified.
//
// A token in memory and not about to expire is returned without reading
// storage or allocating. Otherwise the grant is read, and an expiring token is refreshed
// once however many goroutines ask, under the storage lock after a re-read
// (another instance may have refreshed it already); the new token is stored
// before it is returned. A caller's ctx ending releases that caller, but not
// the refresh, which others may be waiting for.
//
// An unknown user is ErrNotFound. A definitive refusal by the downstream
// server (error "invalid_grant", or status 400 or 401) marks the grant dead
// and is ErrGrantDead, as is every later call until the user signs in
// again. Any other failure (timeout, 5xx, network) wraps
// ErrDownstreamUnavailable and leaves the grant as it was.
func (b *Broker) Token(ctx context.Context, user string) (*oauth2.Token, error) {
	if t := b.cached(user, b.now()); t != nil {
		return t, nil
	}
	return obtainOnce(ctx, &b.flights, user, func(ctx context.Context) (*oauth2.Token, error) {
		return b.obtain(ctx, user, nil)
	})
}

// Put stores g and caches its token: the grant obtained by the user's
// downstream sign-in. It replaces the user's earlier grant, dead or not.
func (b *Broker) Put(ctx context.Context, g *Grant) error {
	if g.User == "" || g.Token == nil {
		return errors.New("grants: a grant needs a user and a token")
	}
	if g.Issuer == "" {
		g.Issuer = b.Issuer
	}
	l := b.Ledger
	// Under the lock, so a refresh in progress elsewhere cannot overwrite
	// the new sign-in with the old grant.
	err := l.locked(ctx, l.grantKey(g.User), func() error {
		return l.SaveGrant(ctx, g)
	})
	if err != nil {
		return err
	}
	// The new sign-in has no narrowed tokens yet.
	b.narrow.forget(g.User)
	if g.Dead {
		b.tokens().remove(g.User)
	} else {
		b.remember(g, b.now())
	}
	return nil
}

// Forget drops the cached tokens of user, the full one and the narrowed
// ones, so that the next Token or TokenFor call reads the grant from
// storage.
func (b *Broker) Forget(user string) {
	b.tokens().remove(user)
	b.narrow.forget(user)
}

// tokens returns the cache of access tokens, made on first use.
func (b *Broker) tokens() *tokenCache {
	b.cacheOnce.Do(func() { b.cache = b.newTokenCache() })
	return b.cache
}

// newTokenCache returns a cache of the configured size.
func (b *Broker) newTokenCache() *tokenCache {
	size := b.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	return newTokenCache(size)
}

// timeout bounds one refresh: Timeout, or its default.
func (b *Broker) timeout() time.Duration {
	if b.Timeout <= 0 {
		return defaultTimeout
	}
	return b.Timeout
}

// cached returns the user's token from memory if it is fresh at now.
func (b *Broker) cached(user string, now time.Time) *oauth2.Token {
	return b.tokens().get(user, now)
}

// remember caches g's access token until it is due for refresh and
// returns it.
func (b *Broker) remember(g *Grant, now time.Time) *oauth2.Token {
	t := accessOnly(g.Token)
	b.tokens().put(g.User, t, b.freshUntil(g, now), now)
	return t
}

// accessOnly is t without its refresh token, which needs no place in
// memory: a refresh reads it from storage under the lock.
func accessOnly(t *oauth2.Token) *oauth2.Token {
	return &oauth2.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, Expiry: t.Expiry}
}

// freshUntil is when g's token becomes due for refresh.
func (b *Broker) freshUntil(g *Grant, now time.Time) time.Time {
	issued := g.RefreshedAt
	if issued.IsZero() {
		issued = g.CreatedAt
	}
	return b.dueAt(g.Token.Expiry, issued, now)
}

// bury marks g dead, stores it, and returns ErrGrantDead.
func (b *Broker) bury(ctx context.Context, g *Grant, reason string) error {
	g.Dead, g.DeadReason = true, reason
	b.Forget(g.User)
	if err := b.Ledger.SaveGrant(ctx, g); err != nil {
		return fmt.Errorf("%w (%s), but recording that failed: %w", ErrGrantDead, reason, err)
	}
	return deadError(g)
}

// liveGrant returns user's grant, or ErrGrantDead (with the reason) for
// one that has ended. A grant of another downstream issuer is ErrNotFound:
// its token must not reach this issuer's servers. One stored before grants
// recorded their issuer is taken as b's, and recorded so when next saved.
func (b *Broker) liveGrant(ctx context.Context, user string) (*Grant, error) {
	g, err := b.Ledger.Grant(ctx, user)
	if err != nil {
		return nil, err
	}
	switch {
	case g.Issuer == "":
		g.Issuer = b.Issuer
	case b.Issuer != "" && g.Issuer != b.Issuer:
		return nil, fmt.Errorf("%w: the stored grant is of another downstream issuer", ErrNotFound)
	}
	if g.Dead {
		return nil, deadError(g)
	}
	return g, nil
}

func deadError(g *Grant) error {
	if g.DeadReason == "" {
		return ErrGrantDead
	}
	return fmt.Errorf("%w: %s", ErrGrantDead, g.DeadReason)
}

func (b *Broker) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}
