package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/certmagic"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func mustSealer(t testing.TB, primary []byte, older ...[]byte) *Sealer {
	t.Helper()
	s, err := NewSealer(primary, older...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewSealerKeySizes(t *testing.T) {
	tests := []struct {
		name    string
		primary []byte
		older   [][]byte
		ok      bool
	}{
		{"32 bytes", testKey(1), nil, true},
		{"with older keys", testKey(1), [][]byte{testKey(2), testKey(3)}, true},
		{"empty", nil, nil, false},
		{"16 bytes", make([]byte, 16), nil, false},
		{"31 bytes", make([]byte, 31), nil, false},
		{"33 bytes", make([]byte, 33), nil, false},
		{"short older key", testKey(1), [][]byte{make([]byte, 16)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSealer(tt.primary, tt.older...)
			if (err == nil) != tt.ok {
				t.Fatalf("NewSealer: err = %v, want ok = %v", err, tt.ok)
			}
		})
	}
}

func TestSealerRoundTrip(t *testing.T) {
	s := mustSealer(t, testKey(1))
	for _, plaintext := range [][]byte{nil, []byte("x"), []byte("downstream-refresh-token"), bytes.Repeat([]byte("z"), 2048)} {
		sealed, err := s.Seal(plaintext, []byte("mcp_gateway/acme/grants/key"))
		if err != nil {
			t.Fatal(err)
		}
		// A short plaintext turns up in random bytes by chance (one byte
		// does in about one run in ten), so only longer ones are searched.
		if len(plaintext) >= 8 && bytes.Contains(sealed, plaintext) {
			t.Fatalf("sealed form contains the plaintext")
		}
		got, err := s.Open(sealed, []byte("mcp_gateway/acme/grants/key"))
		if err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("Open = %q, %v; want %q", got, err, plaintext)
		}
	}
	a, _ := s.Seal([]byte("same"), nil)
	b, _ := s.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Error("sealing the same plaintext twice gave the same output; nonces must be random")
	}
}

func TestSealerKeyRotation(t *testing.T) {
	aad := []byte("record-key")
	underA, err := mustSealer(t, testKey('A')).Seal([]byte("secret"), aad)
	if err != nil {
		t.Fatal(err)
	}
	rotated := mustSealer(t, testKey('B'), testKey('A'))
	if got, err := rotated.Open(underA, aad); err != nil || string(got) != "secret" {
		t.Fatalf("rotated Sealer opening a value sealed under the old key = %q, %v", got, err)
	}
	underB, err := rotated.Seal([]byte("secret"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mustSealer(t, testKey('A')).Open(underB, aad); err == nil {
		t.Error("a Sealer without the new key opened a value sealed under it")
	}
	_, err = mustSealer(t, testKey('B')).Open(underA, aad)
	if err == nil || !strings.Contains(err.Error(), "previous keys") {
		t.Errorf("opening with the old key dropped: err = %v; want an error pointing at the previous keys", err)
	}
}

func TestSealerRejects(t *testing.T) {
	s := mustSealer(t, testKey(7))
	aad := []byte("mcp_gateway/acme/grants/alice")
	sealed, err := s.Seal([]byte("access-token"), aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		sealed []byte
		aad    []byte
	}{
		{"additional data of another record", sealed, []byte("mcp_gateway/acme/grants/mallory")},
		{"no additional data", sealed, nil},
		{"version altered", flip(0), aad},
		{"key ID altered", flip(1), aad},
		{"nonce altered", flip(headerSize), aad},
		{"ciphertext altered", flip(headerSize + nonceSize), aad},
		{"tag altered", flip(len(sealed) - 1), aad},
		{"truncated", sealed[:len(sealed)-1], aad},
		{"header only", sealed[:headerSize+nonceSize-1], aad},
		{"empty", nil, aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := s.Open(tt.sealed, tt.aad); err == nil {
				t.Fatalf("Open succeeded with %q; want an error", got)
			}
		})
	}
}

func TestKeyFromSecret(t *testing.T) {
	const secret = "correct horse battery staple"
	k1, err := KeyFromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := KeyFromSecret(secret)
	k3, _ := KeyFromSecret(secret + "!")
	switch {
	case len(k1) != KeySize:
		t.Fatalf("key is %d bytes, want %d", len(k1), KeySize)
	case !bytes.Equal(k1, k2):
		t.Error("the same secret derived two different keys")
	case bytes.Equal(k1, k3):
		t.Error("two secrets derived the same key")
	case bytes.Contains(k1, []byte(secret[:8])):
		t.Error("the key contains the secret")
	}

	const short = "fifteen bytes!!"
	_, err = KeyFromSecret(short)
	if err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("KeyFromSecret(15 bytes): err = %v; want one saying at least 16 bytes", err)
	}
	if strings.Contains(err.Error(), short) {
		t.Error("the error repeats the secret")
	}
	if _, err := KeyFromSecret(short + "."); err != nil {
		t.Errorf("KeyFromSecret(16 bytes): %v", err)
	}
}

func TestLoadOrCreateKeyRace(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	const n = 10
	keys := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			keys[i], errs[i] = LoadOrCreateKey(ctx, store, "mcp_gateway/acme/encryption_key")
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("callers 0 and %d got different keys", i)
		}
	}
	if len(keys[0]) != KeySize {
		t.Fatalf("key is %d bytes, want %d", len(keys[0]), KeySize)
	}
	stored, err := store.Load(ctx, "mcp_gateway/acme/encryption_key")
	if err != nil || !bytes.Equal(stored, keys[0]) {
		t.Fatalf("stored key differs from the one returned (err %v)", err)
	}
}

func TestLoadOrCreateKeyFileStorage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	first, err := LoadOrCreateKey(ctx, &certmagic.FileStorage{Path: dir}, "gw/encryption_key")
	if err != nil {
		t.Fatal(err)
	}
	// Another instance over the same directory finds the same key.
	second, err := LoadOrCreateKey(ctx, &certmagic.FileStorage{Path: dir}, "gw/encryption_key")
	if err != nil || !bytes.Equal(first, second) {
		t.Fatalf("second LoadOrCreateKey = %x, %v; want the first key", second, err)
	}
}

func TestLoadOrCreateKeyKeepsACorruptKey(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	if err := store.Store(ctx, "k", []byte("short")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(ctx, store, "k"); err == nil {
		t.Fatal("LoadOrCreateKey accepted a 5-byte key")
	}
	if v, _ := store.Load(ctx, "k"); string(v) != "short" {
		t.Errorf("the stored value was replaced with %x; it must be left for the operator to restore", v)
	}
}

func TestLoadOrCreateKeyStorageError(t *testing.T) {
	boom := errors.New("storage offline")
	_, err := LoadOrCreateKey(context.Background(), failingStore{boom}, "k")
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want it to wrap the storage error", err)
	}
}

// failingStore fails every operation with err.
type failingStore struct{ err error }

func (f failingStore) Lock(context.Context, string) error                   { return f.err }
func (f failingStore) Unlock(context.Context, string) error                 { return f.err }
func (f failingStore) Store(context.Context, string, []byte) error          { return f.err }
func (f failingStore) Load(context.Context, string) ([]byte, error)         { return nil, f.err }
func (f failingStore) Delete(context.Context, string) error                 { return f.err }
func (f failingStore) List(context.Context, string, bool) ([]string, error) { return nil, f.err }
