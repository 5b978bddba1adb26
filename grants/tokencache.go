package grants

import (
	"hash/maphash"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/internal/expirycache"
)

// DefaultCacheSize is how many users' access tokens a Broker keeps in
// memory when its CacheSize is zero.
const DefaultCacheSize = 10000

// tokenCache holds users' decrypted access tokens until they are due for
// refresh, never more than its size (see expirycache for what a full
// cache drops). A user dropped from it costs one storage read on the next
// request.
type tokenCache struct {
	seed    maphash.Seed
	entries *expirycache.Cache[string, *oauth2.Token] // by user
}

// newTokenCache returns a cache of size entries; size must be positive.
func newTokenCache(size int) *tokenCache {
	return &tokenCache{seed: maphash.MakeSeed(), entries: expirycache.New[string, *oauth2.Token](size)}
}

// get returns the user's token if it is fresh at now. A nil cache holds
// nothing.
func (c *tokenCache) get(user string, now time.Time) *oauth2.Token {
	if c == nil {
		return nil
	}
	t, _ := c.entries.Get(maphash.String(c.seed, user), user, now.UnixNano())
	return t
}

// put caches the user's token until fresh; a nil cache keeps nothing.
func (c *tokenCache) put(user string, t *oauth2.Token, fresh, now time.Time) {
	if c == nil {
		return
	}
	c.entries.Put(maphash.String(c.seed, user), user, t, fresh.UnixNano(), now.UnixNano())
}

// remove drops the user's token.
func (c *tokenCache) remove(user string) {
	if c != nil {
		c.entries.Remove(maphash.String(c.seed, user), user)
	}
}

// len returns the number of entries.
func (c *tokenCache) len() int { return c.entries.Len() }
