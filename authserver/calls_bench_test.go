package authserver_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/mcpcalls"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// rewindBody is a request body that can be read again, so that each
// iteration sends the same bytes without allocating a reader.
type rewindBody struct{ strings.Reader }

func (*rewindBody) Close() error { return nil }

// BenchmarkAuthorizeCallScopes is the cost of call scopes on the
// per-request step: the same warm tools/call through Authorize on a server
// without call scopes (its body is not read) and on one with them (its
// body is read, checked against the Mcp-Method and Mcp-Name headers and
// its tool looked up), and a tools/list, whose result is then filtered.
func BenchmarkAuthorizeCallScopes(b *testing.B) {
	const call = `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"list_tickets","arguments":{"status":"open","limit":20},"_meta":{"progressToken":"p-42"}}}`
	const list = `{"jsonrpc":"2.0","id":43,"method":"tools/list","params":{}}`
	policy := mcpcalls.NewPolicy(mcpcalls.Rules{Tools: map[string]scopes.Set{
		"lookup_account": scopes.MustParse("accounts.read"),
		"export_tickets": scopes.MustParse("accounts.read tickets.read"),
	}})
	for _, tc := range []struct {
		name, method, tool, body string
		calls                    *mcpcalls.Policy
	}{
		{"tools-call/without-call-scopes", mcpcalls.MethodCallTool, "list_tickets", call, nil},
		{"tools-call/with-call-scopes", mcpcalls.MethodCallTool, "list_tickets", call, policy},
		{"tools-list/with-call-scopes", mcpcalls.MethodListTools, "", list, policy},
	} {
		b.Run(tc.name, func(b *testing.B) {
			be := newBenchEdge(b, store.NewMemoryStore(), 1)
			be.putGrants(b, 1)
			s := be.servers[0]
			s.Calls = tc.calls
			r := mcpRequest(s, be.token(b, s, benchUser(0)))
			r.Header.Set(mcpcalls.HeaderMethod, tc.method)
			if tc.tool != "" {
				r.Header.Set(mcpcalls.HeaderName, tc.tool)
			}
			body := new(rewindBody)
			w := &discardWriter{h: http.Header{}}
			once := func() {
				body.Reset(tc.body)
				r.Body, r.ContentLength = body, int64(len(tc.body))
				authorizeOnce(b, be, w, r, s)
			}
			once()
			b.ReportAllocs()
			for b.Loop() {
				once()
			}
		})
	}
}
