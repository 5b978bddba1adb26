package grants

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

func TestRevocationsReachOtherInstances(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			ctx := context.Background()
			shared := st.new(t)
			a, b := newLedgerEnv(t, shared), newLedgerEnv(t, shared) // two instances, one storage
			var fams []*Family
			for range 3 {
				f := newFamily(a.clock.Now())
				if _, err := a.ledger.StartFamily(ctx, f); err != nil {
					t.Fatal(err)
				}
				fams = append(fams, f)
			}
			seen := map[string]bool{}
			if got, err := b.ledger.Revocations(ctx, seen); err != nil || len(got) != 0 {
				t.Fatalf("before any revocation: %v, %v", got, err)
			}
			if _, err := a.ledger.RevokeFamily(ctx, fams[0].ID, "test"); err != nil {
				t.Fatal(err)
			}
			// A revocation names the family by the reference its access
			// tokens carry, never by its ID.
			got, err := b.ledger.Revocations(ctx, seen)
			if err != nil || len(got) != 1 || got[0].Ref != fams[0].Ref || got[0].Ref == "" || got[0].Ref == fams[0].ID {
				t.Fatalf("after one revocation: %+v, %v", got, err)
			}
			if want := a.clock.Now().Add(RevocationRetention); !got[0].ExpiresAt.Equal(want) {
				t.Errorf("ExpiresAt = %v, want %v", got[0].ExpiresAt, want)
			}
			// Seen revocations are not returned again; a new one is.
			if _, err := a.ledger.RevokeFamily(ctx, fams[1].ID, "test"); err != nil {
				t.Fatal(err)
			}
			if got, err := b.ledger.Revocations(ctx, seen); err != nil || len(got) != 1 || got[0].Ref != fams[1].Ref {
				t.Fatalf("the second poll: %+v, %v", got, err)
			}
			// Reuse detection revokes too, and says so.
			f := newFamily(a.clock.Now())
			first, err := a.ledger.StartFamily(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := a.ledger.Rotate(ctx, first, time.Second); err != nil {
				t.Fatal(err)
			}
			a.clock.Advance(2 * time.Second)
			if _, _, err := a.ledger.Rotate(ctx, first, time.Second); !errors.Is(err, ErrRefreshReused) {
				t.Fatalf("reusing a rotated token: %v, want ErrRefreshReused", err)
			}
			if got, err := b.ledger.Revocations(ctx, seen); err != nil || len(got) != 1 || got[0].Ref != f.Ref {
				t.Fatalf("after a reuse: %+v, %v", got, err)
			}
			// Past retention they are pruned.
			a.clock.Advance(RevocationRetention + time.Second)
			b.clock.Advance(RevocationRetention + time.Second)
			if _, err := a.ledger.Prune(ctx); err != nil {
				t.Fatal(err)
			}
			if got, err := b.ledger.Revocations(ctx, map[string]bool{}); err != nil || len(got) != 0 {
				t.Fatalf("after retention and a prune: %+v, %v", got, err)
			}
			// The poller's seen set forgets what storage no longer holds.
			if got, err := b.ledger.Revocations(ctx, seen); err != nil || len(got) != 0 || len(seen) != 0 {
				t.Fatalf("after a prune the poller still remembers %d keys (%+v, %v)", len(seen), got, err)
			}
		})
	}
}

func TestFamiliesListing(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			ctx := context.Background()
			env := newLedgerEnv(t, st.new(t))
			if st.name == "memory" {
				// A store.Store does not promise an order; this one lists in
				// reverse, which paging must not depend on.
				env = newLedgerEnv(t, reverseListing{store.NewMemoryStore()})
			}
			l := env.ledger
			byUser := map[string]int{}
			var revoked string
			for i := range 7 {
				f := newFamily(env.clock.Now())
				f.User = []string{"alice", "bob"}[i%2]
				f.ClientID = []string{"client-a", "client-b", "client-c"}[i%3]
				if _, err := l.StartFamily(ctx, f); err != nil {
					t.Fatal(err)
				}
				byUser[f.User]++
				revoked = f.ID
			}
			if _, err := l.RevokeFamily(ctx, revoked, "test"); err != nil { // alice's
				t.Fatal(err)
			}
			byUser["alice"]--

			// Pages of two cover every live family exactly once.
			seen := map[string]bool{}
			after, pages := "", 0
			for {
				page, next, err := l.Families(ctx, FamilyFilter{}, after, 2)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				for _, f := range page {
					if seen[f.ID] || f.Revoked {
						t.Fatalf("family %s listed twice or though revoked", f.ID)
					}
					seen[f.ID] = true
				}
				if next == "" {
					break
				}
				after = next
				if pages > 10 {
					t.Fatal("paging does not end")
				}
			}
			if len(seen) != 6 {
				t.Errorf("paging listed %d live families, want 6", len(seen))
			}
			for user, want := range byUser {
				page, _, err := l.Families(ctx, FamilyFilter{User: user}, "", 100)
				if err != nil || len(page) != want {
					t.Errorf("user %s: %d families, %v; want %d", user, len(page), err, want)
				}
				for _, f := range page {
					if f.User != user {
						t.Errorf("the filter for %s listed %s's family", user, f.User)
					}
				}
			}
			if page, _, _ := l.Families(ctx, FamilyFilter{ClientID: "client-b", Revoked: true}, "", 100); len(page) != 2 {
				t.Errorf("client-b, revoked included: %d families, want 2", len(page))
			}
			if page, _, _ := l.Families(ctx, FamilyFilter{User: "alice", Revoked: true}, "", 100); len(page) != 4 {
				t.Errorf("alice, revoked included: %d families, want 4", len(page))
			}
		})
	}
}

// reverseListing is a store.Store whose List answers in reverse order, as
// a Store may: the ones here all sort.
type reverseListing struct{ *store.MemoryStore }

func (r reverseListing) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	keys, err := r.MemoryStore.List(ctx, path, recursive)
	slices.Reverse(keys)
	return keys, err
}
