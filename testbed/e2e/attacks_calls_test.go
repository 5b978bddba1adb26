package e2e_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// batchVersion is the last MCP protocol version with JSON-RPC batches,
// which the official Go SDK server still answers when a session asks for
// it.
const batchVersion = "2025-03-26"

// batchSession initializes an MCP session at batchVersion through the
// gateway and returns its Mcp-Session-Id.
func (e *callScopesEnv) batchSession(t *testing.T, path, token string) string {
	t.Helper()
	resp, body := e.post(t, path, token,
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+batchVersion+`","capabilities":{},"clientInfo":{"name":"attacker","version":"1"}}}`)
	session := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || session == "" || !strings.Contains(body, batchVersion) {
		t.Fatalf("initialize at %s: %d, session %q, %s", batchVersion, resp.StatusCode, session, body)
	}
	if resp, body := e.post(t, path, token, `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		"Mcp-Session-Id", session, "Mcp-Protocol-Version", batchVersion); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d %s", resp.StatusCode, body)
	}
	return session
}

// wantRPCError checks a refusal by the gateway: the status and a JSON-RPC
// error with code.
func wantRPCError(t *testing.T, resp *http.Response, body string, status, code int) {
	t.Helper()
	var rpc struct {
		JSONRPC string `json:"jsonrpc"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if resp.StatusCode != status || json.Unmarshal([]byte(body), &rpc) != nil || rpc.JSONRPC != "2.0" || rpc.Error.Code != code || rpc.Error.Message == "" {
		t.Errorf("got %d %.300s, want %d with JSON-RPC error %d", resp.StatusCode, body, status, code)
	}
}

// TestAttacksCallRules attacks the call rules of servers with tool,
// resource and prompt scopes, with a token that holds tickets.read but not
// admin.read (which restart_service, the incident_report prompt and the
// resources under file:///ops/secrets/ need): every attempt to use or see
// what admin.read guards is answered by the gateway, and the upstream sees
// nothing of it.
func TestAttacksCallRules(t *testing.T) {
	e := startCallScopesEnv(t)
	c := e.register(t, "ops-files")
	files := c.login(t, "ops-files", "tickets.read").AccessToken
	jsonTok := c.login(t, "ops-json", "tickets.read").AccessToken

	// A batch's list request whose id the upstream reads as a number and
	// answers in its own spelling (1.0 as 1), or whose id it shares with
	// another request, must not get its result past the filter.
	t.Run("batch with a non-canonical id on its list request", func(t *testing.T) {
		session := e.batchSession(t, "/ops-json", jsonTok)
		for _, id := range []string{"1.0", "1e0", "-0", "1.5", "1E+0", "9223372036854775808", "true", "null", `{"n":1}`} {
			seen := e.json.Requests()
			resp, body := e.post(t, "/ops-json", jsonTok,
				`[{"jsonrpc":"2.0","id":"p","method":"ping"},{"jsonrpc":"2.0","id":`+id+`,"method":"tools/list"}]`,
				"Mcp-Session-Id", session, "Mcp-Protocol-Version", batchVersion)
			if strings.Contains(body, "restart_service") {
				t.Errorf("id %s: the batch's tools/list listed restart_service to a tickets.read token: %d %.300s", id, resp.StatusCode, body)
			}
			wantRPCError(t, resp, body, http.StatusBadRequest, -32600)
			if e.json.Requests() != seen {
				t.Errorf("id %s: the upstream saw the refused batch", id)
			}
		}
		// The same batch with an integer id passes, filtered.
		resp, body := e.post(t, "/ops-json", jsonTok,
			`[{"jsonrpc":"2.0","id":"p","method":"ping"},{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`,
			"Mcp-Session-Id", session, "Mcp-Protocol-Version", batchVersion)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "whoami") || strings.Contains(body, "restart_service") {
			t.Errorf("a batch with canonical ids: %d %.300s", resp.StatusCode, body)
		}
	})

	t.Run("batch with duplicate ids", func(t *testing.T) {
		session := e.batchSession(t, "/ops-files", files)
		for _, batch := range []string{
			`[{"jsonrpc":"2.0","id":1,"method":"prompts/list"},{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`,
			`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":1,"method":"prompts/list"}]`,
			`[{"jsonrpc":"2.0","id":"7","method":"prompts/list"},{"jsonrpc":"2.0","id":7,"method":"tools/list"}]`,
			`[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":"\u0061","method":"tools/list"}]`,
		} {
			seen := e.sse.Requests()
			resp, body := e.post(t, "/ops-files", files, batch, "Mcp-Session-Id", session, "Mcp-Protocol-Version", batchVersion)
			if strings.Contains(body, "restart_service") || strings.Contains(body, "incident_report") {
				t.Errorf("%s listed what a tickets.read token may not see: %d %.400s", batch, resp.StatusCode, body)
			}
			wantRPCError(t, resp, body, http.StatusBadRequest, -32600)
			if e.sse.Requests() != seen {
				t.Errorf("%s: the upstream saw the refused batch", batch)
			}
		}
	})

	// subscriptions/listen subscribes to resources as resources/subscribe
	// does, several at once.
	t.Run("listening to a resource the token may not read", func(t *testing.T) {
		seen := e.sse.Requests()
		resp, body := e.post(t, "/ops-files", files,
			`{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true,"resourceSubscriptions":["file:///ops/logs/today.log","file:///ops/secrets/db.txt"]}}}`)
		challenge := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(challenge, `error="insufficient_scope", scope="admin.read tickets.read"`) ||
			!strings.Contains(body, "file:///ops/secrets/db.txt") {
			t.Errorf("got %d %s %.300s, want 403 insufficient_scope for admin.read naming the secret", resp.StatusCode, challenge, body)
		}
		if e.sse.Requests() != seen {
			t.Error("the upstream saw the subscription")
		}
	})

	// A method that MCP may add later, or an upstream's own, that names a
	// tool, resource or prompt: the gateway cannot tell what it needs.
	t.Run("unknown method naming a tool", func(t *testing.T) {
		for _, msg := range []string{
			`{"jsonrpc":"2.0","id":1,"method":"tools/execute","params":{"name":"restart_service","arguments":{"service":"billing"}}}`,
			`{"jsonrpc":"2.0","id":1,"method":"resources/fetch","params":{"uri":"file:///ops/secrets/db.txt"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"prompts/render","params":{"ref":{"type":"ref/prompt","name":"incident_report"}}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/execute","params":{"NAME":"restart_service"}}`,
			`{"jsonrpc":"2.0","method":"notifications/tools/run","params":{"name":"restart_service"}}`,
			`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/execute","params":{"name":"restart_service"}}]`,
		} {
			seen := e.sse.Requests()
			resp, body := e.post(t, "/ops-files", files, msg)
			wantRPCError(t, resp, body, http.StatusForbidden, -32601)
			if e.sse.Requests() != seen {
				t.Errorf("%s: the upstream saw it", msg)
			}
		}
		// Methods that name nothing, known or not, still pass.
		seen := e.sse.Requests()
		for _, msg := range []string{
			`{"jsonrpc":"2.0","id":1,"method":"ping"}`,
			`{"jsonrpc":"2.0","id":1,"method":"tasks/list","params":{"cursor":"x"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":"file:///ops/secrets/db.txt"}}`,
		} {
			if resp, body := e.post(t, "/ops-files", files, msg); resp.StatusCode == http.StatusForbidden {
				t.Errorf("%s was refused: %s", msg, body)
			}
		}
		if e.sse.Requests() != seen+3 {
			t.Errorf("the upstream saw %d of 3 requests that name nothing to judge", e.sse.Requests()-seen)
		}
		// A server whose unchecked_methods lists the method lets it pass.
		seen = e.json.Requests()
		if resp, body := e.post(t, "/ops-json", jsonTok, `{"jsonrpc":"2.0","id":1,"method":"tools/execute","params":{"name":"restart_service"}}`); resp.StatusCode == http.StatusForbidden || e.json.Requests() != seen+1 {
			t.Errorf("a method of unchecked_methods: %d %s, upstream requests %d → %d", resp.StatusCode, body, seen, e.json.Requests())
		}
	})
}
