package store_test

import (
	"context"
	"fmt"
	"log"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// A gateway's sealing key, kept in its storage, seals a secret bound to
// the record that holds it; a read-modify-write of that record happens
// under its storage lock.
func Example() {
	ctx := context.Background()
	s := store.NewMemoryStore() // in Caddy: ctx.Storage()
	key, err := store.LoadOrCreateKey(ctx, s, "mcp_gateway/acme/encryption_key")
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		log.Fatal(err)
	}

	const record = "mcp_gateway/acme/secrets/alice"
	err = store.Locked(ctx, s, record, func() error {
		// Re-read under the lock: another instance may have written it.
		if _, err := s.Load(ctx, record); err == nil {
			return nil
		}
		sealed, err := sealer.Seal([]byte("a refresh token"), []byte(record))
		if err != nil {
			return err
		}
		return s.Store(ctx, record, sealed)
	})
	if err != nil {
		log.Fatal(err)
	}

	sealed, err := s.Load(ctx, record)
	if err != nil {
		log.Fatal(err)
	}
	secret, err := sealer.Open(sealed, []byte(record))
	fmt.Printf("%s %v\n", secret, err)
	_, err = sealer.Open(sealed, []byte("mcp_gateway/acme/secrets/mallory"))
	fmt.Println("opened as another record:", err == nil)
	// Output:
	// a refresh token <nil>
	// opened as another record: false
}
