package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// innerStore is a Store embedded in a wrapper. (Embedded as Store, its
// field name would hide its Store method.)
type innerStore = store.Store

// failingLoads is a Store whose Loads fail as an unreachable storage's do.
type failingLoads struct{ innerStore }

func (failingLoads) Load(context.Context, string) ([]byte, error) {
	return nil, errors.New("connection refused")
}

// TestStoragePrefix: where a gateway's state lives, by what its storage
// already holds under its name.
func TestStoragePrefix(t *testing.T) {
	ctx := context.Background()
	a := Boundary{PublicURL: "https://mcp.example.com", AuthorizationServer: "https://idp.example.com", ClientID: "gw", Resource: "https://api.example.com"}
	b := a
	b.AuthorizationServer = "https://other-idp.example.com"
	legacy := func(t *testing.T, store store.Store) {
		if err := store.Store(ctx, "mcp_gateway/acme/signing_keys", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	recorded := func(dir string, rec Boundary) func(*testing.T, store.Store) {
		return func(t *testing.T, store store.Store) {
			if err := storeBoundary(ctx, store, dir, rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		setup   []func(*testing.T, store.Store)
		want    string // "" for an error
		wantErr string
	}{
		{name: "a new gateway gets its boundary's directory", want: "mcp_gateway/acme-" + a.ID()},
		{name: "state kept before boundaries were recorded is claimed", setup: []func(*testing.T, store.Store){legacy}, want: "mcp_gateway/acme"},
		{name: "its own recorded boundary", setup: []func(*testing.T, store.Store){legacy, recorded("mcp_gateway/acme", a)}, want: "mcp_gateway/acme"},
		{name: "another boundary's state under the name", setup: []func(*testing.T, store.Store){legacy, recorded("mcp_gateway/acme", b)}, want: "mcp_gateway/acme-" + a.ID()},
		{name: "an empty name directory with another's record", setup: []func(*testing.T, store.Store){recorded("mcp_gateway/acme", b)}, want: "mcp_gateway/acme-" + a.ID()},
		{name: "its own directory, recorded", setup: []func(*testing.T, store.Store){recorded("mcp_gateway/acme-"+a.ID(), a)}, want: "mcp_gateway/acme-" + a.ID()},
		{name: "its own directory naming another boundary", setup: []func(*testing.T, store.Store){recorded("mcp_gateway/acme-"+a.ID(), b)}, wantErr: "records another auth boundary"},
		{name: "a corrupted record", setup: []func(*testing.T, store.Store){func(t *testing.T, s store.Store) {
			_ = s.Store(ctx, "mcp_gateway/acme/boundary", []byte("not json"))
		}}, wantErr: "not a Boundary record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := store.NewMemoryStore()
			for _, f := range tc.setup {
				f(t, store)
			}
			got, err := storagePrefix(ctx, store, "acme", a, zap.NewNop())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("storagePrefix = %q, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("storagePrefix = %q, %v; want %q", got, err, tc.want)
			}
			if rec, err := loadBoundary(ctx, store, got); err != nil || rec != a {
				t.Fatalf("the boundary recorded in %s: %+v, %v", got, rec, err)
			}
			// Asked again, as on every restart: the same answer.
			if again, err := storagePrefix(ctx, store, "acme", a, zap.NewNop()); err != nil || again != got {
				t.Fatalf("the second time: %q, %v; want %q", again, err, got)
			}
		})
	}

	t.Run("an unreachable storage is an error, not a new directory", func(t *testing.T) {
		store := store.NewMemoryStore()
		legacy(t, store)
		if got, err := storagePrefix(ctx, failingLoads{store}, "acme", a, zap.NewNop()); err == nil {
			t.Fatalf("storagePrefix = %q with its storage unreachable", got)
		}
		for _, dir := range []string{"mcp_gateway/acme", "mcp_gateway/acme-" + a.ID()} {
			if _, err := loadBoundary(ctx, store, dir); err == nil {
				t.Errorf("a Boundary recorded in %s while the storage was unreadable", dir)
			}
		}
	})

	t.Run("two boundaries upgrading one directory together", func(t *testing.T) {
		store := store.NewMemoryStore()
		legacy(t, store)
		var wg sync.WaitGroup
		got := make([]string, 2)
		for i, bd := range []Boundary{a, b} {
			wg.Go(func() {
				p, err := storagePrefix(ctx, store, "acme", bd, zap.NewNop())
				if err != nil {
					t.Error(err)
				}
				got[i] = p
			})
		}
		wg.Wait()
		owners := map[string]bool{got[0]: true, got[1]: true}
		if len(owners) != 2 || !owners["mcp_gateway/acme"] {
			t.Fatalf("directories %q: want one to keep mcp_gateway/acme and the other its own", got)
		}
	})

	t.Run("a new Boundary beside another's state is logged", func(t *testing.T) {
		store := store.NewMemoryStore()
		for i, bd := range []Boundary{a, b} {
			core, logs := observer.New(zap.WarnLevel)
			own, err := storagePrefix(ctx, store, "acme", bd, zap.New(core))
			if err != nil {
				t.Fatal(err)
			}
			// The first starts on an empty storage; the second's fresh
			// start beside the first's state is worth a warning naming it.
			if own != "mcp_gateway/acme-"+bd.ID() {
				t.Fatalf("gateway %d stored in %s", i, own)
			}
			warned := logs.FilterMessageSnippet("starts with new state").All()
			if i == 0 && len(warned) != 0 || i == 1 && (len(warned) != 1 || !strings.Contains(fmt.Sprint(warned[0].ContextMap()["other_storage"]), "mcp_gateway/acme-"+a.ID())) {
				t.Errorf("gateway %d: warnings %v", i, warned)
			}
		}
	})

	if a.ID() == b.ID() || len(a.ID()) != 16 {
		t.Errorf("Boundary ids %q and %q", a.ID(), b.ID())
	}
}
