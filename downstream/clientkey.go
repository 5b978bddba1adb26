package downstream

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
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
// (private_key_jwt, RFC 7523). The downstream server holds its public key,
// or a certificate of it.
type ClientKey struct {
	key    crypto.Signer
	method jwt.SigningMethod
	id     string
	// The certificate's thumbprints (RFC 7515 §4.1.7, §4.1.8), when the
	// PEM text holds one.
	x5t, x5tS256 string
}

// ParseClientKey reads a PEM private key (PKCS #8, PKCS #1 RSA or SEC 1
// EC) and picks its signing algorithm: RS256 for RSA (2048 bits or more),
// ES256, ES384 or ES512 for the P-256, P-384 and P-521 curves, EdDSA for
// Ed25519. keyID, when not empty, goes in each assertion's kid header, for
// servers that hold several of the client's keys.
//
// The PEM text may also hold the key's X.509 certificate (a CERTIFICATE
// block, before or after the key, possibly with the rest of its chain):
// each assertion then names it by its SHA-256 and SHA-1 thumbprints in the
// x5t#S256 and x5t headers, as servers that register certificates rather
// than keys (Microsoft Entra ID) require.
func ParseClientKey(pemData []byte, keyID string) (*ClientKey, error) {
	var keyBlock *pem.Block
	var certBlocks []*pem.Block
	for rest := pemData; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		switch block.Type {
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if keyBlock != nil {
				return nil, errors.New("the client key's PEM text holds two private keys; give one")
			}
			keyBlock = block
		case "CERTIFICATE":
			certBlocks = append(certBlocks, block)
		case "EC PARAMETERS":
			// openssl ecparam -genkey writes them before the key.
		default:
			return nil, fmt.Errorf("the client key's PEM text holds a %q block; it may hold a private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) and its CERTIFICATE", block.Type)
		}
	}
	if keyBlock == nil {
		return nil, errors.New("the client key is not a PEM private key: give the PEM text of one, e.g. as {file./path/to/key.pem}")
	}
	var (
		key any
		err error
	)
	switch keyBlock.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(keyBlock.Bytes)
	default:
		key, err = x509.ParseECPrivateKey(keyBlock.Bytes)
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
	if len(certBlocks) > 0 {
		cert, err := ownCertificate(ck.key.Public(), certBlocks)
		if err != nil {
			return nil, err
		}
		sha1Sum, sha256Sum := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
		ck.x5t = base64.RawURLEncoding.EncodeToString(sha1Sum[:])
		ck.x5tS256 = base64.RawURLEncoding.EncodeToString(sha256Sum[:])
	}
	return ck, nil
}

// ownCertificate returns the certificate among blocks whose public key is
// public: the leaf of a chain, in whatever order it was given.
func ownCertificate(public crypto.PublicKey, blocks []*pem.Block) (*x509.Certificate, error) {
	key, ok := public.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil, fmt.Errorf("the client key's public key (%T) cannot be compared with a certificate's", public)
	}
	for _, block := range blocks {
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("a certificate given with the client key does not parse: %w", err)
		}
		if key.Equal(cert.PublicKey) {
			return cert, nil
		}
	}
	return nil, errors.New("no certificate given with the client key is the key's: their public keys differ; give the key's own certificate")
}

// thumbprint returns the SHA-256 thumbprint of the key's certificate that
// assertions carry in their x5t#S256 header, or "" without a certificate.
func (k *ClientKey) thumbprint() string { return k.x5tS256 }

// algorithm returns the JWS algorithm of the assertions, e.g. "RS256".
func (k *ClientKey) algorithm() string { return k.method.Alg() }

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
	if k.x5tS256 != "" {
		t.Header["x5t#S256"] = k.x5tS256
		t.Header["x5t"] = k.x5t
	}
	signed, err := t.SignedString(k.key)
	if err != nil {
		return "", fmt.Errorf("signing a client assertion: %w", err)
	}
	return signed, nil
}
