package grants

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// CannotNarrowError is what TokenFor returns under Narrowing.Refuse when
// the downstream server does not narrow: it matches ErrCannotNarrow, says
// why, and says when the server will be asked again, which is the soonest
// a retry can succeed.
type CannotNarrowError struct {
	Server string    // the Narrowing's Key
	Reason error     // what the downstream server did
	Until  time.Time // when TokenFor asks the downstream server again
}

func (e *CannotNarrowError) Error() string {
	return fmt.Sprintf("%v for server %s: %v", ErrCannotNarrow, e.Server, e.Reason)
}

// Is makes errors.Is(err, ErrCannotNarrow) hold.
func (e *CannotNarrowError) Is(target error) bool { return target == ErrCannotNarrow }

func (e *CannotNarrowError) Unwrap() error { return e.Reason }

// ErrCannotNarrow reports that the downstream server would not issue an
// access token narrowed to a server's scopes, under a Narrowing that
// refuses the full token instead.
var ErrCannotNarrow = errors.New("grants: the downstream server does not narrow tokens to a server's scopes")

// narrowRetry is how long a server found unable to narrow is not asked
// again: its configuration may change, but not from one request to the
// next.
const narrowRetry = time.Hour

// Refresher is the downstream token endpoint as the Broker uses it. The
// downstream client (downstream.Client) implements it, with whatever client
// authentication the gateway is configured for.
type Refresher interface {
	// Refresh redeems refreshToken (RFC 6749 §6). Non-empty scopes ask for
	// an access token narrowed to them. The returned token carries a
	// refresh token: the rotated one, or refreshToken again. A refusal by
	// the server is an *oauth2.RetrieveError.
	Refresh(ctx context.Context, refreshToken string, scopes []string) (*oauth2.Token, error)
	// ExchangeToken trades subjectToken, a downstream access token, for
	// one narrowed to scopes (RFC 8693 token exchange). A refusal by the
	// server is an *oauth2.RetrieveError.
	ExchangeToken(ctx context.Context, subjectToken string, scopes []string) (*oauth2.Token, error)
}

// Narrowing asks the Broker for the downstream access token of one MCP
// server that carries only the scopes its client was granted rather than
// the whole grant's: least privilege toward each upstream, and toward each
// tool of it that has no call scope of its own. The Broker obtains one
// token per user and granted scope set with a refresh-token grant that
// names the narrower scope (or, with Exchange, by exchanging the grant's
// access token for it), keeps it sealed beside the grant (so every
// instance sharing the storage uses it) and in memory, and renews it on
// its own schedule. Set its fields before first use; it must not be copied
// afterwards.
type Narrowing struct {
	// Key names the server's narrowed tokens beside the grant: the
	// server's name.
	Key string
	// Scopes returns the downstream scopes to ask for on behalf of a
	// client granted granted, the scope claim of its access token (the
	// gateway's scope names, space-separated), or nil when the grant's
	// full token carries what was granted, so that there is nothing to
	// narrow. It must be set. It is called once per distinct granted
	// string (up to maxGrantedSets of them, then on each request), from
	// any goroutine.
	Scopes func(granted string) []string
	// Exchange obtains the narrowed token by RFC 8693 token exchange of the
	// grant's access token instead of a refresh: no refresh token is
	// rotated.
	Exchange bool
	// Refuse makes a downstream server that cannot narrow an error
	// (ErrCannotNarrow) instead of a reason to hand out the grant's full
	// token.
	Refuse bool
	// Warn, if set, is told why the server cannot narrow, once per
	// finding (a finding holds an hour, per scope set), whether the full
	// token is handed out instead or (Refuse) the request refused. Each
	// Narrowing is told, so a reload that builds new ones, say with
	// another fallback, logs what the new config does with a finding
	// already made.
	Warn func(reason error)

	mu   sync.Mutex                             // serializes additions to sets
	sets atomic.Pointer[map[string]*grantedSet] // by granted scope string; replaced whole, never modified
}

// maxGrantedSets bounds the granted scope strings a Narrowing remembers
// the resolution of. Clients of one server are granted few distinct sets
// (255 is every non-empty subset of eight scopes); one beyond the bound is
// resolved again on each request, which is correct but allocates.
const maxGrantedSets = 256

// maxViews bounds the narrowed views a Broker keeps, over every server and
// config of its gateway. A view beyond it caches nothing in memory: its
// tokens are read from storage on each request.
const maxViews = 1024

// grantedSet is what one granted scope string resolves to under a
// Narrowing.
type grantedSet struct {
	view   *narrowedView                     // nil: the full token serves
	warned atomic.Pointer[CannotNarrowError] // the finding Warn was last told of
}

// narrowState holds the Broker's narrowed tokens in memory: one view per
// narrowing key, downstream scope set and mode, shared by the configs that
// ask for it.
type narrowState struct {
	mu    sync.Mutex
	views map[string]*narrowedView
}

// narrowedView is one server's narrowed tokens for one downstream scope
// set.
type narrowedView struct {
	key      string
	scopes   []string // sorted
	scope    string   // scopes, space-separated
	exchange bool     // by token exchange rather than refresh

	cache   *tokenCache        // by user; nil beyond maxViews
	flights singleflight.Group // narrowing refreshes in progress, by user

	// cannot is set while the server is known not to narrow this view.
	cannot atomic.Pointer[CannotNarrowError]
}

// cannotNarrow is the finding that v's server does not narrow, for why,
// believed for narrowRetry without asking again.
func (b *Broker) cannotNarrow(v *narrowedView, why error) *CannotNarrowError {
	return &CannotNarrowError{Server: v.key, Reason: why, Until: b.now().Add(narrowRetry)}
}

// grantedSet returns what granted resolves to under n, remembered from
// its first use. A warm call is a map lookup, without allocating.
func (b *Broker) grantedSet(n *Narrowing, granted string) *grantedSet {
	if m := n.sets.Load(); m != nil {
		if gs := (*m)[granted]; gs != nil {
			return gs
		}
	}
	gs := &grantedSet{}
	if scopes := n.Scopes(granted); scopes != nil {
		gs.view = b.view(n, scopes)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var known map[string]*grantedSet
	if m := n.sets.Load(); m != nil {
		known = *m
	}
	if found := known[granted]; found != nil {
		return found
	}
	if len(known) >= maxGrantedSets {
		return gs
	}
	// Strings resolving to one view share its entry, so that Warn is told
	// of its finding once.
	for _, other := range known {
		if other.view == gs.view {
			gs = other
			break
		}
	}
	next := make(map[string]*grantedSet, len(known)+1)
	maps.Copy(next, known)
	next[granted] = gs
	n.sets.Store(&next)
	return gs
}

// view returns the view of n's server for the downstream scopes, made on
// first use.
func (b *Broker) view(n *Narrowing, scopes []string) *narrowedView {
	sorted := slices.Compact(slices.Sorted(slices.Values(scopes)))
	scope := strings.Join(sorted, " ")
	id := fmt.Sprintf("%s\x00%s\x00%t", n.Key, scope, n.Exchange)
	s := &b.narrow
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.views[id]; v != nil {
		return v
	}
	v := &narrowedView{key: n.Key, scopes: sorted, scope: scope, exchange: n.Exchange}
	if len(s.views) >= maxViews {
		return v // not kept, so Forget need not reach it: it caches nothing
	}
	v.cache = b.newTokenCache()
	if s.views == nil {
		s.views = make(map[string]*narrowedView)
	}
	s.views[id] = v
	return v
}

// forget drops user's narrowed tokens from memory.
func (s *narrowState) forget(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.views {
		v.cache.remove(user)
	}
}

// TokenFor returns user's downstream access token for the server that n
// describes, on behalf of a client granted granted (the scope claim of its
// access token): narrowed to n.Scopes(granted), or the grant's full token
// (Token) when that is nil or n is. Like Token, a narrowed token in memory
// is returned without reading storage or allocating, and one about to
// expire is renewed once however many goroutines ask, under the grant's
// storage lock. Each scope set has a token of its own: a client granted
// more (a step-up) does not widen the token of one granted less.
//
// A downstream server that refuses the narrower scope, ignores it (its
// answer names a scope outside n.Scopes), or issued no refresh token,
// cannot narrow: TokenFor then returns the full token and tells n.Warn, or
// with n.Refuse returns ErrCannotNarrow; either way the server is not asked
// to narrow to this scope set again for an hour. An "invalid_grant" refusal
// ends the grant (ErrGrantDead), as it does for Token.
func (b *Broker) TokenFor(ctx context.Context, user, granted string, n *Narrowing) (*oauth2.Token, error) {
	if n == nil {
		return b.Token(ctx, user)
	}
	gs := b.grantedSet(n, granted)
	v := gs.view
	if v == nil {
		return b.Token(ctx, user)
	}
	now := b.now()
	cannot := v.cannot.Load()
	if cannot == nil || !now.Before(cannot.Until) {
		if t := v.cache.get(user, now); t != nil {
			return t, nil
		}
		t, err := obtainOnce(ctx, &v.flights, user, func(ctx context.Context) (*oauth2.Token, error) {
			return b.obtain(ctx, user, v)
		})
		if err == nil {
			return t, nil
		}
		// A variable of its own for errors.As, which makes it escape:
		// were it cannot, every call, warm ones included, would allocate.
		var found *CannotNarrowError
		if !errors.As(err, &found) {
			return nil, err
		}
		cannot = found
		if old := v.cannot.Load(); old != cannot {
			v.cannot.CompareAndSwap(old, cannot)
		}
	}
	if n.Warn != nil && gs.warned.Load() != cannot && gs.warned.Swap(cannot) != cannot {
		n.Warn(cannot.Reason)
	}
	if n.Refuse {
		return nil, cannot
	}
	return b.Token(ctx, user)
}

// storedNarrowed caches and returns g's narrowed token for v if it is there,
// was asked for v's scopes, and is not due for refresh at now.
func (b *Broker) storedNarrowed(v *narrowedView, g *Grant, now time.Time) *oauth2.Token {
	nt := g.narrowedFor(v.key, v.scope)
	if nt == nil {
		return nil
	}
	return b.cacheNarrowed(v, g.User, nt, now)
}

// cacheNarrowed caches user's narrowed token nt for v until it is due for
// refresh, and returns it; nil if it is due already.
func (b *Broker) cacheNarrowed(v *narrowedView, user string, nt *NarrowedToken, now time.Time) *oauth2.Token {
	fresh := b.dueAt(nt.Token.Expiry, nt.IssuedAt, now)
	if !now.Before(fresh) {
		return nil
	}
	v.cache.put(user, nt.Token, fresh, now)
	return nt.Token
}

// dueAt is when a token expiring at exp, obtained at issued, is due for
// refresh: Leeway before its expiry, at most half its lifetime.
func (b *Broker) dueAt(exp, issued, now time.Time) time.Time {
	if exp.IsZero() {
		return now.Add(maxCacheAge)
	}
	leeway := b.Leeway
	if leeway <= 0 {
		leeway = defaultLeeway
	}
	if half := exp.Sub(issued) / 2; !issued.IsZero() && half >= 0 && half < leeway {
		leeway = half
	}
	return exp.Add(-leeway)
}

// openIDScopes grant no access to an API: a narrowed token may hold them.
var openIDScopes = []string{"openid", "profile", "email", "address", "phone", "offline_access"}

// beyond returns the scopes t's answer names outside asked (and the OpenID
// ones), or "" if it names none or no scope at all: RFC 6749 §5.1 lets a
// server omit the scope when it is the one requested.
func beyond(t *oauth2.Token, asked []string) string {
	s, _ := t.Extra("scope").(string)
	var extra []string
	for _, tok := range strings.Fields(s) {
		if !slices.Contains(asked, tok) && !slices.Contains(openIDScopes, tok) {
			extra = append(extra, tok)
		}
	}
	return strings.Join(extra, " ")
}
