package main

import (
	"net/http"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// The real authorization flow, as an MCP client and the person at its
// browser go through it (testenv.OAuthClient): registration, the gateway's
// consent page, the provider's sign-in, the code exchange and refreshes.

// redirectURI is the MCP client's loopback redirect URI. Nothing listens
// there: the browser stops at it and the code is read from the URL.
const redirectURI = "http://127.0.0.1:33418/callback"

// newHTTPClient returns a client whose pool is as large as the
// benchmark's concurrency, so that connections are reused.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// register registers a public client (RFC 7591) at server's endpoint.
func register(hc *http.Client, public, server string) (*testenv.OAuthClient, error) {
	c, err := testenv.RegisterClient(hc, public, server, map[string]any{
		"redirect_uris": []string{redirectURI}, "client_name": "loadbench", "token_endpoint_auth_method": "none",
	})
	if err != nil {
		return nil, err
	}
	c.State = "loadbench"
	return c, nil
}

// granted turns a token endpoint's refusal into an error.
func granted(tok testenv.Tokens, err error) (testenv.Tokens, error) {
	if err != nil {
		return tok, err
	}
	return tok, tok.Err()
}
