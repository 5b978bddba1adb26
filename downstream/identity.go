package downstream

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/jwk"
)

func (c *Client) resolveUser(ctx context.Context, tok *oauth2.Token) (string, error) {
	var claims map[string]any
	switch c.cfg.IdentitySource {
	case SourceUserinfo:
		endpoint := c.cfg.UserinfoURL
		if endpoint == "" {
			meta, err := c.Metadata(ctx)
			if err != nil {
				return "", err
			}
			if meta.UserinfoEndpoint == "" {
				return "", errors.New("the downstream server has no userinfo_endpoint: name the user endpoint (identity userinfo <url>) or use identity id_token")
			}
			endpoint = meta.UserinfoEndpoint
		}
		status, err := c.getJSON(ctx, endpoint, tok.AccessToken, &claims)
		if err != nil {
			return "", fmt.Errorf("downstream userinfo: %w", err)
		}
		if status != http.StatusOK {
			return "", fmt.Errorf("downstream userinfo %s answered status %d (some servers refuse audience-bound tokens there: use identity id_token)", endpoint, status)
		}
	default:
		raw, _ := tok.Extra("id_token").(string)
		if raw == "" {
			return "", errors.New("the downstream server returned no ID token: request the openid scope (login_scopes) or use identity userinfo")
		}
		var err error
		if claims, err = c.verifyIDToken(ctx, raw); err != nil {
			return "", err
		}
	}
	return claimString(claims, c.cfg.IdentityClaim)
}

// claimString returns a claim as an identity: a non-empty string, or a
// number written in full (GitHub's user IDs are numbers).
func claimString(claims map[string]any, name string) (string, error) {
	switch v := claims[name].(type) {
	case string:
		if v != "" {
			return v, nil
		}
	case json.Number:
		return v.String(), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("the downstream identity has no usable %q claim: choose another claim with identity claim <name>", name)
}

// verifyIDToken checks the ID token's signature against the downstream keys,
// its issuer, audience and expiry.
func (c *Client) verifyIDToken(ctx context.Context, raw string) (map[string]any, error) {
	// The issuer exactly as the server writes it: the configured one may
	// lack the trailing slash some servers (Auth0) put in their tokens.
	issuer := c.cfg.Issuer
	if meta, err := c.Metadata(ctx); err == nil && meta.Issuer != "" {
		issuer = meta.Issuer
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return c.publicKey(ctx, kid)
	},
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(c.cfg.ClientID),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(time.Minute),
	)
	if err != nil {
		return nil, fmt.Errorf("the downstream ID token did not verify: %w", err)
	}
	return claims, nil
}

func (c *Client) publicKey(ctx context.Context, kid string) (crypto.PublicKey, error) {
	meta, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key, ok := c.keys[kid]
	if !ok {
		// Unknown kid: the server may have rotated its keys; fetch once.
		if meta.JWKSURI == "" {
			return nil, errors.New("the downstream server publishes no jwks_uri to verify ID tokens with: use identity userinfo")
		}
		var raw json.RawMessage
		status, err := c.getJSON(ctx, meta.JWKSURI, "", &raw)
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("GET %s: status %d", meta.JWKSURI, status)
		}
		if c.keys, err = jwk.ParseSet(raw); err != nil {
			return nil, fmt.Errorf("downstream JWKS: %w", err)
		}
		if key, ok = c.keys[kid]; !ok && kid == "" && len(c.keys) == 1 {
			for _, k := range c.keys {
				key, ok = k, true
			}
		}
		if !ok {
			return nil, fmt.Errorf("the downstream ID token is signed with unknown key %q", kid)
		}
	}
	return key.PublicKey()
}

// getJSON fetches url, with bearer as the access token when not empty, and
// decodes a 200 answer into v, keeping numbers exact (json.Number).
func (c *Client) getJSON(ctx context.Context, url, bearer string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return 0, err
	}
	if len(body) > maxResponseBytes {
		return 0, fmt.Errorf("GET %s: response larger than %d bytes", url, maxResponseBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	return resp.StatusCode, nil
}
