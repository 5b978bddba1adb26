package grants

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// maxFamilyIDLen bounds a caller-chosen family ID.
const maxFamilyIDLen = 64

// Family is a chain of rotating refresh tokens issued from one
// authorization. Each refresh replaces the family's token; presenting a
// replaced token revokes the family (OAuth 2.1 §4.3.1, refresh token
// rotation with reuse detection).
type Family struct {
	ID       string `json:"id"`
	ClientID string `json:"client_id"`
	Server   string `json:"server"`
	Resource string `json:"resource,omitempty"`
	User     string `json:"user"`
	Scopes   string `json:"scopes"`
	// Ref is what the family's access tokens carry to be revoked with it:
	// the ID sealed, so that an access token does not tell which family it
	// came from, except to the gateway (FamilyByRef). StartFamily sets it.
	Ref string `json:"ref"`

	CreatedAt time.Time `json:"created_at,omitzero"`
	RotatedAt time.Time `json:"rotated_at,omitzero"`
	// ExpiresAt ends the family whatever its rotations; zero never does.
	ExpiresAt time.Time `json:"expires_at,omitzero"`

	Revoked       bool   `json:"revoked,omitempty"`
	RevokedReason string `json:"revoked_reason,omitempty"`

	cursor string // its place in a Families listing
}

// familyRecord is a Family as stored, with its token state.
//
// The family's tokens are numbered from zero; Serial is the number of the
// current one. Each token's secret is its number and a MAC of it under the
// family's own key, so the family can tell every token it issued, current
// or replaced, from one it never issued without storing them: a replaced
// token is reuse and revokes the family, a made-up one is only refused.
type familyRecord struct {
	Family
	Serial uint64 `json:"serial"`
	// SealedKey is the family's MAC key, sealed.
	SealedKey []byte `json:"sealed_key"`
}

// StartFamily stores a new refresh-token family and returns its first
// refresh token. An empty f.ID is set to a random one; a given ID must be 1
// to 64 base64url characters and not in use. f.Ref is set to the family's
// reference. A zero CreatedAt is set to now and a zero RotatedAt to
// CreatedAt.
//
// A refresh token is opaque to clients: the family ID, a dot, and 256 bits
// (base64url) that only the family's key can produce.
func (l *Ledger) StartFamily(ctx context.Context, f *Family) (refreshToken string, err error) {
	if f.ID == "" {
		f.ID = randomString(16)
	} else if !validFamilyID(f.ID) {
		return "", fmt.Errorf("grants: family ID %q is invalid; use 1 to %d base64url characters", f.ID, maxFamilyIDLen)
	}
	if f.CreatedAt.IsZero() {
		f.CreatedAt = l.now()
	}
	if f.RotatedAt.IsZero() {
		f.RotatedAt = f.CreatedAt
	}
	if f.Ref, err = l.newRef(f.ID); err != nil {
		return "", err
	}
	key := l.key(kindFamilies, f.ID)
	macKey := make([]byte, familyKeyBytes)
	_, _ = rand.Read(macKey) // never fails (it aborts the program instead)
	sealed, err := l.seal(key, macKey)
	if err != nil {
		return "", err
	}
	rec := familyRecord{Family: *f, SealedKey: sealed}
	err = l.locked(ctx, key, func() error {
		var existing familyRecord
		switch err := l.get(ctx, kindFamilies, key, &existing); {
		case err == nil:
			return fmt.Errorf("grants: a refresh token family with ID %q already exists; choose another ID", f.ID)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		return l.put(ctx, kindFamilies, key, &rec)
	})
	if err != nil {
		return "", err
	}
	return tokenOf(macKey, f.ID, 0), nil
}

// Rotate redeems refreshToken and returns its family and the refresh token
// to hand out next. Under the family's lock:
//
//   - a token the family never issued (a made-up secret, an unknown
//     family, a malformed token) is ErrNotFound, and changes nothing;
//   - a revoked family is ErrRevoked, an expired one ErrExpired;
//   - the family's current token is replaced by a new one, which is
//     returned;
//   - the token it replaced, presented within grace of the rotation (a
//     client racing two refreshes), returns the current token, so both
//     callers end up holding the same valid token;
//   - any other token the family issued (the replaced one after grace, an
//     older one) revokes the family: ErrRefreshReused, returned with the
//     revoked family.
func (l *Ledger) Rotate(ctx context.Context, refreshToken string, grace time.Duration) (*Family, string, error) {
	id, ok := FamilyIDOf(refreshToken)
	if !ok {
		return nil, "", ErrNotFound
	}
	key := l.key(kindFamilies, id)
	var (
		rec  familyRecord
		next string
	)
	err := l.locked(ctx, key, func() error {
		if err := l.get(ctx, kindFamilies, key, &rec); err != nil {
			return err
		}
		macKey, serial, err := l.issued(&rec, key, refreshToken)
		if err != nil {
			return err
		}
		now := l.now()
		switch {
		case rec.Revoked:
			return ErrRevoked
		case expired(rec.ExpiresAt, now):
			return ErrExpired
		case serial == rec.Serial:
			rec.Serial++
			rec.RotatedAt = now
			next = tokenOf(macKey, id, rec.Serial)
			return l.put(ctx, kindFamilies, key, &rec)
		case serial+1 == rec.Serial && now.Sub(rec.RotatedAt) <= grace:
			next = tokenOf(macKey, id, rec.Serial)
			return nil
		default:
			rec.Revoked, rec.RevokedReason = true, "refresh token reused"
			if err := l.put(ctx, kindFamilies, key, &rec); err != nil {
				return fmt.Errorf("%w, but recording the revocation failed: %w", ErrRefreshReused, err)
			}
			if err := l.recordRevocation(ctx, &rec.Family); err != nil {
				return fmt.Errorf("%w, but telling other instances failed: %w", ErrRefreshReused, err)
			}
			return ErrRefreshReused
		}
	})
	switch {
	case errors.Is(err, ErrRefreshReused):
		f := rec.Family
		return &f, "", err
	case err != nil:
		return nil, "", err
	}
	f := rec.Family
	return &f, next, nil
}

// FamilyOf returns the family of a refresh token it issued, current or
// replaced, revoked or not; a token it never issued is ErrNotFound. It
// changes nothing: it lets a caller check a token's client before
// redeeming it, or revoke with it.
func (l *Ledger) FamilyOf(ctx context.Context, refreshToken string) (*Family, error) {
	id, ok := FamilyIDOf(refreshToken)
	if !ok {
		return nil, ErrNotFound
	}
	key := l.key(kindFamilies, id)
	var rec familyRecord
	if err := l.get(ctx, kindFamilies, key, &rec); err != nil {
		return nil, err
	}
	if _, _, err := l.issued(&rec, key, refreshToken); err != nil {
		return nil, err
	}
	f := rec.Family
	return &f, nil
}

// Family returns the family with the given ID, or ErrNotFound.
func (l *Ledger) Family(ctx context.Context, id string) (*Family, error) {
	if !validFamilyID(id) {
		return nil, ErrNotFound
	}
	var rec familyRecord
	if err := l.get(ctx, kindFamilies, l.key(kindFamilies, id), &rec); err != nil {
		return nil, err
	}
	if rec.ID != id {
		return nil, errors.New("grants: a family record is stored under another family's key; the storage is corrupted")
	}
	f := rec.Family
	return &f, nil
}

// RevokeFamily revokes the family with the given ID, so none of its tokens
// refreshes again, and returns it. An unknown family is ErrNotFound;
// revoking a revoked family keeps its first reason. When storing the
// revocation fails, the family is returned with the error, so that the
// caller can still refuse its access tokens itself.
func (l *Ledger) RevokeFamily(ctx context.Context, id, reason string) (*Family, error) {
	if !validFamilyID(id) {
		return nil, ErrNotFound
	}
	key := l.key(kindFamilies, id)
	var rec familyRecord
	err := l.locked(ctx, key, func() error {
		if err := l.get(ctx, kindFamilies, key, &rec); err != nil {
			return err
		}
		if rec.ID != id {
			return errors.New("grants: a family record is stored under another family's key; the storage is corrupted")
		}
		if rec.Revoked {
			return nil
		}
		rec.Revoked, rec.RevokedReason = true, reason
		if err := l.put(ctx, kindFamilies, key, &rec); err != nil {
			return err
		}
		// Other instances learn of it from this record (Revocations) and
		// refuse the family's access tokens without waiting for them to
		// expire.
		return l.recordRevocation(ctx, &rec.Family)
	})
	if rec.ID != id {
		return nil, err
	}
	f := rec.Family
	return &f, err
}

// maxRefLen bounds the references FamilyByRef reads; the gateway's are
// under 100 characters.
const maxRefLen = 256

// newRef returns the reference of family id: the ID sealed, with a random
// nonce, so that it tells nothing but to this gateway.
func (l *Ledger) newRef(id string) (string, error) {
	sealed, err := l.sealer.Seal([]byte(id), l.refData())
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// refData binds references to this gateway's families.
func (l *Ledger) refData() []byte {
	return []byte("family reference\x00" + l.dir(kindFamilies))
}

// FamilyByRef returns the family whose reference (Family.Ref) is ref, as
// an access token carries it, or ErrNotFound.
func (l *Ledger) FamilyByRef(ctx context.Context, ref string) (*Family, error) {
	if ref == "" || len(ref) > maxRefLen {
		return nil, ErrNotFound
	}
	sealed, err := base64.RawURLEncoding.Strict().DecodeString(ref)
	if err != nil {
		return nil, ErrNotFound
	}
	id, err := l.sealer.Open(sealed, l.refData())
	if err != nil {
		return nil, ErrNotFound
	}
	f, err := l.Family(ctx, string(id))
	if err != nil {
		return nil, err
	}
	if f.Ref != ref {
		return nil, ErrNotFound
	}
	return f, nil
}

// FamilyIDOf returns the family ID a refresh token embeds, and whether the
// token has the form of one this package issues. It does not tell whether
// the token is valid.
func FamilyIDOf(refreshToken string) (string, bool) {
	id, secret, ok := strings.Cut(refreshToken, ".")
	if !ok || !validFamilyID(id) || !isSecret(secret) {
		return "", false
	}
	return id, true
}

func validFamilyID(id string) bool {
	return id != "" && len(id) <= maxFamilyIDLen && isBase64URL(id)
}

// familyKeyBytes is the size of a family's MAC key.
const familyKeyBytes = 32

// A token's secret is its serial number (8 bytes, big-endian) and the
// first macBytes of its MAC: secretBytes in all, so refresh tokens keep the
// shape of the other secrets.
const (
	serialBytes = 8
	macBytes    = secretBytes - serialBytes // 192 bits
)

// tokenOf returns the refresh token number serial of family id.
func tokenOf(macKey []byte, id string, serial uint64) string {
	var secret [secretBytes]byte
	binary.BigEndian.PutUint64(secret[:serialBytes], serial)
	copy(secret[serialBytes:], tokenMAC(macKey, id, serial))
	return id + "." + base64.RawURLEncoding.EncodeToString(secret[:])
}

// tokenMAC is the MAC of token number serial of family id; the ID is
// covered too, though each family has its own key, so that a secret means
// one token only.
func tokenMAC(macKey []byte, id string, serial uint64) []byte {
	m := hmac.New(sha256.New, macKey)
	var n [serialBytes]byte
	binary.BigEndian.PutUint64(n[:], serial)
	m.Write([]byte("refresh token\x00"))
	m.Write([]byte(id))
	m.Write(n[:])
	return m.Sum(nil)[:macBytes]
}

// issued checks that rec, stored at key, issued refreshToken (whose family
// ID the caller found to be rec's), and returns the family's MAC key and
// the token's number. A token it did not issue is ErrNotFound: a secret
// whose MAC does not match, or a number beyond the current one.
func (l *Ledger) issued(rec *familyRecord, key, refreshToken string) (macKey []byte, serial uint64, err error) {
	id, encoded, _ := strings.Cut(refreshToken, ".")
	if rec.ID != id {
		return nil, 0, errors.New("grants: a family record is stored under another family's key; the storage is corrupted")
	}
	var secret [secretBytes]byte
	if n, err := base64.RawURLEncoding.Strict().Decode(secret[:], []byte(encoded)); err != nil || n != secretBytes {
		return nil, 0, ErrNotFound
	}
	if len(rec.SealedKey) == 0 {
		// Stored by a build that kept the token's hash instead: it cannot
		// tell its tokens from made-up ones, so it accepts none, and the
		// client authorizes again.
		return nil, 0, ErrNotFound
	}
	macKey, err = l.open(key, rec.SealedKey)
	if err != nil {
		return nil, 0, fmt.Errorf("grants: opening a family's key: %w", err)
	}
	serial = binary.BigEndian.Uint64(secret[:serialBytes])
	if !hmac.Equal(secret[serialBytes:], tokenMAC(macKey, id, serial)) || serial > rec.Serial {
		return nil, 0, ErrNotFound
	}
	return macKey, serial, nil
}
