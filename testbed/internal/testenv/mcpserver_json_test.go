package testenv

import (
	"net/http"
	"strings"
	"testing"
)

// TestMCPServerJSONResponse: with JSONResponse a call is answered with one
// JSON body, without it with an SSE stream, whatever the client accepts.
func TestMCPServerJSONResponse(t *testing.T) {
	for _, tc := range []struct {
		json bool
		want string
	}{{false, "text/event-stream"}, {true, "application/json"}} {
		s, err := StartMCPServer(MCPServerConfig{JSONResponse: tc.json})
		if err != nil {
			t.Fatal(err)
		}
		resp, _, err := PostMCP(s.URL(), "",
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, tc.want) {
			t.Errorf("JSONResponse %v: status %d, Content-Type %q; want 200 and %s", tc.json, resp.StatusCode, ct, tc.want)
		}
	}
}
