package accesstoken

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
)

// maxShards is the number of cache shards: enough that concurrent requests
// rarely meet on one lock, few enough that small caches stay exact.
const maxShards = 16

// cache holds verified tokens by their SHA-256. It never holds more than
// its size: each shard has a fixed share of it, and a full shard drops its
// expired entries, or else the one expiring first, before taking another.
// Tokens enter only after their signature verified, so an attacker cannot
// fill it; the bound protects memory against a flood of legitimate ones.
type cache struct {
	shards []cacheShard
	mask   uint32
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[[sha256.Size]byte]*cacheEntry
	limit   int
}

// cacheEntry is immutable once inserted.
type cacheEntry struct {
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
	c := &cache{shards: make([]cacheShard, n), mask: uint32(n - 1)}
	for i := range c.shards {
		s := &c.shards[i]
		s.limit = size / n
		if i < size%n {
			s.limit++
		}
		s.entries = make(map[[sha256.Size]byte]*cacheEntry, s.limit)
	}
	return c
}

func (c *cache) shard(sum *[sha256.Size]byte) *cacheShard {
	// The digest is uniform, so any four of its bytes spread the load.
	return &c.shards[binary.LittleEndian.Uint32(sum[:4])&c.mask]
}

func (c *cache) get(sum *[sha256.Size]byte) *cacheEntry {
	s := c.shard(sum)
	s.mu.RLock()
	e := s.entries[*sum]
	s.mu.RUnlock()
	return e
}

// put inserts e, evicting as needed; now is in Unix nanoseconds.
func (c *cache) put(sum *[sha256.Size]byte, e *cacheEntry, now int64) {
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[*sum]; !ok && len(s.entries) >= s.limit {
		s.evict(now)
	}
	s.entries[*sum] = e
}

// evict drops every expired entry, or if none has expired the one that
// expires first: tokens share a lifetime, so that is the oldest. It scans
// the shard, which costs less than the signature verification that
// precedes every insertion.
func (s *cacheShard) evict(now int64) {
	var (
		oldest    [sha256.Size]byte
		oldestExp int64
		found     bool
		dropped   bool
	)
	for sum, e := range s.entries {
		if e.exp <= now {
			delete(s.entries, sum)
			dropped = true
			continue
		}
		if !found || e.exp < oldestExp {
			oldest, oldestExp, found = sum, e.exp, true
		}
	}
	if !dropped && found {
		delete(s.entries, oldest)
	}
}

func (c *cache) remove(sum *[sha256.Size]byte) {
	s := c.shard(sum)
	s.mu.Lock()
	delete(s.entries, *sum)
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
