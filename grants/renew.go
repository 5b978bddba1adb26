package grants

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// A renewal is one of the ways the Broker renews a token: of a user's
// grant, a refresh of the grant's own token, a refresh that names a view's
// narrower scopes, or an RFC 8693 exchange of the grant's access token for
// one narrowed to them, all three through obtain and renew; or a machine
// client's own token, which belongs to no grant, obtained by a client
// credentials grant (obtainMachine). All of them run once at a time
// (obtainOnce), under the Broker's Timeout (overdue), and one classifier
// says what a downstream error means for each (classify).
type renewal struct {
	view    *narrowedView // the narrowed token renewed; nil: the grant's own
	subject string        // the access token a view that exchanges trades
	machine bool          // a machine client's token (view and subject unset)
}

// doing names r in errors.
func (r renewal) doing() string {
	switch {
	case r.machine:
		return "obtaining a machine client's downstream token"
	case r.view == nil:
		return "refreshing a downstream token"
	case r.view.exchange:
		return "exchanging a downstream token"
	default:
		return "narrowing a downstream token"
	}
}

// obtainOnce runs obtain once however many goroutines ask for the token
// under key at a time (flights holds the ones in progress). It runs
// detached from the first caller's cancellation, since every caller shares
// it; the Broker's Timeout bounds it instead. A caller's ctx ending
// releases that caller only.
func obtainOnce(ctx context.Context, flights *singleflight.Group, key string, obtain func(context.Context) (*oauth2.Token, error)) (*oauth2.Token, error) {
	ch := flights.DoChan(key, func() (any, error) {
		return obtain(context.WithoutCancel(ctx))
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*oauth2.Token), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// overdue returns err, the outcome of r, as ErrDownstreamUnavailable when
// it is the renewal's deadline (timeout) having passed while it waited for
// the storage lock, which another instance holds while it renews: as
// unavailable as a slow token endpoint.
func overdue(err error, r renewal, timeout time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrDownstreamUnavailable) {
		return fmt.Errorf("%w: %s did not finish within %v: %w", ErrDownstreamUnavailable, r.doing(), timeout, err)
	}
	return err
}

// obtain returns user's token for v (nil: the grant's own token) from
// memory, from storage or from a renewal. It runs once at a time per user
// and view (obtainOnce), under its own deadline, Timeout.
func (b *Broker) obtain(ctx context.Context, user string, v *narrowedView) (*oauth2.Token, error) {
	timeout := b.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	now := b.now()
	// A renewal that ended just before this one began has cached a token.
	if t := b.cachedFor(v, user, now); t != nil {
		return t, nil
	}
	g, err := b.liveGrant(ctx, user)
	if err != nil {
		return nil, err
	}
	if t := b.served(v, g, now); t != nil {
		return t, nil
	}
	r := renewal{view: v}
	if v != nil {
		if b.Refresher == nil {
			return nil, b.cannotNarrow(v, errors.New("the broker has no Refresher to narrow with"))
		}
		if v.exchange {
			// The grant's access token, refreshed first if it is due:
			// before the lock, which that refresh takes.
			full, err := b.Token(ctx, user)
			if err != nil {
				return nil, err
			}
			r.subject = full.AccessToken
		}
	}
	t, err := b.renew(ctx, user, r)
	return t, overdue(err, r, timeout)
}

// renew renews a token of user's grant as r says, once across every
// instance sharing the storage: under the grant's storage lock it re-reads
// the grant (another instance may have renewed or ended it while this one
// waited) and serves what it holds if that will do; otherwise it asks the
// downstream server, records the answer in the grant and stores the grant
// before handing anything out, since a refresh may have rotated the
// refresh token and spent the old one. What a failure means is classify's
// to say: the grant's end buries it, a refusal to narrow is a
// CannotNarrowError, and anything else wraps ErrDownstreamUnavailable and
// leaves the grant as it was.
func (b *Broker) renew(ctx context.Context, user string, r renewal) (*oauth2.Token, error) {
	l := b.Ledger
	var (
		token  *oauth2.Token
		cannot error // why the downstream server does not narrow r.view
	)
	err := l.locked(ctx, l.grantKey(user), func() error {
		g, err := b.liveGrant(ctx, user)
		if err != nil {
			return err
		}
		now := b.now()
		if token = b.served(r.view, g, now); token != nil {
			return nil
		}
		if r.subject == "" && g.Token.RefreshToken == "" {
			// Nothing to refresh with. (A token still valid was served.)
			if r.view == nil {
				return b.bury(ctx, g, "the access token expired and the downstream server issued no refresh token")
			}
			cannot = errors.New("the downstream server issued no refresh token, so there is none to narrow with")
			return nil
		}

		started := time.Now()
		next, err := b.ask(ctx, r, g)
		if err != nil {
			switch what, reason := classify(err, r); what {
			case grantEnded:
				err = b.bury(ctx, g, reason)
			case narrowingRefused:
				// No renewal failed: Narrowing.Warn reports it, not
				// OnRefresh.
				cannot = errors.New(reason)
				return nil
			default:
				err = fmt.Errorf("%w: %s: %w", ErrDownstreamUnavailable, r.doing(), err)
			}
		}
		if b.OnRefresh != nil {
			b.OnRefresh(time.Since(started), err)
		}
		if err != nil {
			return err
		}

		nt, why, changed := r.record(g, next, now)
		cannot = why
		if !changed {
			return nil
		}
		// Not cut short by the deadline either: the old refresh token may
		// be spent already.
		if err := l.SaveGrant(context.WithoutCancel(ctx), g); err != nil {
			return fmt.Errorf("grants: storing the grant after %s: %w", r.doing(), err)
		}
		switch {
		case r.view == nil:
			token = b.remember(g, now)
		case cannot != nil:
			b.tokens().remove(user) // the grant's own token changed
		default:
			if token = b.cacheNarrowed(r.view, user, nt, now); token == nil {
				token = nt.Token // due at once: served, not cached
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if cannot != nil {
		return nil, b.cannotNarrow(r.view, cannot)
	}
	return token, nil
}

// cachedFor returns user's token for v (nil: the grant's own) from memory
// if it is fresh at now.
func (b *Broker) cachedFor(v *narrowedView, user string, now time.Time) *oauth2.Token {
	if v == nil {
		return b.cached(user, now)
	}
	return v.cache.get(user, now)
}

// served caches and returns g's token for v (nil: the grant's own) if g
// holds one that need not be renewed at now: one not due for refresh, or
// else a grant's own token that cannot be refreshed but is still valid
// (served, not cached).
func (b *Broker) served(v *narrowedView, g *Grant, now time.Time) *oauth2.Token {
	switch {
	case v != nil:
		return b.storedNarrowed(v, g, now)
	case now.Before(b.freshUntil(g, now)):
		return b.remember(g, now)
	case g.Token.RefreshToken == "" && g.Token.Expiry.After(now):
		return accessOnly(g.Token)
	}
	return nil
}

// ask asks the downstream server for the token r renews.
func (b *Broker) ask(ctx context.Context, r renewal, g *Grant) (*oauth2.Token, error) {
	switch {
	case b.Refresher == nil:
		return nil, errors.New("grants: the Broker has no Refresher")
	case r.view == nil:
		return b.Refresher.Refresh(ctx, g.Token.RefreshToken, nil)
	case r.view.exchange:
		return b.Refresher.ExchangeToken(ctx, r.subject, r.view.scopes)
	default:
		return b.Refresher.Refresh(ctx, g.Token.RefreshToken, r.view.scopes)
	}
}

// record keeps next, the downstream server's answer to r at now, in g. It
// returns the narrowed token kept, or why the answer shows that the server
// does not narrow; changed reports whether g changed and must be stored.
func (r renewal) record(g *Grant, next *oauth2.Token, now time.Time) (nt *NarrowedToken, cannot error, changed bool) {
	v := r.view
	if v == nil {
		g.refreshed(next, now)
		return nil, nil, true
	}
	if extra := beyond(next, v.scopes); extra != "" {
		if v.exchange {
			// Nothing of the grant's was spent: the answer is dropped.
			return nil, fmt.Errorf("the downstream server ignored the scope of a token exchange for %q: its token also holds %q", v.scope, extra), false
		}
		// The server ignored the narrower scope. Its token is as good as a
		// refreshed full one, so it becomes the grant's.
		g.refreshed(next, now)
		return nil, fmt.Errorf("the downstream server ignored a refresh narrowed to %q: its token also holds %q", v.scope, extra), true
	}
	if !v.exchange {
		// The refresh token may have rotated: the old one is spent.
		g.Token.RefreshToken = next.RefreshToken
	}
	nt = &NarrowedToken{Server: v.key, Token: accessOnly(next), Scopes: v.scope, IssuedAt: now}
	g.keepNarrowed(nt, now)
	return nt, nil, true
}

// failure is what a downstream server's error means for the grant.
type failure int

const (
	// unavailable: no clear answer (network, timeout, 5xx, 429 to a
	// refresh of the grant's own token). The grant stays as it was, and a
	// retry may succeed.
	unavailable failure = iota
	// grantEnded: the server refused the refresh token. The user must sign
	// in again.
	grantEnded
	// narrowingRefused: the server refused the narrower scope, or to
	// exchange. The grant is good; the server does not narrow.
	narrowingRefused
	// credentialsRefused: the server refused a machine client's client
	// credentials grant. There is no grant to end; the gateway asks again
	// at the next request, which may succeed once the server's or the
	// gateway's configuration changes.
	credentialsRefused
)

// classify says what err, the downstream server's answer to r, means, and
// why in words that quote only its error code and status, never the
// server's free-form description. A refusal is a 4xx answer, or an error
// code in another answer than 5xx.
//
// A refresh of the grant's own token ends the grant on "invalid_grant" or
// a 400 or 401 answer; its other refusals (403, 429, ...) are temporary. A
// narrowing refresh ends the grant on "invalid_grant" only: any other
// refusal is of the narrower scope or the scope parameter, which a plain
// refresh does not ask for. A token exchange never ends the grant, its
// subject token having been fresh: any refusal is the server's declining
// to exchange. A client credentials grant has no grant to end either: any
// refusal is of the machine client's credentials or scopes.
func classify(err error, r renewal) (failure, string) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return unavailable, ""
	}
	status, refused := 0, re.ErrorCode != ""
	if re.Response != nil {
		status = re.Response.StatusCode
		refused = status < http.StatusInternalServerError
	}
	exchange := r.view != nil && r.view.exchange
	switch {
	case r.machine:
		if !refused {
			return unavailable, ""
		}
		return credentialsRefused, "the downstream server refused the client credentials grant (" + refusalOf(re) + ")"
	case !exchange && (re.ErrorCode == "invalid_grant" || r.view == nil && (status == http.StatusBadRequest || status == http.StatusUnauthorized)):
		return grantEnded, "the downstream server refused the refresh token (" + refusalOf(re) + ")"
	case r.view == nil || !refused:
		return unavailable, ""
	case exchange:
		return narrowingRefused, fmt.Sprintf("the downstream server refused a token exchange for %q (%s)", r.view.scope, refusalOf(re))
	default:
		return narrowingRefused, fmt.Sprintf("the downstream server refused a refresh narrowed to %q (%s)", r.view.scope, refusalOf(re))
	}
}

// refusalOf names a refusal by its error code and status, never the
// server's free-form text.
func refusalOf(re *oauth2.RetrieveError) string {
	code := re.ErrorCode
	if len(code) > 64 || !isBase64URL(code) {
		code = ""
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	switch {
	case code != "" && status != 0:
		return fmt.Sprintf("HTTP %d, %s", status, code)
	case code != "":
		return code
	default:
		return fmt.Sprintf("HTTP %d", status)
	}
}
