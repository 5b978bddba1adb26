package grants

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// benchGrants stores n users' grants, user-0 … user-<n-1>, and returns
// the Ledger.
func benchGrants(b *testing.B, s store.Store, n int) *Ledger {
	b.Helper()
	l := NewLedger(s, testPrefix, mustSealer(b, testKey(7)), nil)
	ctx := context.Background()
	now := time.Now()
	for i := range n {
		user := fmt.Sprintf("user-%d", i)
		err := l.SaveGrant(ctx, &Grant{
			User: user,
			// Sizes of a provider's JWT access token and an opaque refresh
			// token.
			Token: &oauth2.Token{
				AccessToken:  fmt.Sprintf("%0800d", i),
				TokenType:    "Bearer",
				RefreshToken: fmt.Sprintf("%043d", i),
				Expiry:       now.Add(24 * time.Hour),
			},
			Scopes:    "openid offline_access tickets.read accounts.read",
			CreatedAt: now,
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return l
}

// BenchmarkBrokerToken is the grant lookup of every proxied request: the
// user's downstream access token. Warm: it is in memory, so no storage
// read. Cold: the Broker forgot it, so the grant is read from storage,
// opened (AES-256-GCM) and decoded, as after a restart. The last user
// stored is asked for, with 1 and 100 000 grants in memory, and 1 and
// 1 000 in certmagic's file storage (Caddy's default; writing 100 000
// files would take minutes of setup and measure the file system).
func BenchmarkBrokerToken(b *testing.B) {
	for _, tc := range []struct {
		store string
		n     int
	}{
		{"memory", 1}, {"memory", 100_000}, {"file", 1}, {"file", 1000},
	} {
		var s store.Store = store.NewMemoryStore()
		if tc.store == "file" {
			s = &certmagic.FileStorage{Path: b.TempDir()}
		}
		broker := &Broker{Ledger: benchGrants(b, s, tc.n)}
		user := fmt.Sprintf("user-%d", tc.n-1)
		ctx := context.Background()
		b.Run(fmt.Sprintf("warm/%s/grants=%d", tc.store, tc.n), func(b *testing.B) {
			if _, err := broker.Token(ctx, user); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := broker.Token(ctx, user); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("cold/%s/grants=%d", tc.store, tc.n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				broker.Forget(user)
				if _, err := broker.Token(ctx, user); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBrokerTokenParallel is the warm lookup under concurrent
// requests of many users.
func BenchmarkBrokerTokenParallel(b *testing.B) {
	const users = 1000
	broker := &Broker{Ledger: benchGrants(b, store.NewMemoryStore(), users)}
	ctx := context.Background()
	for i := range users {
		if _, err := broker.Token(ctx, fmt.Sprintf("user-%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	names := make([]string, users)
	for i := range names {
		names[i] = fmt.Sprintf("user-%d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if _, err := broker.Token(ctx, names[i%users]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLedgerGrant is the storage read alone: load, open, decode.
func BenchmarkLedgerGrant(b *testing.B) {
	for _, st := range []struct {
		name string
		new  func(b *testing.B) store.Store
	}{
		{"memory", func(*testing.B) store.Store { return store.NewMemoryStore() }},
		{"file", func(b *testing.B) store.Store { return &certmagic.FileStorage{Path: b.TempDir()} }},
	} {
		b.Run(st.name, func(b *testing.B) {
			l := benchGrants(b, st.new(b), 1)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Grant(ctx, "user-0"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
