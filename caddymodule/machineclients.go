package caddymodule

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"slices"
	"strings"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/gateway"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// checkMachineClient checks the client credentials settings of client c of
// gateway gw, whose config path is cpath.
func checkMachineClient(cpath, who string, gw *Gateway, c *ClientConfig) error {
	cc := c.ClientCredentials
	if cc == nil {
		if c.PublicKey != "" || c.JWKSURI != "" {
			return &ConfigError{cpath + "/client_credentials", fmt.Sprintf("%s: client %q: public_key and jwks_uri (private_key_jwt) are for clients with client_credentials", who, c.ID)}
		}
		return nil
	}
	methods := 0
	for _, v := range []string{c.Secret, c.PublicKey, c.JWKSURI} {
		if v != "" {
			methods++
		}
	}
	if methods != 1 {
		return &ConfigError{cpath + "/client_credentials", fmt.Sprintf("%s: client %q: a client with client_credentials authenticates with exactly one of secret, public_key or jwks_uri (private_key_jwt)", who, c.ID)}
	}
	if c.JWKSURI != "" {
		if err := downstream.CheckEndpointURL(c.JWKSURI); err != nil {
			return &ConfigError{cpath + "/jwks_uri", fmt.Sprintf("%s: client %q: jwks_uri %v", who, c.ID, err)}
		}
	}
	full := scopes.MustParse(strings.Join(gw.Scopes, " "))
	for k, sc := range cc.Scopes {
		if !full.Contains(sc) {
			return &ConfigError{fmt.Sprintf("%s/client_credentials/scopes/%d", cpath, k), fmt.Sprintf("%s: client %q: client_credentials scope %q is not one of the gateway's scopes", who, c.ID, sc)}
		}
	}
	if cc.AsUser != "" && (cc.DownstreamClientID != "" || cc.DownstreamClientSecret != "") {
		return &ConfigError{cpath + "/client_credentials/as_user", fmt.Sprintf("%s: client %q: as_user acts with the user's downstream grant; it takes no downstream_client", who, c.ID)}
	}
	if (cc.DownstreamClientID == "") != (cc.DownstreamClientSecret == "") {
		return &ConfigError{cpath + "/client_credentials/downstream_client_id", fmt.Sprintf("%s: client %q: downstream_client needs a client ID and a secret", who, c.ID)}
	}
	return nil
}

// resolveMachine resolves the client credentials settings of c into the
// gateway's settings of it, and completes its record: the grant types, and
// how it authenticates.
func resolveMachine(resolve func(string) string, c *ClientConfig, client *grants.Client) (*gateway.Machine, error) {
	cc := c.ClientCredentials
	m := &gateway.Machine{
		Scopes:  slices.Clone(cc.Scopes),
		JWKSURI: resolve(c.JWKSURI),
		AsUser:  resolve(cc.AsUser),
	}
	if cc.AsUser != "" && m.AsUser == "" {
		return nil, fmt.Errorf("client %q: as_user resolved to an empty value", c.ID)
	}
	if c.PublicKey != "" {
		key, err := parsePublicKey(resolve(c.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("client %q: public_key: %w", c.ID, err)
		}
		m.PublicKey = key
	}
	if c.JWKSURI != "" {
		if err := downstream.CheckEndpointURL(m.JWKSURI); err != nil || m.JWKSURI == "" || hasPlaceholder(m.JWKSURI) {
			return nil, fmt.Errorf("client %q: jwks_uri %q (after placeholders) must be an absolute https URL", c.ID, m.JWKSURI)
		}
	}
	if cc.DownstreamClientID != "" {
		m.DownstreamClientID = resolve(cc.DownstreamClientID)
		m.DownstreamClientSecret = resolve(cc.DownstreamClientSecret)
		if m.DownstreamClientID == "" || m.DownstreamClientSecret == "" {
			return nil, fmt.Errorf("client %q: downstream_client resolved to an empty client ID or secret; is the environment variable set?", c.ID)
		}
	}

	client.GrantTypes = []string{authserver.GrantClientCredentials}
	if len(c.RedirectURIs) > 0 {
		client.GrantTypes = append([]string{"authorization_code", "refresh_token"}, client.GrantTypes...)
	}
	if m.PublicKey != nil || m.JWKSURI != "" {
		client.TokenEndpointAuthMethod = authserver.AuthPrivateKeyJWT
	}
	return m, nil
}

// parsePublicKey reads a PEM public key: PKIX ("PUBLIC KEY"), PKCS #1
// ("RSA PUBLIC KEY"), or the key of a certificate. RSA keys must have at
// least 2048 bits.
func parsePublicKey(text string) (crypto.PublicKey, error) {
	block, _ := pem.Decode([]byte(strings.TrimSpace(text)))
	if block == nil {
		return nil, errors.New("not PEM text; give the key as -----BEGIN PUBLIC KEY----- ... (for instance with {file./path/key.pub})")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("a PEM block of type %q holds no public key; give PUBLIC KEY (never the private key)", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("the RSA key has %d bits; use at least 2048", k.N.BitLen())
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("a %T cannot verify assertions; use an RSA, ECDSA or Ed25519 key", key)
	}
	return key, nil
}
