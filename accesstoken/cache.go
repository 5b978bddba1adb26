package accesstoken

import (
	"hash/maphash"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/internal/expirycache"
)

// cache holds verified tokens until they expire. It never holds more than
// its size (see expirycache). Tokens enter only after their signature
// verified, so an attacker cannot fill it; the bound protects memory
// against a flood of legitimate ones.
//
// Entries are found by a 64-bit hash/maphash of the token under a random
// seed of this cache, which costs a fraction of a cryptographic hash of
// the same kilobyte, and an entry counts only if its token equals the
// presented one: a hit needs the exact token that verified, never just a
// matching hash. Without the seed nobody can aim a token at a given
// entry's hash, so comparing the tokens leaks nothing about other entries.
type cache struct {
	seed    maphash.Seed
	entries *expirycache.Cache[uint64, *cacheEntry]
}

// cacheEntry is immutable once inserted.
type cacheEntry struct {
	token  string // the token that verified
	claims Claims
	key    *verifyKey // the key that signed the token
}

// newCache returns a cache of size entries; size must be positive.
func newCache(size int) *cache {
	return &cache{seed: maphash.MakeSeed(), entries: expirycache.New[uint64, *cacheEntry](size)}
}

// hash returns the key of token in c.
func (c *cache) hash(token string) uint64 {
	return maphash.String(c.seed, token)
}

// get returns the unexpired entry of token, whose hash is h, at now (Unix
// nanoseconds), or nil.
func (c *cache) get(h uint64, token string, now int64) *cacheEntry {
	e, ok := c.entries.Get(h, h, now) // the key is a seeded hash already
	if !ok || e.token != token {
		return nil
	}
	return e
}

// put inserts e under h until it expires; now is in Unix nanoseconds. An
// entry of another token with the same hash is replaced.
func (c *cache) put(h uint64, e *cacheEntry, now int64) {
	c.entries.Put(h, h, e, e.claims.ExpiresAt.UnixNano(), now)
}

// remove drops the entry under h.
func (c *cache) remove(h uint64) { c.entries.Remove(h, h) }

// len returns the number of entries.
func (c *cache) len() int { return c.entries.Len() }
