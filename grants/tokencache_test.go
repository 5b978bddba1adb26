package grants

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestTokenCacheBounded(t *testing.T) {
	for _, size := range []int{1, 16, 17, 100} {
		c := newTokenCache(size)
		limit := 0
		for i := range c.shards {
			limit += c.shards[i].limit
		}
		if limit < size || limit > max(size, cacheShards) {
			t.Fatalf("size %d: the shards take %d entries", size, limit)
		}
		now := time.Now()
		for i := range 3 * limit {
			c.put(fmt.Sprintf("user-%d", i), &oauth2.Token{AccessToken: "a"}, now.Add(time.Duration(1+i%7)*time.Minute), now)
			if n := c.len(); n > limit {
				t.Fatalf("size %d: %d entries after %d insertions", size, n, i+1)
			}
		}
	}
}

func TestTokenShardEvict(t *testing.T) {
	now := time.Now()
	at := func(m int) time.Time { return now.Add(time.Duration(m) * time.Minute) }
	tests := []struct {
		name  string
		fresh []int // minutes from now, of users 0, 1, 2...
		want  []int // users left
	}{
		{"drops the stale", []int{-1, 2, 3, 0}, []int{1, 2}},
		{"drops the first due when none is stale", []int{3, 1, 2}, []int{0, 2}},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &tokenShard{entries: map[string]cachedToken{}}
			for i, m := range tt.fresh {
				s.entries[fmt.Sprint(i)] = cachedToken{fresh: at(m)}
			}
			s.evict(now)
			if len(s.entries) != len(tt.want) {
				t.Fatalf("left %v, want users %v", s.entries, tt.want)
			}
			for _, u := range tt.want {
				if _, ok := s.entries[fmt.Sprint(u)]; !ok {
					t.Fatalf("user %d was evicted; want %v left", u, tt.want)
				}
			}
		})
	}
}

// TestBrokerCacheSize: users beyond the cache are served from storage.
func TestBrokerCacheSize(t *testing.T) {
	env := newBrokerEnv(t)
	env.broker.CacheSize = 1
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	for i := range 40 {
		user := fmt.Sprintf("user-%d", i)
		if err := env.broker.Put(ctx, &Grant{User: user, Token: &oauth2.Token{AccessToken: "access-" + user, RefreshToken: "r", Expiry: exp}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := env.broker.tokens().len(); n > cacheShards {
		t.Fatalf("the cache holds %d users, want at most one per shard", n)
	}
	for i := range 40 {
		user := fmt.Sprintf("user-%d", i)
		tok, err := env.broker.Token(ctx, user)
		if err != nil || tok.AccessToken != "access-"+user {
			t.Fatalf("%s: %v, %v", user, tok, err)
		}
	}
}

// TestBrokerTokenHoldsNoRefreshToken: the refresh token stays in storage,
// out of the long-lived cache.
func TestBrokerTokenHoldsNoRefreshToken(t *testing.T) {
	env := newBrokerEnv(t)
	env.saveGrant(t, time.Hour)
	for _, pass := range []string{"cold", "warm"} {
		tok, err := env.broker.Token(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != "access-0" || tok.RefreshToken != "" || tok.Expiry.IsZero() {
			t.Fatalf("%s token = %+v, want the access token and its expiry only", pass, tok)
		}
	}
}
