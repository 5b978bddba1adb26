package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

func TestCallBodyIsOneKilobyte(t *testing.T) {
	for _, id := range []string{"1-1", "2-99999"} {
		if n := len(fmt.Sprintf(callTemplate(), id)); n < callBodySize-8 || n > callBodySize {
			t.Errorf("body with id %q is %d bytes, want about %d", id, n, callBodySize)
		}
	}
}

func TestParseWRK(t *testing.T) {
	out := "Running 1s test @ http://127.0.0.1:1/json\n  2 threads and 32 connections\n" +
		"RESULT requests=1500 duration_us=1000000 p50_us=2100 p99_us=9000 mean_us=2500 errors=3\n"
	r, err := parseWRK(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 1500 || r.rate() != 1500 || r.p50 != 2100*time.Microsecond || r.p99 != 9*time.Millisecond || r.errors != 3 {
		t.Fatalf("parsed %+v", r)
	}
	for _, bad := range []string{"", "RESULT requests=0 duration_us=0", "RESULT requests=x"} {
		if _, err := parseWRK(bad); err == nil {
			t.Errorf("parseWRK(%q) succeeded", bad)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]wrkResult{
		{requests: 300, duration: time.Second, p99: 3 * time.Millisecond, proxyCPU: 30 * time.Millisecond},
		{requests: 100, duration: time.Second, p99: 9 * time.Millisecond, proxyCPU: 10 * time.Millisecond},
		{requests: 200, duration: time.Second, p99: 5 * time.Millisecond, proxyCPU: 20 * time.Millisecond},
	})
	if s.rate != 200 || s.minRate != 100 || s.maxRate != 300 || s.p99 != 5*time.Millisecond || s.proxyCPU != 100*time.Microsecond {
		t.Fatalf("summary %+v", s)
	}
}

// TestBareMCPServer checks that a bare server answers the benchmark's
// session and calls as the SDK's server does: same result, the call's own
// id, the asked-for framing.
func TestBareMCPServer(t *testing.T) {
	sdk, err := testenv.StartMCPServer(testenv.MCPServerConfig{Name: testenv.SupportAssistant, JSONResponse: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sdk.Close()
	hc := newHTTPClient()
	result, err := callResult(hc, sdk.URL())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(result), "T-1001") {
		t.Fatalf("the SDK server's result %s lacks the tickets", result)
	}
	for _, sse := range []bool{false, true} {
		bare, err := startBareMCPServer(result, sse)
		if err != nil {
			t.Fatal(err)
		}
		defer bare.Close()
		s, err := openSession(hc, bare.URL(), "Bearer x")
		if err != nil {
			t.Fatalf("sse=%v: %v", sse, err)
		}
		_, body, err := post(hc, s.url, s.authorization, s.id, "tools/call", "list_tickets", fmt.Sprintf(callTemplate(), "7-42"))
		if err != nil {
			t.Fatal(err)
		}
		want := `{"jsonrpc":"2.0","id":"7-42","result":` + string(result) + `}`
		if sse {
			want = "event: message\ndata: " + want + "\n\n"
		}
		if body != want {
			t.Errorf("sse=%v: answered\n%s\nwant\n%s", sse, body, want)
		}
		// Outside the session, a call is refused.
		resp, _, err := post(hc, s.url, "", "", "tools/call", "list_tickets", fmt.Sprintf(callTemplate(), "7-43"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("sse=%v: a call without a session got status %d, want 400", sse, resp.StatusCode)
		}
	}
	if _, err := startBareMCPServer([]byte("{"), false); err == nil {
		t.Error("a bare server started with a result that is not JSON")
	}
}
