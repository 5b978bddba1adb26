package mcpcalls

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkRead is the reading of one MCP request's body: a tools/call as
// the official SDKs send it, with its Mcp-Method and Mcp-Name headers.
func BenchmarkRead(b *testing.B) {
	const body = `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"restart_service","arguments":{"service":"billing","reason":"the nightly export hangs"},"_meta":{"progressToken":"p-42"}}}`
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set(HeaderMethod, MethodCallTool)
	r.Header.Set(HeaderName, "restart_service")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		// A one-pointer ReadCloser, so that the body costs the loop no
		// allocation beyond its reader (io.NopCloser would add one).
		r.Body, r.ContentLength = readCloser{strings.NewReader(body)}, int64(len(body))
		msgs, err := Read(r, MaxBodyBytes)
		if err != nil || msgs[0].Name != "restart_service" {
			b.Fatal(msgs, err)
		}
	}
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
