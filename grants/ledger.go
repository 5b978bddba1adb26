package grants

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// maxRecordBytes bounds one stored record. Real records are a few hundred
// bytes; the bound keeps a corrupted or hostile storage entry from costing
// unbounded memory.
const maxRecordBytes = 64 << 10

// Record kinds, one storage directory each under the Ledger's prefix.
const (
	kindClients  = "clients"
	kindConsents = "consents"
	kindPending  = "pending"
	kindCodes    = "codes"
	kindFamilies = "families"
	kindGrants   = "grants"
	kindBrowsers = "browsers"

	kindRevocations = "revocations"
	kindAssertions  = "assertions"
	kindMachine     = "machine_tokens"
)

// Ledger is the durable state of one gateway, kept in a [store.Store] under
// a key prefix (such as "mcp_gateway/acme"). Records are JSON; their secret
// fields are sealed with the record's storage key as additional data. Records
// addressed by a secret (codes, pending handles, refresh tokens) or by a
// user or client identifier are stored under its base64url SHA-256 digest,
// so a listing of the storage reveals neither secrets nor user names.
//
// A Ledger is safe for concurrent use, and several Ledgers (in several
// processes) may share one Store and prefix.
type Ledger struct {
	store  store.Store
	prefix string
	sealer *store.Sealer
	now    func() time.Time

	// locks queues this process's contenders for one storage lock: codes,
	// refresh tokens and grants are contended for by requests.
	locks store.Locker
}

// NewLedger returns the Ledger kept in s under prefix, sealing secrets with
// sealer. now is the clock used for expiry; nil means time.Now. It panics
// if s or sealer is nil.
func NewLedger(s store.Store, prefix string, sealer *store.Sealer, now func() time.Time) *Ledger {
	if s == nil || sealer == nil {
		panic("grants: NewLedger needs a Store and a Sealer")
	}
	if now == nil {
		now = time.Now
	}
	return &Ledger{store: s, prefix: strings.TrimSuffix(prefix, "/"), sealer: sealer, now: now}
}

// key returns the storage key of the record of kind addressed by the given
// parts (a secret, or identifiers).
func (l *Ledger) key(kind string, parts ...string) string {
	return l.dir(kind) + "/" + digest(parts...)
}

func (l *Ledger) dir(kind string) string {
	if l.prefix == "" {
		return kind
	}
	return l.prefix + "/" + kind
}

// digest is the base64url SHA-256 of parts. Each part is length-prefixed,
// so ("ab", "c") and ("a", "bc") differ.
func digest(parts ...string) string {
	h := sha256.New()
	if len(parts) == 1 {
		h.Write([]byte(parts[0]))
	} else {
		var n [binary.MaxVarintLen64]byte
		for _, p := range parts {
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
			h.Write([]byte(p))
		}
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// get loads the record at key into v. A missing record is ErrNotFound.
func (l *Ledger) get(ctx context.Context, kind, key string, v any) error {
	b, err := l.store.Load(ctx, key)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("grants: reading a %s record: %w", kind, err)
	case len(b) > maxRecordBytes:
		return fmt.Errorf("grants: a %s record is %d bytes, more than the %d allowed; the storage is corrupted", kind, len(b), maxRecordBytes)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("grants: a %s record is unreadable: %w", kind, err)
	}
	return nil
}

// put stores v as the record at key.
func (l *Ledger) put(ctx context.Context, kind, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("grants: encoding a %s record: %w", kind, err)
	}
	if len(b) > maxRecordBytes {
		return fmt.Errorf("grants: a %s record would be %d bytes, more than the %d allowed; shorten its fields", kind, len(b), maxRecordBytes)
	}
	if err := l.store.Store(ctx, key, b); err != nil {
		return fmt.Errorf("grants: writing a %s record: %w", kind, err)
	}
	return nil
}

// del removes the record at key.
func (l *Ledger) del(ctx context.Context, kind, key string) error {
	if err := l.store.Delete(ctx, key); err != nil {
		return fmt.Errorf("grants: deleting a %s record: %w", kind, err)
	}
	return nil
}

// seal seals a secret field of the record at key.
func (l *Ledger) seal(key string, plaintext []byte) ([]byte, error) {
	return l.sealer.Seal(plaintext, []byte(key))
}

// open opens a secret field of the record at key.
func (l *Ledger) open(key string, sealed []byte) ([]byte, error) {
	return l.sealer.Open(sealed, []byte(key))
}

// locked runs fn holding the lock of the record at key, in this process and
// in the storage (store.Locker), so that fn's read-modify-write happens
// once across every instance sharing the storage.
func (l *Ledger) locked(ctx context.Context, key string, fn func() error) error {
	return l.locks.Locked(ctx, l.store, key, fn)
}

// randomString returns n random bytes, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never fails (it aborts the program instead).
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// expired reports whether a record expiring at t has expired at now. A zero
// t never expires.
func expired(t, now time.Time) bool {
	return !t.IsZero() && !now.Before(t)
}

// CodeRetention is how long a redeemed authorization code's record outlives
// the code's expiry, so that a replay is still recognised (and the tokens
// issued from it revoked) after the code has expired.
const CodeRetention = 24 * time.Hour

// list returns the storage keys of kind's records: none when there never
// were any (the store has no such directory).
func (l *Ledger) list(ctx context.Context, kind string) ([]string, error) {
	keys, err := l.store.List(ctx, l.dir(kind), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("grants: listing %s records: %w", kind, err)
	}
	return keys, nil
}

// Prune deletes the records that can no longer be used: pending
// authorizations, remembered browsers and account sessions past their
// expiry, authorization codes CodeRetention past theirs, and refresh-token
// families, revocation records, used client assertions and machine
// clients' downstream tokens past theirs.
// It returns how many it deleted. Clients, consents and downstream grants
// are kept.
//
// Run it now and then (say hourly) from one place; running it concurrently
// is harmless. It deletes without taking locks because no operation writes a
// record once it is past these limits.
func (l *Ledger) Prune(ctx context.Context) (int, error) {
	now := l.now()
	pruned := 0
	for _, kind := range []string{kindPending, kindCodes, kindFamilies, kindBrowsers, kindAccounts, kindRevocations, kindAssertions, kindMachine} {
		keys, err := l.list(ctx, kind)
		if err != nil {
			return pruned, err
		}
		for _, key := range keys {
			var rec struct {
				ExpiresAt time.Time `json:"expires_at"`
			}
			if err := l.get(ctx, kind, key, &rec); errors.Is(err, ErrNotFound) {
				continue
			} else if err != nil {
				return pruned, err
			}
			limit := rec.ExpiresAt
			if kind == kindCodes && !limit.IsZero() {
				limit = limit.Add(CodeRetention)
			}
			if !expired(limit, now) {
				continue
			}
			if err := l.del(ctx, kind, key); err != nil {
				return pruned, err
			}
			pruned++
		}
	}
	return pruned, nil
}
