package grants

import (
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// DefaultCacheSize is how many users' access tokens a Broker keeps in
// memory when its CacheSize is zero.
const DefaultCacheSize = 10000

// cacheShards is the number of shards of a tokenCache: enough that
// concurrent requests rarely meet on one lock.
const cacheShards = 16

// tokenCache holds users' decrypted access tokens until they are due for
// refresh. It never holds more than its size: a full shard drops the
// tokens no longer fresh, or else the one due first, before taking
// another. A user dropped this way costs one storage read on the next
// request.
type tokenCache struct {
	seed   maphash.Seed
	shards [cacheShards]tokenShard
}

type tokenShard struct {
	mu      sync.RWMutex
	entries map[string]cachedToken // by user
	limit   int
}

// cachedToken is a user's access token, served until fresh passes.
type cachedToken struct {
	token *oauth2.Token
	fresh time.Time
}

// newTokenCache returns a cache of about size entries (at least one per
// shard); size must be positive.
func newTokenCache(size int) *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		s := &c.shards[i]
		s.limit = size / cacheShards
		if i < size%cacheShards {
			s.limit++
		}
		s.limit = max(1, s.limit)
		s.entries = make(map[string]cachedToken)
	}
	return c
}

func (c *tokenCache) shard(user string) *tokenShard {
	return &c.shards[maphash.String(c.seed, user)%cacheShards]
}

// get returns the user's token if it is fresh at now.
func (c *tokenCache) get(user string, now time.Time) *oauth2.Token {
	s := c.shard(user)
	s.mu.RLock()
	e, ok := s.entries[user]
	s.mu.RUnlock()
	if ok && now.Before(e.fresh) {
		return e.token
	}
	return nil
}

// put caches the user's token until fresh.
func (c *tokenCache) put(user string, t *oauth2.Token, fresh, now time.Time) {
	s := c.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[user]; !ok && len(s.entries) >= s.limit {
		s.evict(now)
	}
	s.entries[user] = cachedToken{token: t, fresh: fresh}
}

// remove drops the user's token.
func (c *tokenCache) remove(user string) {
	s := c.shard(user)
	s.mu.Lock()
	delete(s.entries, user)
	s.mu.Unlock()
}

// len returns the number of entries.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}

// evict drops every token no longer fresh at now or, if all are, the one
// due for refresh first. It scans the shard, which costs less than the
// storage read and decryption that precede every insertion.
func (s *tokenShard) evict(now time.Time) {
	var (
		first    string
		firstDue time.Time
		found    bool
		dropped  bool
	)
	for user, e := range s.entries {
		if !now.Before(e.fresh) {
			delete(s.entries, user)
			dropped = true
			continue
		}
		if !found || e.fresh.Before(firstDue) {
			first, firstDue, found = user, e.fresh, true
		}
	}
	if !dropped && found {
		delete(s.entries, first)
	}
}
