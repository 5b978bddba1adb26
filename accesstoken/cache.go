package accesstoken

import (
	"hash/maphash"
	"sync"
)

// maxShards is the number of cache shards: enough that concurrent requests
// rarely meet on one lock, few enough that small caches stay exact.
const maxShards = 16

// cache holds verified tokens. It never holds more than its size: each
// shard has a fixed share of it, and a full shard drops its expired
// entries, or else the one expiring first, before taking another. Tokens
// enter only after their signature verified, so an attacker cannot fill
// it; the bound protects memory against a flood of legitimate ones.
//
// Entries are found by a 64-bit hash/maphash of the token under a random
// seed of this cache, which costs a fraction of a cryptographic hash of
// the same kilobyte, and an entry counts only if its token equals the
// presented one: a hit needs the exact token that verified, never just a
// matching hash. Without the seed nobody can aim a token at a given
// entry's hash, so comparing the tokens leaks nothing about other entries.
type cache struct {
	seed   maphash.Seed
	shards []cacheShard
	mask   uint64
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[uint64]*cacheEntry
	limit   int
}

// cacheEntry is immutable once inserted.
type cacheEntry struct {
	token  string // the token that verified
	claims Claims
	exp    int64      // ExpiresAt in Unix nanoseconds
	key    *verifyKey // the key that signed the token
}

// newCache returns a cache of size entries; size must be positive.
func newCache(size int) *cache {
	n := maxShards
	for n > size {
		n /= 2
	}
	c := &cache{seed: maphash.MakeSeed(), shards: make([]cacheShard, n), mask: uint64(n - 1)}
	for i := range c.shards {
		s := &c.shards[i]
		s.limit = size / n
		if i < size%n {
			s.limit++
		}
		s.entries = make(map[uint64]*cacheEntry, s.limit)
	}
	return c
}

// hash returns the key of token in c.
func (c *cache) hash(token string) uint64 {
	return maphash.String(c.seed, token)
}

func (c *cache) shard(h uint64) *cacheShard {
	// The maps hash their keys again, with their own seeds: the shard and
	// the bucket within it use independent bits.
	return &c.shards[h&c.mask]
}

// get returns the entry of token, whose hash is h, or nil.
func (c *cache) get(h uint64, token string) *cacheEntry {
	s := c.shard(h)
	s.mu.RLock()
	e := s.entries[h]
	s.mu.RUnlock()
	if e == nil || e.token != token {
		return nil
	}
	return e
}

// put inserts e under h, evicting as needed; now is in Unix nanoseconds.
// An entry of another token with the same hash is replaced.
func (c *cache) put(h uint64, e *cacheEntry, now int64) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[h]; !ok && len(s.entries) >= s.limit {
		s.evict(now)
	}
	s.entries[h] = e
}

// evict drops every expired entry, or if none has expired the one that
// expires first: tokens share a lifetime, so that is the oldest. It scans
// the shard, which costs less than the signature verification that
// precedes every insertion.
func (s *cacheShard) evict(now int64) {
	var (
		oldest    uint64
		oldestExp int64
		found     bool
		dropped   bool
	)
	for h, e := range s.entries {
		if e.exp <= now {
			delete(s.entries, h)
			dropped = true
			continue
		}
		if !found || e.exp < oldestExp {
			oldest, oldestExp, found = h, e.exp, true
		}
	}
	if !dropped && found {
		delete(s.entries, oldest)
	}
}

// remove drops e, if it is still the entry under h.
func (c *cache) remove(h uint64, e *cacheEntry) {
	s := c.shard(h)
	s.mu.Lock()
	if s.entries[h] == e {
		delete(s.entries, h)
	}
	s.mu.Unlock()
}

// len returns the number of entries.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}
