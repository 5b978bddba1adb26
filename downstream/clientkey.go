package downstream

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// assertionLifetime is how long a client assertion is valid: long enough
// for one token request, short enough that a leaked one is soon useless.
const assertionLifetime = time.Minute

// ClientKey is the private key the gateway signs client assertions with
// (private_key_jwt, RFC 7523). The downstream server holds its public key.
type ClientKey struct {
	key    crypto.Signer
	method jwt.SigningMethod
	id     string
}

// ParseClientKey reads a PEM private key (PKCS #8, PKCS #1 RSA or SEC 1
// EC) and picks its signing algorithm: RS256 for RSA (2048 bits or more),
// ES256, ES384 or ES512 for the P-256, P-384 and P-521 curves, EdDSA for
// Ed25519. keyID, when not empty, goes in each assertion's kid header, for
// servers that hold several of the client's keys.
func ParseClientKey(pemData []byte, keyID string) (*ClientKey, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, errors.New("the client key is not PEM: give the PEM text of a private key, e.g. as {file./path/to/key.pem}")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("the client key's PEM block is %q, not a private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)", block.Type)
	}
	if err != nil {
		// The parse error describes the structure, never the key material.
		return nil, fmt.Errorf("the client key does not parse: %w", err)
	}
	ck := &ClientKey{id: keyID}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("the client key is a %d-bit RSA key; use 2048 bits or more", k.N.BitLen())
		}
		ck.key, ck.method = k, jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			ck.method = jwt.SigningMethodES256
		case elliptic.P384():
			ck.method = jwt.SigningMethodES384
		case elliptic.P521():
			ck.method = jwt.SigningMethodES512
		default:
			return nil, errors.New("the client key's elliptic curve is not P-256, P-384 or P-521")
		}
		ck.key = k
	case ed25519.PrivateKey:
		ck.key, ck.method = k, jwt.SigningMethodEdDSA
	default:
		return nil, fmt.Errorf("the client key is a %T; use an RSA, ECDSA or Ed25519 key", key)
	}
	return ck, nil
}

// Algorithm returns the JWS algorithm of the assertions, e.g. "RS256".
func (k *ClientKey) Algorithm() string { return k.method.Alg() }

// Public returns the public half, for registering at the downstream server.
func (k *ClientKey) Public() crypto.PublicKey { return k.key.Public() }

// assertion signs a client assertion: issuer and subject are the client ID,
// the audience is the one the server expects (a single string, not an
// array: some servers accept only that).
func (k *ClientKey) assertion(clientID, audience string, now time.Time) (string, error) {
	t := jwt.NewWithClaims(k.method, jwt.MapClaims{
		"iss": clientID,
		"sub": clientID,
		"aud": audience,
		"jti": rand.Text(),
		"iat": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	})
	if k.id != "" {
		t.Header["kid"] = k.id
	}
	signed, err := t.SignedString(k.key)
	if err != nil {
		return "", fmt.Errorf("signing a client assertion: %w", err)
	}
	return signed, nil
}
