package grants

import (
	"context"
	"encoding/base64"
	"errors"
	"time"
)

// DefaultCodeTTL is how long an authorization code lives when its ExpiresAt
// is left zero. OAuth 2.1 asks for a short lifetime.
const DefaultCodeTTL = time.Minute

// secretBytes is the entropy of codes and refresh tokens: 256 bits.
const secretBytes = 32

// secretLen is the length of a base64url-encoded secret.
var secretLen = base64.RawURLEncoding.EncodedLen(secretBytes)

// Code is the record of a gateway authorization code. The code itself is
// never stored, only its digest.
type Code struct {
	ClientID      string `json:"client_id"`
	RedirectURI   string `json:"redirect_uri"`
	CodeChallenge string `json:"code_challenge"`
	Server        string `json:"server"`
	Resource      string `json:"resource,omitempty"`
	Scopes        string `json:"scopes"`
	User          string `json:"user"`

	IssuedAt   time.Time `json:"issued_at,omitzero"`
	ExpiresAt  time.Time `json:"expires_at"`
	RedeemedAt time.Time `json:"redeemed_at,omitzero"`
	// FamilyID is the refresh-token family issued from this code, recorded
	// when it is redeemed, so a replay can revoke it.
	FamilyID string `json:"family_id,omitempty"`
}

// IssueCode stores c and returns a new authorization code for it: 256
// random bits, base64url. A zero IssuedAt is set to now and a zero
// ExpiresAt to DefaultCodeTTL after IssuedAt.
func (l *Ledger) IssueCode(ctx context.Context, c *Code) (code string, err error) {
	if c.ClientID == "" {
		return "", errors.New("grants: issuing an authorization code without a client ID")
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = l.now()
	}
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = c.IssuedAt.Add(DefaultCodeTTL)
	}
	rec := *c
	rec.RedeemedAt, rec.FamilyID = time.Time{}, ""
	code = randomString(secretBytes)
	if err := l.put(ctx, kindCodes, l.key(kindCodes, code), &rec); err != nil {
		return "", err
	}
	return code, nil
}

// RedeemCode redeems an authorization code exactly once across every
// instance sharing the storage, recording familyID as the refresh-token
// family issued from it.
//
// An unknown code is ErrNotFound, an expired one ErrExpired. A code already
// redeemed returns its record, carrying the FamilyID of the first
// redemption so the caller can revoke what it issued, together with
// ErrCodeReused. Redeemed records stay as tombstones until CodeRetention
// after their expiry, to recognise replays.
func (l *Ledger) RedeemCode(ctx context.Context, code, familyID string) (*Code, error) {
	if !isSecret(code) {
		return nil, ErrNotFound // not one of ours: no need to look
	}
	key := l.key(kindCodes, code)
	var c Code
	err := l.locked(ctx, key, func() error {
		if err := l.get(ctx, kindCodes, key, &c); err != nil {
			return err
		}
		if !c.RedeemedAt.IsZero() {
			return ErrCodeReused
		}
		now := l.now()
		if expired(c.ExpiresAt, now) {
			// Never redeemed, and now it never will be: nothing to keep.
			_ = l.del(ctx, kindCodes, key)
			return ErrExpired
		}
		c.RedeemedAt, c.FamilyID = now, familyID
		return l.put(ctx, kindCodes, key, &c)
	})
	switch {
	case errors.Is(err, ErrCodeReused):
		return &c, err
	case err != nil:
		return nil, err
	}
	return &c, nil
}

// isSecret reports whether s has the form of a code or refresh-token
// secret: 256 bits, base64url.
func isSecret(s string) bool {
	return len(s) == secretLen && isBase64URL(s)
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
