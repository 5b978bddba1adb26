package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	// Narrowed are access tokens narrowed from this grant to the scopes
	// granted to a client for one MCP server: one per server and scope
	// set, at most maxNarrowed. They are secret and sealed with Token. A
	// new sign-in starts without them.
	Narrowed []*NarrowedToken `json:"-"`
}

// maxNarrowed bounds the narrowed tokens kept in one grant: a user's
// clients rarely hold more than a few scope sets of a few servers, and a
// grant record must not grow with every set ever asked for.
const maxNarrowed = 16

// NarrowedToken is an access token the downstream server issued for a
// narrower scope than the grant's, by a refresh (RFC 6749 §6) or a token
// exchange (RFC 8693).
type NarrowedToken struct {
	// Server is the Narrowing's key it was obtained for: the MCP server's
	// name.
	Server string
	// Token is the access token, its type and expiry; never a refresh
	// token, which stays the grant's.
	Token *oauth2.Token
	// Scopes are the downstream scopes asked for, sorted and
	// space-separated: a token asked for another set does not serve.
	Scopes string
	// IssuedAt is when it was obtained.
	IssuedAt time.Time
}

// refreshed records next, obtained by a refresh at now, as g's token, and
// the scopes the downstream server says it granted, if it says.
func (g *Grant) refreshed(next *oauth2.Token, now time.Time) {
	g.Token, g.RefreshedAt = next, now
	if s, ok := next.Extra("scope").(string); ok && s != "" {
		g.Scopes = s
	}
}

// narrowedFor returns g's narrowed token for server and scopes (sorted,
// space-separated), or nil.
func (g *Grant) narrowedFor(server, scopes string) *NarrowedToken {
	for _, n := range g.Narrowed {
		if n != nil && n.Token != nil && n.Server == server && n.Scopes == scopes {
			return n
		}
	}
	return nil
}

// keepNarrowed adds nt to g's narrowed tokens in place of one for the same
// server and scopes. Tokens expired at now are dropped, and then, beyond
// maxNarrowed, the ones obtained first: a dropped token costs one
// narrowing again when it is next asked for.
func (g *Grant) keepNarrowed(nt *NarrowedToken, now time.Time) {
	kept := make([]*NarrowedToken, 0, len(g.Narrowed)+1)
	for _, n := range g.Narrowed {
		switch {
		case n == nil || n.Token == nil:
		case n.Server == nt.Server && n.Scopes == nt.Scopes:
		case !n.Token.Expiry.IsZero() && !now.Before(n.Token.Expiry):
		default:
			kept = append(kept, n)
		}
	}
	if over := len(kept) + 1 - maxNarrowed; over > 0 {
		slices.SortStableFunc(kept, func(a, b *NarrowedToken) int { return a.IssuedAt.Compare(b.IssuedAt) })
		kept = slices.Delete(kept, 0, over)
	}
	g.Narrowed = append(kept, nt)
}

// grantRecord is a Grant as stored.
type grantRecord struct {
	Grant
	SealedToken []byte `json:"token_sealed"`
}

// tokenFields is the part of an oauth2.Token the gateway keeps, and the
// grant's narrowed tokens: everything that is sealed.
type tokenFields struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	// Narrowed is named anew since narrowed tokens are kept per server and
	// scope set: the former "narrowed", one per server, is ignored, and
	// each of its tokens is obtained again when it is next needed.
	Narrowed []narrowedFields `json:"narrowed_tokens,omitempty"`
}

// narrowedFields is a NarrowedToken as sealed.
type narrowedFields struct {
	Server      string    `json:"server"`
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
	for _, n := range g.Narrowed {
		if n == nil || n.Token == nil {
			continue
		}
		fields.Narrowed = append(fields.Narrowed, narrowedFields{
			Server:      n.Server,
			AccessToken: n.Token.AccessToken,
			TokenType:   n.Token.TokenType,
			Expiry:      n.Token.Expiry,
			Scopes:      n.Scopes,
			IssuedAt:    n.IssuedAt,
		})
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
	for _, n := range t.Narrowed {
		g.Narrowed = append(g.Narrowed, &NarrowedToken{
			Server:   n.Server,
			Token:    &oauth2.Token{AccessToken: n.AccessToken, TokenType: n.TokenType, Expiry: n.Expiry},
			Scopes:   n.Scopes,
			IssuedAt: n.IssuedAt,
		})
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
