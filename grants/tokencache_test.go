package grants

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

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
	if n := env.broker.tokens().len(); n > 1 {
		t.Fatalf("the cache holds %d users, want at most CacheSize, 1", n)
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
