package grants

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
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

	CreatedAt time.Time `json:"created_at,omitzero"`
	RotatedAt time.Time `json:"rotated_at,omitzero"`
	// ExpiresAt ends the family whatever its rotations; zero never does.
	ExpiresAt time.Time `json:"expires_at,omitzero"`

	Revoked       bool   `json:"revoked,omitempty"`
	RevokedReason string `json:"revoked_reason,omitempty"`

	cursor string // its place in a Families listing
}

// familyRecord is a Family as stored, with its token state.
type familyRecord struct {
	Family
	// CurrentHash and PreviousHash are the SHA-256 of the current refresh
	// token and of the one it replaced.
	CurrentHash  []byte `json:"current_hash"`
	PreviousHash []byte `json:"previous_hash,omitempty"`
	// CurrentSealed is the current token itself, sealed: during the grace
	// window a caller presenting the previous token is handed it again.
	CurrentSealed []byte `json:"current_sealed"`
}

// StartFamily stores a new refresh-token family and returns its first
// refresh token. An empty f.ID is set to a random one; a given ID must be 1
// to 64 base64url characters and not in use. A zero CreatedAt is set to now
// and a zero RotatedAt to CreatedAt.
//
// A refresh token is opaque to clients: the family ID, a dot, and 256 random
// bits (base64url).
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
	key := l.key(kindFamilies, f.ID)
	rec := familyRecord{Family: *f}
	token := newRefreshToken(f.ID)
	if err := rec.setCurrent(l, key, token); err != nil {
		return "", err
	}
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
	return token, nil
}

// Rotate redeems refreshToken and returns its family and the refresh token
// to hand out next. Under the family's lock, with constant-time
// comparisons:
//
//   - the family's current token is replaced by a new one, which is
//     returned;
//   - the token it replaced, presented within grace of the rotation (a
//     client racing two refreshes), returns the current token, so both
//     callers end up holding the same valid token;
//   - any other token of the family (the replaced one after grace, an older
//     one, a wrong secret) revokes the family: ErrRefreshReused, returned
//     with the revoked family;
//   - a revoked family is ErrRevoked, an expired one ErrExpired, and an
//     unknown or malformed token ErrNotFound.
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
		if rec.ID != id {
			return errors.New("grants: a family record is stored under another family's key; the storage is corrupted")
		}
		now := l.now()
		switch {
		case rec.Revoked:
			return ErrRevoked
		case expired(rec.ExpiresAt, now):
			return ErrExpired
		}
		sum := sha256.Sum256([]byte(refreshToken))
		isCurrent := subtle.ConstantTimeCompare(sum[:], rec.CurrentHash) == 1
		isPrevious := len(rec.PreviousHash) > 0 && subtle.ConstantTimeCompare(sum[:], rec.PreviousHash) == 1
		switch {
		case isCurrent:
			next = newRefreshToken(id)
			rec.PreviousHash = rec.CurrentHash
			if err := rec.setCurrent(l, key, next); err != nil {
				return err
			}
			rec.RotatedAt = now
			return l.put(ctx, kindFamilies, key, &rec)
		case isPrevious && now.Sub(rec.RotatedAt) <= grace:
			current, err := l.open(key, rec.CurrentSealed)
			if err != nil {
				return fmt.Errorf("grants: opening a family's current refresh token: %w", err)
			}
			next = string(current)
			return nil
		default:
			rec.Revoked, rec.RevokedReason = true, "refresh token reused"
			if err := l.put(ctx, kindFamilies, key, &rec); err != nil {
				return fmt.Errorf("%w, but recording the revocation failed: %w", ErrRefreshReused, err)
			}
			if err := l.recordRevocation(ctx, id); err != nil {
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
// refreshes again. An unknown family is ErrNotFound; revoking a revoked
// family keeps its first reason.
func (l *Ledger) RevokeFamily(ctx context.Context, id, reason string) error {
	if !validFamilyID(id) {
		return ErrNotFound
	}
	key := l.key(kindFamilies, id)
	return l.locked(ctx, key, func() error {
		var rec familyRecord
		if err := l.get(ctx, kindFamilies, key, &rec); err != nil {
			return err
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
		return l.recordRevocation(ctx, id)
	})
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

func newRefreshToken(familyID string) string {
	return familyID + "." + randomString(secretBytes)
}

// setCurrent makes token the family's current token.
func (rec *familyRecord) setCurrent(l *Ledger, key, token string) error {
	sealed, err := l.seal(key, []byte(token))
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(token))
	rec.CurrentHash, rec.CurrentSealed = sum[:], sealed
	return nil
}
