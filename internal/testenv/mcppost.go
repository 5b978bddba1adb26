package testenv

import (
	"io"
	"net/http"
	"strings"
)

// PostMCP sends one JSON-RPC body to an MCP endpoint as a streamable HTTP
// client does (Content-Type and Accept of the transport), with a bearer
// token unless token is empty and the extra header name/value pairs, and
// returns the response with its body read (up to 1 MiB).
func PostMCP(url, token, body string, header ...string) (*http.Response, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
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
