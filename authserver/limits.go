package authserver

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/ratelimit"
)

// Limits are the edge's rate limits. Each endpoint family has its own
// buckets per client address; a zero Rate limits nothing.
type Limits struct {
	// Register bounds dynamic client registrations per client address:
	// each one writes a record to storage.
	Register ratelimit.Rate
	// Authorize bounds authorization requests per client address.
	Authorize ratelimit.Rate
	// Token bounds token and revocation requests per client address.
	Token ratelimit.Rate
	// Callback bounds the browser's returns to the gateway per client
	// address: consent answers and downstream sign-in callbacks. Each
	// can take a storage lock, so they are limited before anything is
	// read.
	Callback ratelimit.Rate
	// ClientAuthFailures bounds failed client authentications per client
	// ID, whatever the address: guessing a confidential client's secret
	// from many addresses is as slow as from one. A private_key_jwt
	// client's failures count per client ID and address: its signature
	// cannot be guessed, and its bucket is charged before the assertion is
	// verified, so a count per client alone would let anyone lock it out.
	ClientAuthFailures ratelimit.Rate
	// MaxKeys bounds the addresses and clients each limit tracks; see
	// ratelimit.Options.
	MaxKeys int
}

// DefaultLimits are generous enough for a company behind one NAT address
// and tight enough to keep one address from filling the storage with
// registrations or trying secrets at speed.
var DefaultLimits = Limits{
	Register:           ratelimit.Rate{Events: 60, Window: 10 * time.Minute},
	Authorize:          ratelimit.Rate{Events: 120, Window: time.Minute},
	Token:              ratelimit.Rate{Events: 300, Window: time.Minute},
	Callback:           ratelimit.Rate{Events: 240, Window: time.Minute},
	ClientAuthFailures: ratelimit.Rate{Events: 10, Window: time.Minute},
}

// limiters are the live buckets of Limits.
type limiters struct {
	register, authorize, token, callback, clientAuth *ratelimit.Limiter
}

func newLimiters(l Limits, now func() time.Time) limiters {
	opts := ratelimit.Options{MaxKeys: l.MaxKeys, Now: now}
	return limiters{
		register:   ratelimit.New(l.Register, opts),
		authorize:  ratelimit.New(l.Authorize, opts),
		token:      ratelimit.New(l.Token, opts),
		callback:   ratelimit.New(l.Callback, opts),
		clientAuth: ratelimit.New(l.ClientAuthFailures, opts),
	}
}

// clientAddress is the rate-limit key of the request's client address.
func (e *Edge) clientAddress(r *http.Request) string {
	if e.opts.ClientIP != nil {
		if ip := e.opts.ClientIP(r); ip != "" {
			return ratelimit.AddressKey(ip)
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return ratelimit.AddressKey(host)
}

// tooMany is a refusal by a rate limit: what was limited, and for how long.
type tooMany struct {
	what       string // "registration", "authorization", "token", "sign-in", "client authentication"
	retryAfter time.Duration
}

// take spends one token of key at l; it returns the refusal if none is left.
func take(l *ratelimit.Limiter, key, what string) *tooMany {
	if wait, ok := l.Take(key); !ok {
		return &tooMany{what: what, retryAfter: wait}
	}
	return nil
}

// seconds is the Retry-After value.
func (t *tooMany) seconds() int { return retrySeconds(t.retryAfter) }

// retrySeconds is a Retry-After value for a wait of d: whole seconds, at
// least one.
func retrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// oauthError is the refusal as an OAuth error JSON.
func (t *tooMany) oauthError() *oauthError {
	return &oauthError{
		Status:      http.StatusTooManyRequests,
		Code:        "temporarily_unavailable",
		Description: "too many " + t.what + " requests; retry after " + strconv.Itoa(t.seconds()) + " seconds",
		RetryAfter:  t.seconds(),
	}
}

// refuseTooMany records the refusal on the audit log and answers it, as a
// page for browsers or an OAuth error JSON for clients. s is nil for a
// request that names no server yet (the downstream callback).
func (e *Edge) refuseTooMany(w http.ResponseWriter, r *http.Request, s *Server, clientID string, t *tooMany, page bool) {
	e.count(s, RateLimited)
	e.audit("request refused", s, clientID, "", "", zap.String("reason", "rate limited"),
		zap.String("limit", t.what), zap.String("address", e.clientAddress(r)))
	if !page {
		writeOAuthError(w, t.oauthError())
		return
	}
	w.Header().Set("Retry-After", strconv.Itoa(t.seconds()))
	e.errorPage(w, http.StatusTooManyRequests, "Too many requests",
		"This address sent too many "+t.what+" requests. Wait "+strconv.Itoa(t.seconds())+" seconds, then start again from your MCP client.")
}
