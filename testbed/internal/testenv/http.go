package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// PostMCP sends one JSON-RPC body to an MCP endpoint as a streamable HTTP
// client does (Content-Type and Accept of the transport), with a bearer
// token unless token is empty and the extra header name/value pairs, and
// returns the response with its body read (up to 1 MiB).
//
// A POST is not idempotent and is never sent twice: after a config load,
// call ForgetConnections first (RunCaddyfile does) so that it goes out on
// a new connection.
func PostMCP(endpoint, token, body string, header ...string) (*http.Response, string, error) {
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(b), err
}

// GetJSON fetches rawURL with a bearer token (unless empty) and, when it
// answers 200, decodes its JSON body into v. The response's body is
// closed.
//
// A GET is idempotent, so one that fails in transport (a kept-alive
// connection that a reloaded config's old server closed as the request
// went out, or one it accepted and closed unanswered as it shut down) is
// sent again on a new connection, up to twice: right after a config load
// a client connecting afresh reaches the new config.
func GetJSON(rawURL, token string, v any) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	for retries := 2; err != nil && retries > 0; retries-- {
		ForgetConnections()
		resp, err = http.DefaultClient.Do(req)
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
			return resp, fmt.Errorf("GET %s: %w", rawURL, err)
		}
	}
	return resp, nil
}

// HostOf returns the host:port of a URL, or raw itself if it does not
// parse.
func HostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Host
}
