package accesstoken

import (
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenBytes bounds the tokens Verify reads. The gateway's tokens stay
// near 1 KiB even with long scope lists.
const MaxTokenBytes = 8 << 10

// Defaults of VerifierOptions.
const (
	DefaultCacheSize = 10000
	DefaultLeeway    = 30 * time.Second
)

// VerifierOptions configure a Verifier.
type VerifierOptions struct {
	// CacheSize bounds the number of verified tokens remembered. Zero
	// means DefaultCacheSize; a negative value disables the cache.
	CacheSize int
	// Leeway is the clock skew tolerated on nbf and iat, for tokens issued
	// by an instance whose clock runs ahead. Zero means DefaultLeeway; a
	// negative value means none. Expiry gets no leeway: a client holding
	// an expired token refreshes it.
	Leeway time.Duration
	// Now is the clock; nil means the Keyset's.
	Now func() time.Time
}

// Verifier checks the gateway's access tokens on the proxy hot path.
//
// A token that verified is remembered until it expires, so verifying it
// again costs a fast keyed hash, a map lookup and a comparison with the
// remembered token rather than an ECDSA verification. The cache is bounded
// (about a kilobyte per token) and sharded, and so is the set of revoked
// families, so a warm Verify takes no exclusive lock.
//
// A Verifier is safe for concurrent use.
type Verifier struct {
	keys   *Keyset
	parser *jwt.Parser
	leeway time.Duration
	now    func() time.Time
	cache  *cache // nil when disabled

	revoked *revocationSet
}

// NewVerifier returns a Verifier of the tokens k issues.
func NewVerifier(k *Keyset, opts VerifierOptions) *Verifier {
	v := &Verifier{
		keys: k,
		// Claims are validated by Verify itself, to report precisely what
		// is wrong and to give leeway to nbf and iat only. Strict decoding
		// gives each token a single spelling.
		parser:  jwt.NewParser(jwt.WithStrictDecoding(), jwt.WithoutClaimsValidation()),
		leeway:  opts.Leeway,
		now:     opts.Now,
		revoked: newRevocationSet(),
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.now == nil {
		v.now = k.now
	}
	switch {
	case opts.CacheSize == 0:
		v.cache = newCache(DefaultCacheSize)
	case opts.CacheSize > 0:
		v.cache = newCache(opts.CacheSize)
	}
	return v
}

// Verify returns the claims of a valid access token, which the caller owns.
//
// It accepts only tokens signed with ES256 by a key of the Keyset, with typ
// at+jwt, a signature in low-S form, the exp, iat and nbf claims, a
// subject, a time window containing the present and a family that is not
// revoked. The error is a
// *VerifyError wrapping one of ErrMalformed, ErrBadSignature,
// ErrUnknownKey, ErrExpired, ErrNotYetValid or ErrRevoked.
//
// Verify does not check iss and aud: the caller compares them with the MCP
// server it guards.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, refuse(ErrMalformed, "it is empty")
	}
	if len(token) > MaxTokenBytes {
		return nil, refuse(ErrMalformed, "it is longer than 8 KiB")
	}
	now := v.now()
	nowNs := now.UnixNano()

	var h uint64
	if v.cache != nil {
		h = v.cache.hash(token)
		// An expired entry is a miss: the cold path says why it is refused.
		if e := v.cache.get(h, token, nowNs); e != nil {
			switch {
			case e.key.withdrawn.Load():
				// The key is gone from storage; let the cold path
				// explain.
				v.cache.remove(h)
			case v.revoked.revokedAt(e.claims.FamilyRef, nowNs):
				return nil, refuse(ErrRevoked, "")
			default:
				c := e.claims
				return &c, nil
			}
		}
	}

	c, key, err := v.verify(token, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		// A copy, so that the entry does not keep the request's memory.
		v.cache.put(h, &cacheEntry{token: strings.Clone(token), claims: *c, key: key}, nowNs)
	}
	return c, nil
}

// verify checks a token without the cache.
func (v *Verifier) verify(token string, now time.Time) (*Claims, *verifyKey, error) {
	var (
		wc  wireClaims
		key *verifyKey
	)
	_, err := v.parser.ParseWithClaims(token, &wc, func(t *jwt.Token) (any, error) {
		// Checked here, before any key is handed out, rather than with
		// jwt.WithValidMethods, to tell a wrong algorithm from a wrong
		// signature.
		if t.Method != jwt.SigningMethodES256 {
			return nil, refuse(ErrBadSignature, "it is not signed with ES256")
		}
		// (r, n-s) verifies wherever (r, s) does; only the low-S form is
		// the token, so that each token has a single spelling.
		if highS(t.Signature) {
			return nil, refuse(ErrBadSignature, "its signature is not in low-S form")
		}
		if typ, _ := t.Header["typ"].(string); !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
			return nil, refuse(ErrMalformed, "its typ is not at+jwt")
		}
		if _, ok := t.Header["crit"]; ok {
			return nil, refuse(ErrMalformed, "it has critical header parameters")
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, refuse(ErrUnknownKey, "it names no key")
		}
		var err error
		key, err = v.keys.lookup(kid, now)
		if errors.Is(err, ErrUnknownKey) && v.keys.reloadForUnknownKey(kid) {
			key, err = v.keys.lookup(kid, now)
		}
		if err != nil {
			return nil, err
		}
		return key.pub, nil
	})
	if err != nil {
		var ve *VerifyError
		switch {
		case errors.As(err, &ve):
			return nil, nil, ve
		case errors.Is(err, jwt.ErrTokenMalformed):
			return nil, nil, refuse(ErrMalformed, "it cannot be decoded as a JWT")
		case errors.Is(err, jwt.ErrTokenUnverifiable):
			// alg missing, or naming no algorithm the library knows
			return nil, nil, refuse(ErrBadSignature, "it is not signed with ES256")
		default:
			return nil, nil, refuse(ErrBadSignature, "")
		}
	}

	switch {
	case wc.ExpiresAt == nil:
		return nil, nil, refuse(ErrMalformed, "it has no exp claim")
	case wc.IssuedAt == nil:
		return nil, nil, refuse(ErrMalformed, "it has no iat claim")
	case wc.NotBefore == nil:
		return nil, nil, refuse(ErrMalformed, "it has no nbf claim")
	case wc.Subject == "":
		return nil, nil, refuse(ErrMalformed, "it has no sub claim")
	case !now.Before(wc.ExpiresAt.Time):
		return nil, nil, refuse(ErrExpired, "")
	case wc.NotBefore.After(now.Add(v.leeway)):
		return nil, nil, refuse(ErrNotYetValid, "")
	case wc.IssuedAt.After(now.Add(v.leeway)):
		return nil, nil, refuse(ErrNotYetValid, "it was issued in the future")
	case v.revoked.revokedAt(wc.FamilyRef, now.UnixNano()):
		return nil, nil, refuse(ErrRevoked, "")
	}
	c := wc.claims()
	return &c, key, nil
}

// RevokeFamily refuses every token of the refresh family whose reference
// (Claims.FamilyRef) is ref from now until until, which should be past the
// expiry of the last token the family can have issued. Tokens already
// cached are refused too. It costs the same however many families are
// revoked, and nothing when ref is revoked until then already.
func (v *Verifier) RevokeFamily(ref string, until time.Time) {
	if ref == "" {
		return
	}
	v.revoked.revoke(ref, until.UnixNano(), v.now().UnixNano())
}

// familyRevoked reports whether the refresh family whose reference is ref
// is revoked.
func (v *Verifier) familyRevoked(ref string) bool {
	return v.revoked.revokedAt(ref, v.now().UnixNano())
}
