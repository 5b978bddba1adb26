package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// Grant is the downstream token set the gateway brokers for one user at
// its downstream authorization server.
type Grant struct {
	User string `json:"user"`
	// Token is the downstream token set. It is secret: stored sealed, never
	// in the clear (hence no JSON name).
	Token *oauth2.Token `json:"-"`
	// Scopes are the downstream scopes granted.
	Scopes      string    `json:"scopes,omitempty"`
	CreatedAt   time.Time `json:"created_at,omitzero"`
	RefreshedAt time.Time `json:"refreshed_at,omitzero"`
	// Dead is set once the downstream server refused to refresh the token:
	// the user must sign in again. DeadReason says why.
	Dead       bool   `json:"dead,omitempty"`
	DeadReason string `json:"dead_reason,omitempty"`
}

// grantRecord is a Grant as stored.
type grantRecord struct {
	Grant
	SealedToken []byte `json:"token_sealed"`
}

// tokenFields is the part of an oauth2.Token the gateway keeps.
type tokenFields struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
}

// SaveGrant stores g, replacing the user's earlier grant. A zero CreatedAt
// is set to now. Use Broker.Put instead while a Broker serves the user, so
// that its cache sees the new token.
func (l *Ledger) SaveGrant(ctx context.Context, g *Grant) error {
	if g.User == "" || g.Token == nil {
		return errors.New("grants: a grant needs a user and a token")
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = l.now()
	}
	key := l.key(kindGrants, g.User)
	plain, err := json.Marshal(tokenFields{
		AccessToken:  g.Token.AccessToken,
		TokenType:    g.Token.TokenType,
		RefreshToken: g.Token.RefreshToken,
		Expiry:       g.Token.Expiry,
	})
	if err != nil {
		return fmt.Errorf("grants: encoding a downstream token: %w", err)
	}
	sealed, err := l.seal(key, plain)
	if err != nil {
		return err
	}
	return l.put(ctx, kindGrants, key, &grantRecord{Grant: *g, SealedToken: sealed})
}

// Grant returns the user's downstream grant, or ErrNotFound.
func (l *Ledger) Grant(ctx context.Context, user string) (*Grant, error) {
	if user == "" {
		return nil, ErrNotFound
	}
	key := l.key(kindGrants, user)
	var rec grantRecord
	if err := l.get(ctx, kindGrants, key, &rec); err != nil {
		return nil, err
	}
	if rec.User != user {
		return nil, errors.New("grants: a grant record is stored under another user's key; the storage is corrupted")
	}
	plain, err := l.open(key, rec.SealedToken)
	if err != nil {
		return nil, fmt.Errorf("grants: opening a downstream token: %w", err)
	}
	var t tokenFields
	if err := json.Unmarshal(plain, &t); err != nil {
		return nil, fmt.Errorf("grants: a sealed downstream token is unreadable: %w", err)
	}
	g := rec.Grant
	g.Token = &oauth2.Token{
		AccessToken:  t.AccessToken,
		TokenType:    t.TokenType,
		RefreshToken: t.RefreshToken,
		Expiry:       t.Expiry,
	}
	return &g, nil
}

// grantKey is the storage key (and lock name) of the user's grant.
func (l *Ledger) grantKey(user string) string {
	return l.key(kindGrants, user)
}
