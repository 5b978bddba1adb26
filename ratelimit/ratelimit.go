// Package ratelimit bounds how often a key (a client address, a client ID)
// may do something, with one token bucket per key and a bounded number of
// keys, so that a flood of distinct keys costs memory in proportion to the
// bound, not to the flood.
package ratelimit

import (
	"container/list"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rate is how many events one key may have per window: a bucket holding
// Events tokens, refilled evenly over Window. A key may burst up to Events at
// once and then continues at Events per Window. The zero Rate is unlimited.
type Rate struct {
	Events int
	Window time.Duration
}

// Unlimited reports whether r imposes no limit.
func (r Rate) Unlimited() bool { return r.Events <= 0 || r.Window <= 0 }

// String formats r the way ParseRate reads it, e.g. "30/10m0s".
func (r Rate) String() string {
	if r.Unlimited() {
		return "unlimited"
	}
	return strconv.Itoa(r.Events) + "/" + r.Window.String()
}

// ParseRate reads "<events>/<window>", e.g. "30/10m" or "5/1s". The window
// is a Go duration; a bare unit ("30/m", "100/h") means one of it.
func ParseRate(s string) (Rate, error) {
	events, window, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want <events>/<window>, e.g. 30/10m", s)
	}
	n, err := strconv.Atoi(events)
	if err != nil || n <= 0 {
		return Rate{}, fmt.Errorf("rate %q: the number of events must be a positive integer", s)
	}
	if window != "" && strings.IndexAny(window[:1], "0123456789") < 0 {
		window = "1" + window
	}
	d, err := time.ParseDuration(window)
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("rate %q: the window must be a positive duration such as 1m or 10m", s)
	}
	return Rate{Events: n, Window: d}, nil
}

// DefaultMaxKeys is the number of keys a Limiter tracks unless told.
const DefaultMaxKeys = 10_000

// Options tune a Limiter.
type Options struct {
	// MaxKeys bounds the keys tracked at once. When a new key would exceed
	// it, the key seen least recently is forgotten: it starts again with a
	// full bucket. Default: DefaultMaxKeys.
	MaxKeys int

	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Limiter is a set of token buckets, one per key. It is safe for concurrent
// use. A nil *Limiter allows everything.
type Limiter struct {
	rate    Rate
	maxKeys int
	now     func() time.Time

	mu     sync.Mutex
	keys   map[string]*list.Element // of *bucket
	recent *list.List               // front: seen most recently
}

type bucket struct {
	key    string
	tokens float64
	at     time.Time // when tokens was last computed
}

// New returns a limiter allowing rate per key, or nil if rate is unlimited.
func New(rate Rate, opts Options) *Limiter {
	if rate.Unlimited() {
		return nil
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Limiter{
		rate:    rate,
		maxKeys: opts.MaxKeys,
		now:     opts.Now,
		keys:    make(map[string]*list.Element),
		recent:  list.New(),
	}
}

// Take spends one token of key's bucket. When the bucket is empty it spends
// nothing and returns how long until a token is available.
func (l *Limiter) Take(key string) (retryAfter time.Duration, ok bool) {
	if l == nil {
		return 0, true
	}
	now := l.now()
	perToken := float64(l.rate.Window) / float64(l.rate.Events)

	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if el, found := l.keys[key]; found {
		b = el.Value.(*bucket)
		l.recent.MoveToFront(el)
		if elapsed := now.Sub(b.at); elapsed > 0 {
			b.tokens = math.Min(float64(l.rate.Events), b.tokens+float64(elapsed)/perToken)
			b.at = now
		}
	} else {
		if len(l.keys) >= l.maxKeys {
			oldest := l.recent.Back()
			l.recent.Remove(oldest)
			delete(l.keys, oldest.Value.(*bucket).key)
		}
		b = &bucket{key: key, tokens: float64(l.rate.Events), at: now}
		l.keys[key] = l.recent.PushFront(b)
	}
	if b.tokens < 1 {
		return time.Duration(math.Ceil((1 - b.tokens) * perToken)), false
	}
	b.tokens--
	return 0, true
}

// Refund gives back a token that Take spent, for callers that charge an
// attempt up front and only failures in the end: taking before the check
// and refunding after a success counts concurrent attempts exactly.
func (l *Limiter) Refund(key string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, found := l.keys[key]; found {
		b := el.Value.(*bucket)
		b.tokens = math.Min(float64(l.rate.Events), b.tokens+1)
	}
}

// size is the number of keys tracked.
func (l *Limiter) size() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// AddressKey is the key for a client address. IPv6 addresses are grouped by
// their /64 prefix, the block one host usually holds, so that a client
// cannot dodge its limit by walking its own subnet. Anything that is not an
// IP address is its own key.
func AddressKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip, 64).Masked().String()
}
