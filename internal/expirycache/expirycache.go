// Package expirycache is a bounded map whose entries expire, for the
// gateway's in-memory caches: verified access tokens and users' decrypted
// downstream tokens. Each entry is useless after a known time, so the
// eviction rule needs no usage tracking: a full shard drops its expired
// entries, or else the one expiring first, before taking another.
//
// The map is split into shards, each with its own lock and a fixed share
// of the bound, so that concurrent requests rarely meet on one lock and
// the cache never holds more than its size.
package expirycache

import "sync"

// maxShards is the most shards a cache has; a cache smaller than that has
// fewer, so that its bound stays exact.
const maxShards = 16

// Cache maps keys to values that expire. It is safe for concurrent use.
//
// Every method takes the key's hash with the key: a seeded hash/maphash of
// it, or the key itself when it is such a hash already. The caller hashes
// once per request, and its hash must be uniform in its low bits, which
// pick the shard.
type Cache[K comparable, V any] struct {
	shards []shard[K, V]
	mask   uint64
}

type shard[K comparable, V any] struct {
	mu      sync.RWMutex
	entries map[K]entry[V]
	limit   int
}

type entry[V any] struct {
	value   V
	expires int64 // Unix nanoseconds
}

// New returns a cache of at most size entries; size must be positive.
func New[K comparable, V any](size int) *Cache[K, V] {
	n := maxShards
	for n > size {
		n /= 2
	}
	c := &Cache[K, V]{shards: make([]shard[K, V], n), mask: uint64(n - 1)}
	for i := range c.shards {
		s := &c.shards[i]
		s.limit = size / n
		if i < size%n {
			s.limit++
		}
		// The maps grow with use: sized for the bound up front, they
		// would make every garbage collection scan their empty slots.
		s.entries = make(map[K]entry[V])
	}
	return c
}

func (c *Cache[K, V]) shard(hash uint64) *shard[K, V] {
	// The shards' maps hash their keys again, with seeds of their own: the
	// shard and the bucket within it use independent bits.
	return &c.shards[hash&c.mask]
}

// Get returns the value of k, whose hash is hash, if it has not expired at
// now (Unix nanoseconds). An expired entry is dropped.
func (c *Cache[K, V]) Get(hash uint64, k K, now int64) (V, bool) {
	s := c.shard(hash)
	s.mu.RLock()
	e, ok := s.entries[k]
	s.mu.RUnlock()
	if ok && now < e.expires {
		return e.value, true
	}
	if ok {
		s.mu.Lock()
		if e, ok := s.entries[k]; ok && now >= e.expires {
			delete(s.entries, k)
		}
		s.mu.Unlock()
	}
	var zero V
	return zero, false
}

// Put stores v under k, whose hash is hash, until expires, evicting as
// needed; both times are Unix nanoseconds.
func (c *Cache[K, V]) Put(hash uint64, k K, v V, expires, now int64) {
	s := c.shard(hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[k]; !ok && len(s.entries) >= s.limit {
		s.evict(now)
	}
	s.entries[k] = entry[V]{value: v, expires: expires}
}

// Remove drops the entry of k, whose hash is hash.
func (c *Cache[K, V]) Remove(hash uint64, k K) {
	s := c.shard(hash)
	s.mu.Lock()
	delete(s.entries, k)
	s.mu.Unlock()
}

// Len returns the number of entries, expired ones not yet dropped
// included.
func (c *Cache[K, V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}

// evict drops every entry expired at now or, if none is, the one that
// expires first. It scans the shard: the caches' entries are costly to
// make (a signature verification, a storage read), so an insertion can
// afford it.
func (s *shard[K, V]) evict(now int64) {
	var (
		first        K
		firstExpires int64
		found        bool
		dropped      bool
	)
	for k, e := range s.entries {
		if e.expires <= now {
			delete(s.entries, k)
			dropped = true
			continue
		}
		if !found || e.expires < firstExpires {
			first, firstExpires, found = k, e.expires, true
		}
	}
	if !dropped && found {
		delete(s.entries, first)
	}
}
