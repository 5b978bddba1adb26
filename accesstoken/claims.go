package accesstoken

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of an access token (RFC 9068 §2.2), plus the
// reference of the refresh family it was issued from.
type Claims struct {
	Issuer   string // iss: the issuer of the MCP server's authorization endpoint
	Subject  string // sub: the resolved user
	Audience string // aud: the MCP server's canonical resource URI
	Scope    string // scope: space-separated granted scopes
	ClientID string // client_id: the MCP client the token was issued to
	ID       string // jti: unique per token; Issue fills it when empty
	// ref: the refresh family's opaque reference (never its ID, which its
	// refresh tokens show), so that revoking the family refuses the token
	FamilyRef string
	// gty: the grant the token was issued by, set for grants without a
	// user ("client_credentials", whose Subject is the client ID, as RFC
	// 9068 §2.2 has it), so that no user's token can pass for one of
	// them; empty for the user's grants
	GrantType string

	IssuedAt  time.Time // iat; Issue uses the current time when zero
	NotBefore time.Time // nbf; Issue uses IssuedAt when zero
	ExpiresAt time.Time // exp; required
}

// wireClaims is the JSON form of Claims. aud is a single string, as RFC
// 7519 §4.1.3 allows, because each token is for exactly one MCP server.
type wireClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  string           `json:"aud"`
	Scope     string           `json:"scope,omitempty"`
	ClientID  string           `json:"client_id"`
	ID        string           `json:"jti"`
	FamilyRef string           `json:"ref,omitempty"`
	GrantType string           `json:"gty,omitempty"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
}

func toWire(c *Claims) *wireClaims {
	return &wireClaims{
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		Audience:  c.Audience,
		Scope:     c.Scope,
		ClientID:  c.ClientID,
		ID:        c.ID,
		FamilyRef: c.FamilyRef,
		GrantType: c.GrantType,
		IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
		NotBefore: jwt.NewNumericDate(c.NotBefore),
		ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
	}
}

// claims converts verified wire claims, with times in UTC; the caller has
// checked that the time claims are present.
func (w *wireClaims) claims() Claims {
	return Claims{
		Issuer:    w.Issuer,
		Subject:   w.Subject,
		Audience:  w.Audience,
		Scope:     w.Scope,
		ClientID:  w.ClientID,
		ID:        w.ID,
		FamilyRef: w.FamilyRef,
		GrantType: w.GrantType,
		IssuedAt:  w.IssuedAt.UTC(),
		NotBefore: w.NotBefore.UTC(),
		ExpiresAt: w.ExpiresAt.UTC(),
	}
}

// The jwt.Claims interface. The Verifier validates the claims itself, so
// that it can tell the caller exactly what is wrong; these only satisfy the
// parser.

func (w *wireClaims) GetExpirationTime() (*jwt.NumericDate, error) { return w.ExpiresAt, nil }
func (w *wireClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return w.IssuedAt, nil }
func (w *wireClaims) GetNotBefore() (*jwt.NumericDate, error)      { return w.NotBefore, nil }
func (w *wireClaims) GetIssuer() (string, error)                   { return w.Issuer, nil }
func (w *wireClaims) GetSubject() (string, error)                  { return w.Subject, nil }
func (w *wireClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{w.Audience}, nil
}

// Errors a Verifier returns, wrapped in a *VerifyError. Their messages are
// fit for the error_description of an invalid_token challenge (RFC 6750
// §3): they never contain any part of the token.
var (
	ErrMalformed    = errors.New("the access token is malformed")
	ErrBadSignature = errors.New("the access token's signature is invalid")
	ErrUnknownKey   = errors.New("the access token is signed with a key this gateway does not have; authorize again")
	ErrExpired      = errors.New("the access token expired; refresh it or authorize again")
	ErrNotYetValid  = errors.New("the access token is not valid yet; check the clocks")
	ErrRevoked      = errors.New("the access token was revoked; authorize again")
)

// VerifyError is the error of a refused token: Err is one of the sentinel
// errors above, Detail says more without quoting the token.
type VerifyError struct {
	Err    error
	Detail string
}

// Error returns a description fit for an error_description.
func (e *VerifyError) Error() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

// Unwrap returns the sentinel error, for errors.Is.
func (e *VerifyError) Unwrap() error { return e.Err }

func refuse(err error, detail string) *VerifyError {
	return &VerifyError{Err: err, Detail: detail}
}
