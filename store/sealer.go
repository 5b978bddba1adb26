package store

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
)

// KeySize is the size of a sealing key: AES-256.
const KeySize = 32

const (
	sealVersion = 1
	keyIDSize   = 4
	headerSize  = 1 + keyIDSize // version, key ID
	nonceSize   = 12            // the standard GCM nonce
)

// keyInfo is the HKDF info string of KeyFromSecret. Changing it changes
// every derived key, so it is fixed for good (it names the package the
// sealer began in).
const keyInfo = "caddy-mcp-gateway grants sealing key v1"

// Sealer encrypts secrets at rest with AES-256-GCM. The first key seals;
// every key opens, so rotating keys keeps older records readable. The sealed
// form names its key with a short key ID, and the additional data binds a
// ciphertext to its place (grants.Ledger uses the record's storage key,
// accesstoken.Keyset the keyset's key and the key's ID), so a sealed value
// copied into another record does not open.
//
// A Sealer is safe for concurrent use.
type Sealer struct {
	keys []sealKey // keys[0] seals
}

type sealKey struct {
	id   [keyIDSize]byte
	aead cipher.AEAD
}

// NewSealer returns a Sealer that seals with primary and opens with primary
// and every older key. Each key must be KeySize (32) bytes.
func NewSealer(primary []byte, older ...[]byte) (*Sealer, error) {
	s := &Sealer{keys: make([]sealKey, 0, 1+len(older))}
	for i, key := range append([][]byte{primary}, older...) {
		if len(key) != KeySize {
			return nil, fmt.Errorf("store: sealing key %d is %d bytes; it must be %d (use KeyFromSecret to derive one from a passphrase)", i, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("store: sealing key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("store: sealing key %d: %w", i, err)
		}
		s.keys = append(s.keys, sealKey{id: keyID(key), aead: aead})
	}
	return s, nil
}

// keyID names a key in sealed values without revealing it: a truncated
// SHA-256 of a labelled key cannot be turned back into the key.
func keyID(key []byte) [keyIDSize]byte {
	h := sha256.New()
	h.Write([]byte("caddy-mcp-gateway key id\x00"))
	h.Write(key)
	var id [keyIDSize]byte
	copy(id[:], h.Sum(nil))
	return id
}

// Seal encrypts plaintext under the primary key. additionalData is
// authenticated but not stored: Open needs the same.
//
// The sealed form is version (1 byte) || key ID (4) || nonce (12) ||
// ciphertext and tag.
func (s *Sealer) Seal(plaintext, additionalData []byte) ([]byte, error) {
	k := s.keys[0]
	out := make([]byte, headerSize+nonceSize, headerSize+nonceSize+len(plaintext)+k.aead.Overhead())
	out[0] = sealVersion
	copy(out[1:headerSize], k.id[:])
	// Random nonces are safe for far more than the records one gateway
	// seals under one key (NIST SP 800-38D allows 2^32).
	if _, err := rand.Read(out[headerSize:]); err != nil {
		return nil, fmt.Errorf("store: generating a nonce: %w", err)
	}
	return k.aead.Seal(out, out[headerSize:], plaintext, authData(out[:headerSize], additionalData)), nil
}

// Open decrypts a value sealed by Seal under any of the Sealer's keys, with
// the same additionalData.
func (s *Sealer) Open(sealed, additionalData []byte) ([]byte, error) {
	if len(sealed) < headerSize+nonceSize || sealed[0] != sealVersion {
		return nil, errors.New("store: sealed value is malformed or of an unknown version")
	}
	header, nonce, ciphertext := sealed[:headerSize], sealed[headerSize:headerSize+nonceSize], sealed[headerSize+nonceSize:]
	aad := authData(header, additionalData)
	known := false
	for _, k := range s.keys {
		if !bytes.Equal(k.id[:], header[1:]) {
			continue
		}
		// Key IDs are short, so two keys may share one: try each.
		known = true
		if plaintext, err := k.aead.Open(nil, nonce, ciphertext, aad); err == nil {
			return plaintext, nil
		}
	}
	if !known {
		return nil, errors.New("store: sealed with a key this gateway no longer has; configure that key among the previous keys")
	}
	return nil, errors.New("store: sealed value failed authentication: it was altered or belongs to another record")
}

// authData binds the header (version and key ID) along with the caller's
// additional data, so neither can be altered.
func authData(header, additionalData []byte) []byte {
	aad := make([]byte, 0, len(header)+len(additionalData))
	return append(append(aad, header...), additionalData...)
}

// KeyFromSecret derives a sealing key from a configured secret with
// HKDF-SHA256. The secret must be at least 16 bytes; a random 32-byte value
// is best, since HKDF does not slow down guessing a weak passphrase.
func KeyFromSecret(secret string) ([]byte, error) {
	const minSecret = 16
	if len(secret) < minSecret {
		return nil, fmt.Errorf("store: the encryption secret is %d bytes; it must be at least %d (32 random bytes are best)", len(secret), minSecret)
	}
	return hkdf.Key(sha256.New, []byte(secret), nil, keyInfo, KeySize)
}

// LoadOrCreateKey returns the sealing key stored at key, generating 32
// random bytes and storing them the first time. Several instances sharing
// the storage may start at once, so creation happens under the storage lock
// after a second look: they all end up with the one key.
//
// A stored value of the wrong size is an error and is left alone: replacing
// it would make every record sealed under it unreadable.
func LoadOrCreateKey(ctx context.Context, store Store, key string) ([]byte, error) {
	k, err := loadKey(ctx, store, key)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	err = Locked(ctx, store, key, func() error {
		var err error
		if k, err = loadKey(ctx, store, key); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		k = make([]byte, KeySize)
		if _, err := rand.Read(k); err != nil {
			return fmt.Errorf("store: generating a sealing key: %w", err)
		}
		if err := store.Store(ctx, key, k); err != nil {
			return fmt.Errorf("store: storing the new sealing key: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

func loadKey(ctx context.Context, store Store, key string) ([]byte, error) {
	k, err := store.Load(ctx, key)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("store: reading the sealing key: %w", err)
	case len(k) != KeySize:
		return nil, fmt.Errorf("store: the stored sealing key is %d bytes instead of %d; restore it from a backup (replacing it would make the sealed records unreadable)", len(k), KeySize)
	}
	return k, nil
}
