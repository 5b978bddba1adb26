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
	// Issuer is the downstream authorization server the grant comes from.
	// A Broker of another issuer treats the grant as absent (a user of
	// one issuer is not the user of the same name at another); Broker.Put
	// sets it. Grants stored before it was recorded have none and serve
	// any Broker, which then records its own at the next write.
	Issuer string `json:"issuer,omitempty"`
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
	// Narrowed are access tokens narrowed from this grant to one MCP
	// server's scopes, by the Narrowing's key. They are secret and sealed
	// with Token. A new sign-in starts without them.
	Narrowed map[string]*NarrowedToken `json:"-"`
}

// NarrowedToken is an access token the downstream server issued for a
// narrower scope than the grant's, by a refresh (RFC 6749 §6).
type NarrowedToken struct {
	// Token is the access token, its type and expiry; never a refresh
	// token, which stays the grant's.
	Token *oauth2.Token
	// Scopes are the downstream scopes asked for, space-separated: a token
	// asked for another set does not serve.
	Scopes string
	// IssuedAt is when it was obtained.
	IssuedAt time.Time
}

// grantRecord is a Grant as stored.
type grantRecord struct {
	Grant
	SealedToken []byte `json:"token_sealed"`
}

// tokenFields is the part of an oauth2.Token the gateway keeps, and the
// grant's narrowed tokens: everything that is sealed.
type tokenFields struct {
	AccessToken  string                    `json:"access_token"`
	TokenType    string                    `json:"token_type,omitempty"`
	RefreshToken string                    `json:"refresh_token,omitempty"`
	Expiry       time.Time                 `json:"expiry,omitzero"`
	Narrowed     map[string]narrowedFields `json:"narrowed,omitempty"`
}

// narrowedFields is a NarrowedToken as sealed.
type narrowedFields struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type,omitempty"`
	Expiry      time.Time `json:"expiry,omitzero"`
	Scopes      string    `json:"scopes"`
	IssuedAt    time.Time `json:"issued_at,omitzero"`
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
	fields := tokenFields{
		AccessToken:  g.Token.AccessToken,
		TokenType:    g.Token.TokenType,
		RefreshToken: g.Token.RefreshToken,
		Expiry:       g.Token.Expiry,
	}
	for key, n := range g.Narrowed {
		if n == nil || n.Token == nil {
			continue
		}
		if fields.Narrowed == nil {
			fields.Narrowed = make(map[string]narrowedFields, len(g.Narrowed))
		}
		fields.Narrowed[key] = narrowedFields{
			AccessToken: n.Token.AccessToken,
			TokenType:   n.Token.TokenType,
			Expiry:      n.Token.Expiry,
			Scopes:      n.Scopes,
			IssuedAt:    n.IssuedAt,
		}
	}
	plain, err := json.Marshal(fields)
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
	for key, n := range t.Narrowed {
		if g.Narrowed == nil {
			g.Narrowed = make(map[string]*NarrowedToken, len(t.Narrowed))
		}
		g.Narrowed[key] = &NarrowedToken{
			Token:    &oauth2.Token{AccessToken: n.AccessToken, TokenType: n.TokenType, Expiry: n.Expiry},
			Scopes:   n.Scopes,
			IssuedAt: n.IssuedAt,
		}
	}
	return &g, nil
}

// grantKey is the storage key (and lock name) of the user's grant.
func (l *Ledger) grantKey(user string) string {
	return l.key(kindGrants, user)
}

// CountGrants returns how many users have a stored downstream grant (dead
// ones included, until they sign in again). It lists keys without reading
// the records.
func (l *Ledger) CountGrants(ctx context.Context) (int, error) {
	keys, err := l.list(ctx, kindGrants)
	return len(keys), err
}
