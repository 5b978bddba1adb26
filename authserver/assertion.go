package authserver

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/jwk"
)

// AssertionType is the client_assertion_type of private_key_jwt client
// authentication (RFC 7523 §2.2).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Bounds of client assertions.
const (
	// maxAssertionBytes bounds a client assertion; an RS512 assertion
	// with a few claims is under 1 KiB.
	maxAssertionBytes = 8 << 10
	// MaxAssertionLifetime is how far in the future a client assertion's
	// exp may lie: an assertion is made for one request, and its jti is
	// remembered (across instances, in storage) until it expires.
	MaxAssertionLifetime = 10 * time.Minute
	// assertionLeeway allows for clocks that disagree a little.
	assertionLeeway = 30 * time.Second
	// maxJTIBytes bounds the jti kept for replay detection.
	maxJTIBytes = 256
)

// AssertionAlgorithms are the signature algorithms a client assertion may
// use: asymmetric ones only (a shared-secret HS256 assertion would be a
// client secret by another name), never none.
var AssertionAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// ClientKeys are the public keys that verify a configured client's
// assertions: a key given in the config, or the keys of a JWKS URL the
// client publishes (fetched on first use, again after jwksTTL, and at
// once, at most every jwksRefetch, for a kid it does not hold). It is safe
// for concurrent use.
type ClientKeys struct {
	// Key is the client's public key (*rsa.PublicKey, *ecdsa.PublicKey or
	// ed25519.PublicKey), whatever kid an assertion names.
	Key crypto.PublicKey
	// JWKSURL is where the client publishes its keys, when Key is nil.
	JWKSURL string
	// Discover finds JWKSURL when it is empty (an identity provider's
	// keys, by its metadata): on first use, and again no sooner than
	// jwksRefetch after a failure.
	Discover func(ctx context.Context, hc *http.Client) (string, error)
	// HTTPClient fetches JWKSURL; nil means a client with a 10 second
	// timeout.
	HTTPClient *http.Client

	mu           sync.Mutex
	keys         map[string]jwk.Key
	fetchedAt    time.Time
	discoveredAt time.Time
}

const (
	jwksTTL      = 5 * time.Minute
	jwksRefetch  = 30 * time.Second
	maxJWKSBytes = 64 << 10
)

// key returns the public key that verifies an assertion naming kid.
func (k *ClientKeys) key(ctx context.Context, kid string, now time.Time) (crypto.PublicKey, error) {
	if k.Key != nil {
		return k.Key, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.JWKSURL == "" && k.Discover != nil && (k.discoveredAt.IsZero() || now.Sub(k.discoveredAt) >= jwksRefetch) {
		k.discoveredAt = now
		u, err := k.Discover(ctx, k.httpClient())
		if err != nil {
			return nil, err
		}
		k.JWKSURL = u
	}
	if k.JWKSURL == "" {
		return nil, errors.New("no key is configured for this client")
	}
	key, ok := k.pick(kid)
	if age := now.Sub(k.fetchedAt); k.keys == nil || age >= jwksTTL || (!ok && age >= jwksRefetch) {
		if err := k.fetch(ctx, now); err != nil {
			if !ok {
				return nil, err
			}
			// Keep verifying with the keys fetched before while the URL
			// does not answer.
		} else {
			key, ok = k.pick(kid)
		}
	}
	if !ok {
		return nil, fmt.Errorf("the client's JWKS has no key %q", kid)
	}
	return key.PublicKey()
}

// pick returns the key named kid, or the only key when the assertion
// names none.
func (k *ClientKeys) pick(kid string) (jwk.Key, bool) {
	if key, ok := k.keys[kid]; ok {
		return key, true
	}
	if kid == "" && len(k.keys) == 1 {
		for _, key := range k.keys {
			return key, true
		}
	}
	return jwk.Key{}, false
}

func (k *ClientKeys) httpClient() *http.Client {
	if k.HTTPClient == nil {
		return &http.Client{Timeout: 10 * time.Second}
	}
	return k.HTTPClient
}

// fetch reads the client's JWKS; k.mu is held.
func (k *ClientKeys) fetch(ctx context.Context, now time.Time) error {
	hc := k.httpClient()
	// Tried again no sooner than jwksRefetch, success or not.
	k.fetchedAt = now
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.JWKSURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("fetching the client's JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching the client's JWKS: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("reading the client's JWKS: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("the client's JWKS is larger than %d bytes", maxJWKSBytes)
	}
	keys, err := jwk.ParseSet(body)
	if err != nil {
		return fmt.Errorf("the client's JWKS: %w", err)
	}
	k.keys = keys
	return nil
}

// assertion is what a verified client assertion says.
type assertion struct {
	ClientID  string
	ID        string // jti
	ExpiresAt time.Time
}

// assertionRule is what a client assertion must satisfy.
type assertionRule struct {
	// ClientID is the client it must be issued by and about (iss and
	// sub).
	ClientID string
	// Audiences are the aud values accepted, any one of which it must
	// carry: the token endpoint's URL (RFC 7523 §3) and the issuer
	// identifier (which RFC 7523bis prefers and the TypeScript SDK sends).
	Audiences []string
	// Key returns the key of the kid the assertion names.
	Key func(kid string) (crypto.PublicKey, error)
	Now time.Time
}

// assertionSubject reads the client ID an assertion is about without
// verifying it, to find the client whose key verifies it: a request may
// omit client_id (RFC 7523 §3).
func assertionSubject(raw string) (string, error) {
	if len(raw) > maxAssertionBytes {
		return "", fmt.Errorf("the client assertion is larger than %d bytes", maxAssertionBytes)
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &claims); err != nil {
		return "", errors.New("the client assertion is not a JWT")
	}
	if claims.Subject == "" {
		return "", errors.New("the client assertion has no sub")
	}
	return claims.Subject, nil
}

// verifyAssertion checks a client assertion against rule (RFC 7523 §3):
// an asymmetric signature by the client's key; iss and sub the client ID;
// aud one of the accepted audiences; exp present, not passed and at most
// MaxAssertionLifetime ahead; nbf and iat, when present, not in the
// future; a jti. Replays are the caller's to refuse, with the jti.
func verifyAssertion(raw string, rule assertionRule) (*assertion, error) {
	if len(raw) > maxAssertionBytes {
		return nil, fmt.Errorf("the client assertion is larger than %d bytes", maxAssertionBytes)
	}
	var claims jwt.RegisteredClaims
	tok, err := assertionParser(rule.Now).ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return rule.Key(kid)
	})
	if err := jwtRefusal("the client assertion", "the client's key", "make one per request", tok, err); err != nil {
		return nil, err
	}
	switch {
	case claims.Issuer != rule.ClientID || claims.Subject != rule.ClientID:
		return nil, errors.New("the client assertion's iss and sub must both be the client ID")
	case !slices.ContainsFunc(claims.Audience, func(a string) bool { return slices.Contains(rule.Audiences, a) }):
		return nil, errors.New("the client assertion is for another audience: its aud must be this server's token endpoint or issuer")
	case claims.ExpiresAt.Time.After(rule.Now.Add(MaxAssertionLifetime)):
		return nil, fmt.Errorf("the client assertion's exp is more than %v ahead; make one per request", MaxAssertionLifetime)
	case claims.ID == "":
		return nil, errors.New("the client assertion has no jti")
	case len(claims.ID) > maxJTIBytes:
		return nil, fmt.Errorf("the client assertion's jti is longer than %d bytes", maxJTIBytes)
	}
	return &assertion{ClientID: rule.ClientID, ID: claims.ID, ExpiresAt: claims.ExpiresAt.Time}, nil
}

// assertionParser parses the JWTs that clients and identity providers
// assert to this server: signed with one of AssertionAlgorithms, exp
// required, iat checked, and the clocks' leeway at time now.
func assertionParser(now time.Time) *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods(AssertionAlgorithms),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(assertionLeeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
}

// jwtRefusal turns the error of an assertionParser into a refusal the
// client can act on, or nil for none. what names the JWT ("the client
// assertion"), keysOf whose keys sign it and renew how to get another once
// it has expired. tok is nil when the input was not a JWT at all.
func jwtRefusal(what, keysOf, renew string, tok *jwt.Token, err error) error {
	if err == nil {
		return nil
	}
	alg := ""
	if tok != nil {
		alg, _ = tok.Header["alg"].(string)
	}
	switch {
	case alg != "" && !slices.Contains(AssertionAlgorithms, alg):
		return fmt.Errorf("%s's alg %q is not accepted; it must be signed with one of %s", what, truncate(alg, 16), strings.Join(AssertionAlgorithms, ", "))
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%s has expired; %s", what, renew)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fmt.Errorf("%s has no exp", what)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fmt.Errorf("%s is not valid yet (nbf or iat in the future); check the clocks", what)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fmt.Errorf("%s's signature does not verify with %s", what, keysOf)
	}
	return fmt.Errorf("%s is invalid: %w", what, err)
}

// authenticateAssertion authenticates a client by private_key_jwt: a
// client of the config with keys, its assertion verified and its jti not
// used before on any instance. Failures count towards the limit of failed
// authentications of the client from the request's address.
func (e *Edge) authenticateAssertion(ctx context.Context, s *Server, r *http.Request, form url.Values) (*grants.Client, *oauthError) {
	if _, _, basic := r.BasicAuth(); basic || form.Has("client_secret") {
		return nil, errInvalidRequest("use one client authentication method, not both a client assertion and a client secret")
	}
	if form.Get("client_assertion_type") != AssertionType {
		return nil, errInvalidClient("client_assertion_type must be " + AssertionType)
	}
	raw := form.Get("client_assertion")
	id, err := assertionSubject(raw)
	if err != nil {
		return nil, errInvalidClient(err.Error())
	}
	if form.Has("client_id") && form.Get("client_id") != id {
		return nil, errInvalidClient("client_id differs from the client assertion's sub")
	}
	g := s.Gateway()
	client, m := g.Clients[id], g.Machines[id]
	if client == nil || m == nil || m.Keys == nil {
		return nil, errInvalidClient("this client has no key registered with the gateway for private_key_jwt")
	}
	// Failures are counted per address and client, not per client alone
	// as for secrets: the bucket is charged before the assertion is
	// verified, so a count per client would let anyone who knows the
	// client ID lock the client out with junk assertions. A signature
	// cannot be guessed, so one address's allowance gives nothing away,
	// and the token endpoint's limit per address still bounds the work.
	limitKey := e.clientAddress(r) + " " + client.ID
	if t := take(e.limits.clientAuth, limitKey, "client authentication"); t != nil {
		e.count(s, RateLimited)
		e.audit("request refused", s, client.ID, "", "", zap.String("reason", "too many failed client authentications"),
			zap.String("address", e.clientAddress(r)))
		return nil, t.oauthError()
	}
	now := e.opts.Now()
	a, err := verifyAssertion(raw, assertionRule{
		ClientID:  client.ID,
		Audiences: []string{s.Issuer + "/token", s.Issuer},
		Key:       func(kid string) (crypto.PublicKey, error) { return m.Keys.key(ctx, kid, now) },
		Now:       now,
	})
	if err != nil {
		e.audit("client authentication failed", s, client.ID, "", "", zap.String("reason", err.Error()))
		return nil, errInvalidClient(err.Error())
	}
	switch err := g.Ledger.UseAssertion(ctx, client.ID, a.ID, a.ExpiresAt.Add(assertionLeeway)); {
	case errors.Is(err, grants.ErrAssertionReplayed):
		e.audit("client authentication failed", s, client.ID, "", "", zap.String("reason", "client assertion replayed"))
		return nil, errInvalidClient("the client assertion was used before; sign a new one (with a new jti) for each request")
	case err != nil:
		e.log.Error("recording a client assertion", zap.String("server", s.Name), zap.Error(err))
		return nil, errServer("the gateway's storage is unavailable; retry with a new assertion")
	}
	e.limits.clientAuth.Refund(limitKey)
	return client, nil
}
