// Package accesstoken issues and verifies the access tokens the gateway
// gives MCP clients: JWTs (RFC 9068, typ at+jwt) signed with ES256 by keys
// that every gateway instance shares through storage.
//
// A Keyset holds the signing keys, a Verifier checks tokens on the proxy's
// hot path, where it answers from a bounded cache of verified tokens so
// that a repeated token costs a hash and a map lookup instead of an ECDSA
// verification.
package accesstoken

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/jwk"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

const (
	// MaxLifetime is the longest an access token may live; Issue refuses
	// longer ones, so that RetireAfter covers every token a key signed.
	MaxLifetime = 24 * time.Hour

	// RetireAfter is how long a key keeps verifying after a newer key
	// replaced it. It exceeds MaxLifetime by an hour of margin for clocks
	// that disagree between instances.
	RetireAfter = MaxLifetime + time.Hour
)

// storedVersion is the version of the stored document's format.
const storedVersion = 1

// storedKeyset is the document a Keyset keeps in storage.
type storedKeyset struct {
	Version int `json:"version"`
	// Keys are the public keys, oldest first. The last one signs.
	Keys []storedKey `json:"keys"`
	// Private is the signing key's PKCS #8 private key, sealed. A replaced
	// key only verifies, so its private half is dropped at rotation: it can
	// no longer leak.
	Private []byte `json:"private"`
}

type storedKey struct {
	Created time.Time `json:"created"`
	Public  jwk.Key   `json:"public"`
}

// Keyset holds the signing keys of one gateway. They live in a store.Store
// with the private key sealed, so that every Caddy instance sharing the
// storage, and every config reload, signs and verifies with the same keys.
//
// The newest key signs. Older keys keep verifying until RetireAfter past
// the creation of the key that replaced them.
//
// A Keyset is safe for concurrent use.
type Keyset struct {
	store  store.Store
	key    string // storage key of the document; also the lock's name
	sealer *store.Sealer
	now    func() time.Time

	mu         sync.Mutex // serializes Rotate and Reload
	state      atomic.Pointer[keyState]
	lastReload atomic.Int64 // unix nanoseconds of the last Reload on an unknown kid
}

// keyState is an immutable snapshot of the keys, swapped atomically.
type keyState struct {
	signer *signingKey
	keys   map[string]keyEntry // by kid
	jwks   []byte
	infos  []KeyInfo // newest first, like jwks
}

type signingKey struct {
	kid  string
	priv *ecdsa.PrivateKey
}

type keyEntry struct {
	vk       *verifyKey
	retireAt time.Time // zero for the signing key
}

// verifyKey is shared between snapshots as long as the key stays, so that
// the Verifier's cache entries can point at it.
type verifyKey struct {
	kid string
	pub *ecdsa.PublicKey
	// withdrawn is set when a reload no longer finds the key: tokens it
	// signed stop verifying, cached or not.
	withdrawn atomic.Bool
}

// LoadKeyset loads the keyset stored at key, creating it with a fresh P-256
// key when it is missing. Creation happens under the storage lock of the
// same name and re-checks the storage first, so instances starting together
// agree on one key. now is the clock, time.Now when nil.
func LoadKeyset(ctx context.Context, s store.Store, key string, sealer *store.Sealer, now func() time.Time) (*Keyset, error) {
	if s == nil || sealer == nil || key == "" {
		return nil, errors.New("accesstoken: LoadKeyset needs a store, a storage key and a sealer")
	}
	if now == nil {
		now = time.Now
	}
	k := &Keyset{store: s, key: key, sealer: sealer, now: now}
	doc, err := k.load(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		doc, err = k.create(ctx)
	}
	if err != nil {
		return nil, err
	}
	if err := k.install(doc); err != nil {
		return nil, err
	}
	return k, nil
}

// create makes the first key, unless another instance did so while this
// one waited for the lock.
func (k *Keyset) create(ctx context.Context) (*storedKeyset, error) {
	var doc *storedKeyset
	err := store.Locked(ctx, k.store, k.key, func() error {
		var err error
		if doc, err = k.load(ctx); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		doc = &storedKeyset{Version: storedVersion}
		return k.addKey(ctx, doc)
	})
	return doc, err
}

// Rotate adds a new signing key and persists it; the previous keys keep
// verifying until they retire, and retired keys are dropped. Other
// instances pick the new key up when they Reload, or when they first see a
// token signed with it.
func (k *Keyset) Rotate(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var doc *storedKeyset
	err := store.Locked(ctx, k.store, k.key, func() error {
		var err error
		// Start from storage, not memory: another instance may have
		// rotated since this one loaded.
		if doc, err = k.load(ctx); err != nil {
			return err
		}
		return k.addKey(ctx, doc)
	})
	if err != nil {
		return err
	}
	return k.install(doc)
}

// Reload re-reads the keys from storage, to pick up a rotation by another
// instance. On error the current keys stay in use.
func (k *Keyset) Reload(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	doc, err := k.load(ctx)
	if err != nil {
		return err
	}
	return k.install(doc)
}

// reloadForUnknownKey reloads when a token names a key this instance does
// not have, which is what a rotation by another instance looks like. Only
// kids shaped like the ones Keyset makes qualify, and at most one such
// reload runs per minute, so forged tokens cannot turn into storage load.
func (k *Keyset) reloadForUnknownKey(kid string) bool {
	const minInterval = time.Minute
	if !isThumbprint(kid) {
		return false
	}
	now := k.now().UnixNano()
	last := k.lastReload.Load()
	if now-last < int64(minInterval) || !k.lastReload.CompareAndSwap(last, now) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return k.Reload(ctx) == nil
}

// JWKS returns the JSON Web Key Set of the verifying keys, newest first, as
// served at the jwks_uri. It is computed when the keys change; each call
// returns a copy the caller may keep.
func (k *Keyset) JWKS() []byte {
	return bytes.Clone(k.state.Load().jwks)
}

// KeyInfo describes one published key, for operators: never its private
// half.
type KeyInfo struct {
	Kid     string
	Created time.Time
	// RetireAt is when the key stops verifying; zero for the signing key,
	// which verifies until a newer key has replaced it for RetireAfter.
	RetireAt time.Time
	Signing  bool
}

// Keys describes the verifying keys, newest (the signing key) first: the
// keys JWKS publishes.
func (k *Keyset) Keys() []KeyInfo {
	return slices.Clone(k.state.Load().infos)
}

// Issue signs c with the newest key and returns the compact JWT. It fills
// ID with 128 random bits when empty, IssuedAt with the current time and
// NotBefore with IssuedAt when zero. Issuer, Subject, Audience and
// ExpiresAt are required, and the token may live at most MaxLifetime.
// Times are truncated to whole seconds, the precision of a JWT. The
// signature is in low-S form, the only one Verify accepts.
func (k *Keyset) Issue(c Claims) (string, error) {
	now := k.now()
	switch {
	case c.Issuer == "" || c.Subject == "" || c.Audience == "":
		return "", errors.New("accesstoken: a token needs an issuer, a subject and an audience")
	case c.ExpiresAt.IsZero():
		return "", errors.New("accesstoken: a token needs an expiry (ExpiresAt)")
	case !c.ExpiresAt.After(now):
		return "", errors.New("accesstoken: ExpiresAt is not in the future")
	case c.ExpiresAt.Sub(now) > MaxLifetime:
		return "", fmt.Errorf("accesstoken: a token may live at most %v; shorten the access token lifetime", MaxLifetime)
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = now
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = c.IssuedAt
	}
	if c.ID == "" {
		c.ID = rand.Text() // 26 base32 characters: 130 random bits
	}
	signer := k.state.Load().signer
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, toWire(&c))
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = signer.kid
	signed, err := tok.SigningString()
	if err != nil {
		return "", fmt.Errorf("accesstoken: encoding the token: %w", err)
	}
	sig, err := jwt.SigningMethodES256.Sign(signed, signer.priv)
	if err != nil {
		return "", fmt.Errorf("accesstoken: signing: %w", err)
	}
	// Verify accepts the low-S form only.
	toLowS(sig)
	return signed + "." + tok.EncodeSegment(sig), nil
}

// lookup returns the key named kid if it verifies at now.
func (k *Keyset) lookup(kid string, now time.Time) (*verifyKey, error) {
	e, ok := k.state.Load().keys[kid]
	if !ok {
		return nil, refuse(ErrUnknownKey, "")
	}
	if !e.retireAt.IsZero() && !now.Before(e.retireAt) {
		return nil, refuse(ErrUnknownKey, "the key retired")
	}
	return e.vk, nil
}

// load reads and checks the stored document. A missing document is an
// error satisfying errors.Is(err, fs.ErrNotExist).
func (k *Keyset) load(ctx context.Context) (*storedKeyset, error) {
	raw, err := k.store.Load(ctx, k.key)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("accesstoken: reading the signing keys at %q: %w", k.key, err)
	}
	var doc storedKeyset
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, k.corrupt(err)
	}
	if doc.Version != storedVersion {
		return nil, fmt.Errorf("accesstoken: the signing keys at %q have format version %d; this build reads version %d, so upgrade it", k.key, doc.Version, storedVersion)
	}
	if len(doc.Keys) == 0 {
		return nil, k.corrupt(errors.New("no keys"))
	}
	return &doc, nil
}

func (k *Keyset) corrupt(err error) error {
	return fmt.Errorf("accesstoken: the signing keys at %q are corrupt (%w); delete them to start over, which invalidates every access token issued so far", k.key, err)
}

// addKey generates a P-256 key, appends it to doc as the signing key,
// drops the keys that have retired and stores doc.
func (k *Keyset) addKey(ctx context.Context, doc *storedKeyset) error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("accesstoken: generating a signing key: %w", err)
	}
	pub, err := publicJWK(&priv.PublicKey)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("accesstoken: encoding the signing key: %w", err)
	}
	sealed, err := k.sealer.Seal(der, k.additionalData(pub.Kid))
	clear(der)
	if err != nil {
		return fmt.Errorf("accesstoken: sealing the signing key: %w", err)
	}

	now := k.now()
	doc.Keys = append(doc.Keys, storedKey{Created: now.UTC(), Public: pub})
	// Keys are oldest first, so the retired ones form a prefix.
	for len(doc.Keys) > 1 && retired(doc.Keys, 0, now) {
		doc.Keys = doc.Keys[1:]
	}
	doc.Private = sealed
	raw, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("accesstoken: encoding the signing keys: %w", err)
	}
	if err := k.store.Store(ctx, k.key, raw); err != nil {
		return fmt.Errorf("accesstoken: storing the signing keys at %q: %w", k.key, err)
	}
	return nil
}

// retireAt returns when keys[i] stops verifying: RetireAfter past the
// creation of the next key, or zero for the newest key.
func retireAt(keys []storedKey, i int) time.Time {
	if i == len(keys)-1 {
		return time.Time{}
	}
	return keys[i+1].Created.Add(RetireAfter)
}

func retired(keys []storedKey, i int, now time.Time) bool {
	r := retireAt(keys, i)
	return !r.IsZero() && !now.Before(r)
}

// install checks doc, opens its private key and makes it the current
// state. Keys that stay keep their identity; keys that went are withdrawn.
func (k *Keyset) install(doc *storedKeyset) error {
	old := k.state.Load()
	now := k.now()
	st := &keyState{keys: make(map[string]keyEntry, len(doc.Keys))}
	var set jwk.Set
	for i, sk := range doc.Keys {
		pub, err := checkStoredKey(sk.Public)
		if err != nil {
			return k.corrupt(fmt.Errorf("key %d: %w", i, err))
		}
		if i > 0 && sk.Created.Before(doc.Keys[i-1].Created) {
			return k.corrupt(errors.New("keys out of order"))
		}
		if _, dup := st.keys[sk.Public.Kid]; dup {
			return k.corrupt(fmt.Errorf("key %q appears twice", sk.Public.Kid))
		}
		if retired(doc.Keys, i, now) {
			continue
		}
		e := keyEntry{retireAt: retireAt(doc.Keys, i)}
		if prev, ok := old.lookupEntry(sk.Public.Kid); ok {
			e.vk = prev.vk
		} else {
			e.vk = &verifyKey{kid: sk.Public.Kid, pub: pub}
		}
		st.keys[sk.Public.Kid] = e
		set.Keys = append(set.Keys, sk.Public)
		st.infos = append(st.infos, KeyInfo{Kid: sk.Public.Kid, Created: sk.Created, RetireAt: e.retireAt, Signing: i == len(doc.Keys)-1})
	}
	slices.Reverse(set.Keys) // newest first
	slices.Reverse(st.infos)

	newest := doc.Keys[len(doc.Keys)-1].Public
	der, err := k.sealer.Open(doc.Private, k.additionalData(newest.Kid))
	if err != nil {
		return fmt.Errorf("accesstoken: opening the signing key at %q: %w", k.key, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	clear(der)
	if err != nil {
		return k.corrupt(fmt.Errorf("the private key: %w", err))
	}
	priv, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || !priv.PublicKey.Equal(st.keys[newest.Kid].vk.pub) {
		return k.corrupt(errors.New("the private key does not match the newest public key"))
	}
	st.signer = &signingKey{kid: newest.Kid, priv: priv}
	if st.jwks, err = json.Marshal(set); err != nil {
		return fmt.Errorf("accesstoken: encoding the JWKS: %w", err)
	}

	k.state.Store(st)
	if old != nil {
		for kid, e := range old.keys {
			if _, kept := st.keys[kid]; !kept {
				e.vk.withdrawn.Store(true)
			}
		}
	}
	return nil
}

func (st *keyState) lookupEntry(kid string) (keyEntry, bool) {
	if st == nil {
		return keyEntry{}, false
	}
	e, ok := st.keys[kid]
	return e, ok
}

// additionalData binds a sealed private key to its storage key and kid, so
// that it does not open when copied to another gateway or another key.
func (k *Keyset) additionalData(kid string) []byte {
	return []byte("accesstoken signing key\x00" + k.key + "\x00" + kid)
}

// publicJWK returns the JWK of a signing key, its kid the RFC 7638
// thumbprint: derived from the key, so it cannot collide by accident.
func publicJWK(pub *ecdsa.PublicKey) (jwk.Key, error) {
	k, err := jwk.Public("", "ES256", pub)
	if err != nil {
		return jwk.Key{}, fmt.Errorf("accesstoken: %w", err)
	}
	if k.Kid, err = k.Thumbprint(); err != nil {
		return jwk.Key{}, fmt.Errorf("accesstoken: %w", err)
	}
	return k, nil
}

// checkStoredKey checks that a stored public key is an ES256 key whose kid
// is its thumbprint.
func checkStoredKey(k jwk.Key) (*ecdsa.PublicKey, error) {
	if k.Alg != "ES256" || k.Crv != "P-256" {
		return nil, fmt.Errorf("key %q is not an ES256 key", k.Kid)
	}
	pub, err := k.PublicKey()
	if err != nil {
		return nil, err
	}
	if tp, err := k.Thumbprint(); err != nil || tp != k.Kid {
		return nil, fmt.Errorf("key %q does not match its kid", k.Kid)
	}
	return pub.(*ecdsa.PublicKey), nil
}

// isThumbprint reports whether kid has the shape of a base64url SHA-256.
func isThumbprint(kid string) bool {
	if len(kid) != base64.RawURLEncoding.EncodedLen(32) {
		return false
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
