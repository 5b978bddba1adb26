package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// protocolVersion is the MCP protocol version the benchmark's client
// speaks.
const protocolVersion = "2025-11-25"

// callBodySize is the size of each benchmark request: a tools/call of
// list_tickets padded in _meta, which the server ignores.
const callBodySize = 1024

// callTemplate is the request body with %s for the JSON-RPC id, which must
// differ between calls in flight on one session.
func callTemplate() string {
	const head = `{"jsonrpc":"2.0","id":"%s","method":"tools/call","params":{"name":"list_tickets","arguments":{},"_meta":{"pad":"`
	const tail = `"}}}`
	// The id takes a few characters of its own, which the padding leaves
	// room for.
	pad := callBodySize - len(head) - len(tail) + len("%s") - len("1-100000")
	return head + strings.Repeat("x", pad) + tail
}

// session is an MCP session through one proxy route.
type session struct {
	url           string
	authorization string // the Authorization header the client sends
	id            string // Mcp-Session-Id
}

// mcpHeaders sets the headers of an MCP POST.
func mcpHeaders(h http.Header, authorization, sessionID, method, name string) {
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	h.Set("Mcp-Protocol-Version", protocolVersion)
	h.Set("Mcp-Method", method)
	if name != "" {
		h.Set("Mcp-Name", name)
	}
	if authorization != "" {
		h.Set("Authorization", authorization)
	}
	if sessionID != "" {
		h.Set("Mcp-Session-Id", sessionID)
	}
}

// post sends one JSON-RPC message and returns the response body.
func post(hc *http.Client, url, authorization, sessionID, method, name, body string) (*http.Response, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	mcpHeaders(req.Header, authorization, sessionID, method, name)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(b), err
}

// openSession initializes an MCP session through url and checks that a
// benchmark call works on it.
func openSession(hc *http.Client, url, authorization string) (*session, error) {
	resp, body, err := post(hc, url, authorization, "", "initialize", "",
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+protocolVersion+`","capabilities":{},"clientInfo":{"name":"loadbench","version":"1"}}}`)
	if err != nil {
		return nil, fmt.Errorf("initialize through %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"result"`) {
		return nil, fmt.Errorf("initialize through %s: status %d: %.300s", url, resp.StatusCode, body)
	}
	s := &session{url: url, authorization: authorization, id: resp.Header.Get("Mcp-Session-Id")}
	if s.id == "" {
		return nil, fmt.Errorf("initialize through %s: no Mcp-Session-Id", url)
	}
	resp, body, err = post(hc, url, authorization, s.id, "notifications/initialized", "", `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("notifications/initialized through %s: status %d: %.300s", url, resp.StatusCode, body)
	}
	if _, err := s.call(hc, "check-1"); err != nil {
		return nil, err
	}
	return s, nil
}

// call makes one benchmark call and returns the response's content type.
func (s *session) call(hc *http.Client, id string) (string, error) {
	resp, body, err := post(hc, s.url, s.authorization, s.id, "tools/call", "list_tickets", fmt.Sprintf(callTemplate(), id))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "T-1001") {
		return "", fmt.Errorf("tools/call through %s: status %d: %.300s", s.url, resp.StatusCode, body)
	}
	return resp.Header.Get("Content-Type"), nil
}
