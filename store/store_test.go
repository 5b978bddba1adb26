package store

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"

	"github.com/caddyserver/certmagic"
)

// Caddy's storage, whatever its backend, is a Store.
var (
	_ Store = certmagic.Storage(nil)
	_ Store = (*certmagic.FileStorage)(nil)
	_ Store = (*MemoryStore)(nil)
)

func TestMemoryStoreLoadStoreDelete(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryStore()
	if _, err := m.Load(ctx, "a/b"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: err = %v, want fs.ErrNotExist", err)
	}
	v := []byte("value")
	if err := m.Store(ctx, "a/b", v); err != nil {
		t.Fatal(err)
	}
	v[0] = 'X' // the store keeps its own copy
	got, err := m.Load(ctx, "a/b")
	if err != nil || string(got) != "value" {
		t.Fatalf("Load = %q, %v; want %q", got, err, "value")
	}
	got[0] = 'Y'
	if again, _ := m.Load(ctx, "a/b"); string(again) != "value" {
		t.Fatalf("Load returned the stored slice itself: now %q", again)
	}
	if err := m.Store(ctx, "a/b/c", nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Store(ctx, "a/bc", nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	for key, exists := range map[string]bool{"a/b": false, "a/b/c": false, "a/bc": true} {
		if _, err := m.Load(ctx, key); (err == nil) != exists {
			t.Errorf("after Delete(a/b), Load(%s) err = %v; want exists = %v", key, err, exists)
		}
	}
	if err := m.Delete(ctx, "missing"); err != nil {
		t.Errorf("Delete of a missing key: %v, want nil", err)
	}
}

func TestMemoryStoreList(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryStore()
	for _, k := range []string{"p/x", "p/d/y", "p/d/e/z", "pq/w", "other"} {
		if err := m.Store(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		path      string
		recursive bool
		want      []string
	}{
		{"p", false, []string{"p/d", "p/x"}},
		{"p/", false, []string{"p/d", "p/x"}},
		{"p", true, []string{"p/d", "p/d/e", "p/d/e/z", "p/d/y", "p/x"}},
		{"p/d", false, []string{"p/d/e", "p/d/y"}},
	}
	for _, tt := range tests {
		got, err := m.List(ctx, tt.path, tt.recursive)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("List(%q, %v) = %q, %v; want %q", tt.path, tt.recursive, got, err, tt.want)
		}
	}
	if _, err := m.List(ctx, "nothing", true); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List of an empty path: err = %v, want fs.ErrNotExist", err)
	}
}

func TestMemoryStoreLock(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryStore()
	if err := m.Lock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	// Another name is independent.
	if err := m.Lock(ctx, "other"); err != nil {
		t.Fatal(err)
	}

	// A held lock blocks until ctx is done.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.Lock(cancelled, "n"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock of a held lock with a done context: err = %v, want context.Canceled", err)
	}

	// ...or until it is released.
	acquired := make(chan error)
	go func() { acquired <- m.Lock(ctx, "n") }()
	if err := m.Unlock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if err := <-acquired; err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	if err := m.Unlock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx, "n"); err == nil {
		t.Error("Unlock of a free lock succeeded; want an error")
	}
}
