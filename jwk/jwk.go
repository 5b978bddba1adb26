// Package jwk reads and writes the public JSON Web Keys (RFC 7517, RFC 7518)
// that sign JWTs: the gateway publishes its own signing keys with it and
// verifies the downstream provider's ID tokens with it.
//
// It is deliberately narrow. Only public signature keys are handled: ECDSA on
// P-256, P-384 and P-521, RSA of at least 2048 bits, and Ed25519. A key that
// carries private members, symmetric key material, a coordinate of the wrong
// length, a point off its curve or an algorithm that does not fit its type is
// refused rather than repaired, because every such key is either a mistake or
// an attack, and a verifier has no business guessing which.
package jwk

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// Key types (RFC 7518 §6.1, RFC 8037 §2).
const (
	TypeEC  = "EC"
	TypeRSA = "RSA"
	TypeOKP = "OKP"
)

const (
	// MinRSABits is the smallest RSA modulus PublicKey accepts, the floor
	// RFC 7518 §3.3 sets for RS256.
	MinRSABits = 2048
	// MaxRSABits is the largest RSA modulus PublicKey accepts: verification
	// cost grows with the modulus, and nobody signs tokens with bigger keys.
	MaxRSABits = 8192
)

// b64 is the base64url encoding without padding that every JWK member uses
// (RFC 7515 §2). Strict decoding refuses non-zero trailing bits, so each
// value has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// Key is a public JSON Web Key. Only the members a public signature key of
// the supported types can carry are kept; others, such as x5c, are ignored
// when decoding.
//
// A Key decoded from JSON remembers whether the JSON carried private key
// members (d, p, q, dp, dq, qi, oth, k), and PublicKey refuses it if so.
type Key struct {
	Kty string `json:"kty"`           // key type: "EC", "RSA" or "OKP"
	Kid string `json:"kid,omitempty"` // key ID
	Alg string `json:"alg,omitempty"` // intended algorithm, e.g. "ES256"
	Use string `json:"use,omitempty"` // intended use: "sig" or "enc"
	Crv string `json:"crv,omitempty"` // curve of an EC or OKP key
	X   string `json:"x,omitempty"`   // x coordinate (EC) or public key (OKP)
	Y   string `json:"y,omitempty"`   // y coordinate (EC)
	N   string `json:"n,omitempty"`   // RSA modulus
	E   string `json:"e,omitempty"`   // RSA public exponent

	hasPrivate bool
}

// Set is a JSON Web Key Set (RFC 7517 §5), the document a jwks_uri serves.
type Set struct {
	Keys []Key `json:"keys"`
}

// privateMembers are the members that hold private or symmetric key
// material (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// UnmarshalJSON decodes a JWK. Unlike encoding/json's default, member names
// match exactly (RFC 7517 §4: names are case-sensitive), so "KTY" is not
// "kty"; and the presence of private members is recorded for PublicKey.
func (k *Key) UnmarshalJSON(data []byte) error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return fmt.Errorf("jwk: a key must be a JSON object: %w", err)
	}
	if members == nil {
		return errors.New("jwk: a key must be a JSON object, not null")
	}
	var out Key
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"kty", &out.Kty}, {"kid", &out.Kid}, {"alg", &out.Alg}, {"use", &out.Use},
		{"crv", &out.Crv}, {"x", &out.X}, {"y", &out.Y}, {"n", &out.N}, {"e", &out.E},
	} {
		raw, ok := members[f.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil || bytes.Equal(raw, []byte("null")) {
			return fmt.Errorf("jwk: member %q must be a string", f.name)
		}
	}
	for _, name := range privateMembers {
		if _, ok := members[name]; ok {
			out.hasPrivate = true
		}
	}
	*k = out
	return nil
}

// Public returns the JWK of a public key for signature use. pub is an
// *ecdsa.PublicKey on P-256, P-384 or P-521, an *rsa.PublicKey of at least
// MinRSABits, or an ed25519.PublicKey. alg may be empty; otherwise it must
// fit the key, e.g. "ES256" for P-256.
func Public(kid, alg string, pub crypto.PublicKey) (Key, error) {
	k := Key{Kid: kid, Alg: alg, Use: "sig"}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		crv, _, ok := curveName(p.Curve)
		if !ok {
			return Key{}, errors.New("jwk: unsupported ECDSA curve; use P-256, P-384 or P-521")
		}
		point, err := p.Bytes()
		if err != nil {
			return Key{}, fmt.Errorf("jwk: invalid ECDSA public key: %w", err)
		}
		size := (len(point) - 1) / 2
		k.Kty, k.Crv = TypeEC, crv
		k.X, k.Y = b64.EncodeToString(point[1:1+size]), b64.EncodeToString(point[1+size:])
	case *rsa.PublicKey:
		if p.N == nil || p.E <= 0 {
			return Key{}, errors.New("jwk: invalid RSA public key: it has no modulus or exponent")
		}
		k.Kty = TypeRSA
		k.N = b64.EncodeToString(p.N.Bytes())
		k.E = b64.EncodeToString(big.NewInt(int64(p.E)).Bytes())
	case ed25519.PublicKey:
		k.Kty, k.Crv = TypeOKP, "Ed25519"
		k.X = b64.EncodeToString(p)
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey, *ed25519.PrivateKey:
		return Key{}, fmt.Errorf("jwk: %T is a private key; pass its Public() instead", pub)
	default:
		return Key{}, fmt.Errorf("jwk: unsupported public key type %T; use ECDSA (P-256, P-384, P-521), RSA or Ed25519", pub)
	}
	// The same checks as on the receiving side, so that Public never
	// produces a key that PublicKey would refuse.
	if _, err := k.PublicKey(); err != nil {
		return Key{}, err
	}
	return k, nil
}

// PublicKey returns the key as an *ecdsa.PublicKey, *rsa.PublicKey or
// ed25519.PublicKey. It refuses a key that carried private members, is not
// for signature use, has a member that does not belong to its type, an
// encoding that is not canonical base64url, a coordinate of the wrong length,
// a point not on its curve, an RSA modulus outside [MinRSABits, MaxRSABits],
// an unusual RSA exponent, an unknown kty or crv, or an alg that does not
// fit its type.
func (k Key) PublicKey() (crypto.PublicKey, error) {
	if k.hasPrivate {
		return nil, k.errorf("carries private key material; publish only public keys")
	}
	if k.Use != "" && k.Use != "sig" {
		return nil, k.errorf("is for use %q, not signatures", k.Use)
	}
	if err := checkAlg(k.Kty, k.Crv, k.Alg); err != nil {
		return nil, k.errorf("%w", err)
	}
	switch k.Kty {
	case TypeEC:
		return k.ecdsa()
	case TypeRSA:
		return k.rsa()
	case TypeOKP:
		return k.ed25519()
	case "oct":
		return nil, k.errorf("is a symmetric key; only public keys are accepted")
	case "":
		return nil, k.errorf("has no kty member")
	default:
		return nil, k.errorf("has unsupported kty %q; use EC, RSA or OKP", k.Kty)
	}
}

func (k Key) ecdsa() (*ecdsa.PublicKey, error) {
	if k.N != "" || k.E != "" {
		return nil, k.errorf("is an EC key with RSA members n or e")
	}
	curve, size, ok := curveByName(k.Crv)
	if !ok {
		return nil, k.errorf("has unsupported EC crv %q; use P-256, P-384 or P-521", k.Crv)
	}
	x, err := decodeFixed(k.X, size)
	if err != nil {
		return nil, k.errorf("member x %w", err)
	}
	y, err := decodeFixed(k.Y, size)
	if err != nil {
		return nil, k.errorf("member y %w", err)
	}
	point := make([]byte, 0, 1+2*size)
	point = append(append(append(point, 4), x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, k.errorf("is not a point on %s", k.Crv)
	}
	return pub, nil
}

func (k Key) rsa() (*rsa.PublicKey, error) {
	if k.Crv != "" || k.X != "" || k.Y != "" {
		return nil, k.errorf("is an RSA key with EC members crv, x or y")
	}
	n, err := decodeMinimal(k.N, MaxRSABits/8)
	if err != nil {
		return nil, k.errorf("member n %w", err)
	}
	modulus := new(big.Int).SetBytes(n)
	if bits := modulus.BitLen(); bits < MinRSABits {
		return nil, k.errorf("has %d bits; RSA keys need at least %d", bits, MinRSABits)
	}
	if modulus.Bit(0) == 0 {
		return nil, k.errorf("has an even RSA modulus")
	}
	e, err := decodeMinimal(k.E, 4)
	if err != nil {
		return nil, k.errorf("member e %w", err)
	}
	var exp int64
	for _, b := range e {
		exp = exp<<8 | int64(b)
	}
	// crypto/rsa refuses exponents above 2^31-1; 1 and even exponents
	// are not RSA keys at all.
	if exp < 3 || exp > 1<<31-1 || exp%2 == 0 {
		return nil, k.errorf("has an invalid RSA public exponent")
	}
	return &rsa.PublicKey{N: modulus, E: int(exp)}, nil
}

func (k Key) ed25519() (ed25519.PublicKey, error) {
	if k.Y != "" || k.N != "" || k.E != "" {
		return nil, k.errorf("is an OKP key with members y, n or e")
	}
	if k.Crv != "Ed25519" {
		return nil, k.errorf("has unsupported OKP crv %q; use Ed25519", k.Crv)
	}
	x, err := decodeFixed(k.X, ed25519.PublicKeySize)
	if err != nil {
		return nil, k.errorf("member x %w", err)
	}
	return ed25519.PublicKey(x), nil
}

// Thumbprint returns the key's RFC 7638 SHA-256 thumbprint, base64url
// encoded: a key ID derived from the key itself. It validates the key
// first, so equal thumbprints mean equal public keys.
func (k Key) Thumbprint() (string, error) {
	if _, err := k.PublicKey(); err != nil {
		return "", err
	}
	// The required members in lexicographic order, without whitespace
	// (RFC 7638 §3.2). Validated values are base64url and need no escaping.
	var canonical string
	switch k.Kty {
	case TypeEC:
		canonical = `{"crv":"` + k.Crv + `","kty":"EC","x":"` + k.X + `","y":"` + k.Y + `"}`
	case TypeRSA:
		canonical = `{"e":"` + k.E + `","kty":"RSA","n":"` + k.N + `"}`
	case TypeOKP:
		canonical = `{"crv":"` + k.Crv + `","kty":"OKP","x":"` + k.X + `"}`
	}
	sum := sha256.Sum256([]byte(canonical))
	return b64.EncodeToString(sum[:]), nil
}

// errorf returns an error that names the key by its kid.
func (k Key) errorf(format string, args ...any) error {
	if k.Kid == "" {
		return fmt.Errorf("jwk: key without kid "+format, args...)
	}
	return fmt.Errorf("jwk: key %q "+format, append([]any{k.Kid}, args...)...)
}

// checkAlg refuses an alg that the key type cannot produce, so that a key
// published for one algorithm cannot be used with another. An empty alg
// leaves the choice to the token's header, which the caller must check.
func checkAlg(kty, crv, alg string) error {
	if alg == "" {
		return nil
	}
	var ok bool
	switch kty {
	case TypeEC:
		ok = map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[crv] == alg
	case TypeRSA:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			ok = true
		}
	case TypeOKP:
		ok = crv == "Ed25519" && (alg == "EdDSA" || alg == "Ed25519")
	default:
		return nil // the kty check reports it
	}
	if !ok {
		return fmt.Errorf("has alg %q, which does not fit %s", alg, describe(kty, crv))
	}
	return nil
}

func describe(kty, crv string) string {
	if crv != "" {
		return "kty " + kty + " with crv " + crv
	}
	return "kty " + kty
}

func curveName(c elliptic.Curve) (name string, size int, ok bool) {
	switch c {
	case elliptic.P256():
		return "P-256", 32, true
	case elliptic.P384():
		return "P-384", 48, true
	case elliptic.P521():
		return "P-521", 66, true
	}
	return "", 0, false
}

func curveByName(name string) (c elliptic.Curve, size int, ok bool) {
	switch name {
	case "P-256":
		return elliptic.P256(), 32, true
	case "P-384":
		return elliptic.P384(), 48, true
	case "P-521":
		return elliptic.P521(), 66, true
	}
	return nil, 0, false
}

// decodeFixed decodes a member that must be exactly size octets, as EC
// coordinates must be (RFC 7518 §6.2.1.2).
func decodeFixed(s string, size int) ([]byte, error) {
	if b64.EncodedLen(size) != len(s) {
		return nil, fmt.Errorf("must encode exactly %d octets", size)
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, errors.New("is not canonical base64url without padding")
	}
	return b, nil
}

// decodeMinimal decodes an unsigned integer member, which must use the
// fewest octets (RFC 7518 §6.3.1.1) and at most max of them.
func decodeMinimal(s string, max int) ([]byte, error) {
	if s == "" {
		return nil, errors.New("is missing")
	}
	if len(s) > b64.EncodedLen(max) {
		return nil, fmt.Errorf("is longer than %d octets", max)
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, errors.New("is not canonical base64url without padding")
	}
	if len(b) == 0 || b[0] == 0 {
		return nil, errors.New("has a leading zero octet")
	}
	return b, nil
}
