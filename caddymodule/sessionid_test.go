package caddymodule

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/gateway"
)

const (
	testServer = "https://mcp.example.com/oauth/support-assistant"
	testUser   = "demo-user"
	testClient = "mcp_client-x"
	testID     = "2DMPYNN6Z6HBX2B4TLVMR52NQM"
)

func testSessionIDs(t testing.TB, name string) *gateway.SessionIDs {
	t.Helper()
	return gateway.NewSessionIDs(append(bytes.Repeat([]byte{7}, 32), name...))
}

func TestCleanPaths(t *testing.T) {
	for _, tc := range []struct {
		path    string
		refused bool
		want    string // the path the upstream gets, escaped
	}{
		{"/support", false, "/"},
		{"/support/", false, "/"},
		{"/support/mcp", false, "/mcp"},
		{"/support/a%20b", false, "/a%20b"},
		{"/support/a%41b", false, "/a%41b"},
		{"/%73upport/mcp", false, "/mcp"},
		{"/support/...", false, "/..."},
		{"/support/.well-known", false, "/.well-known"},
		{"/support//x", false, "//x"},
		{"/support/..", true, ""},
		{"/support/../ops", true, ""},
		{"/support/x/..", true, ""},
		{"/support/.", true, ""},
		{"/support/./x", true, ""},
		{"/support/%2e%2e/x", true, ""},
		{"/support/%2E%2E", true, ""},
		{"/support/.%2e", true, ""},
		{"/support/%2e", true, ""},
		{"/support/a%2fb", true, ""},
		{"/support/a%2Fb", true, ""},
		{"/support%2fx", true, ""},
		{"/support/a%5cb", true, ""},
		{"/support/a%5Cb", true, ""},
		{`/support/a\b`, true, ""},
	} {
		u, err := url.Parse("http://h" + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u.Path, "/support") {
			t.Fatalf("%s: the test's path does not match the prefix", tc.path)
		}
		reason := uncleanPath(u, "/support")
		if (reason != "") != tc.refused {
			t.Errorf("%s: refused %q, want refused %v", tc.path, reason, tc.refused)
			continue
		}
		if tc.refused {
			continue
		}
		r := &http.Request{URL: u}
		stripPrefix(r, "/support")
		if got := r.URL.EscapedPath(); got != tc.want {
			t.Errorf("%s reaches the upstream as %q, want %q", tc.path, got, tc.want)
		}
	}
}

// TestResponsesSealSessionIDs: the session ID an upstream hands out reaches
// the client sealed, whichever way the response starts, and an ID the
// upstream repeats in the request's session is answered with the client's.
func TestResponsesSealSessionIDs(t *testing.T) {
	ids := testSessionIDs(t, "acme")
	claims := &accesstoken.Claims{}
	claims.Subject, claims.ClientID = testUser, testClient
	sealed := ids.Seal(testServer, testUser, testClient, testID)
	tracker := func(session requestSession) (*writeTracker, *httptest.ResponseRecorder) {
		rec := httptest.NewRecorder()
		return &writeTracker{
			ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: rec},
			sessions:              ids, server: testServer, claims: claims, session: session,
		}, rec
	}

	for name, start := range map[string]func(w http.ResponseWriter){
		"WriteHeader":          func(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) },
		"Write":                func(w http.ResponseWriter) { _, _ = w.Write([]byte("{}")) },
		"after an interim 103": func(w http.ResponseWriter) { w.WriteHeader(http.StatusEarlyHints); w.WriteHeader(http.StatusOK) },
	} {
		w, rec := tracker(requestSession{})
		w.Header().Set(sessionHeader, testID)
		start(w)
		w.WriteHeader(http.StatusOK) // superfluous: must not seal twice
		if got := rec.Header().Get(sessionHeader); got != sealed {
			t.Errorf("%s: the client got session %q, want %q", name, got, sealed)
		}
	}

	w, rec := tracker(requestSession{client: "client-held", upstream: testID})
	w.Header().Set(sessionHeader, testID)
	w.WriteHeader(http.StatusEarlyHints)
	w.WriteHeader(http.StatusOK)
	if got := rec.Header().Get(sessionHeader); got != "client-held" {
		t.Errorf("a repeated session ID reached the client as %q, want the client's own", got)
	}
	w, rec = tracker(requestSession{})
	w.WriteHeader(http.StatusOK)
	if _, ok := rec.Header()[sessionHeader]; ok {
		t.Error("a response without a session ID got one")
	}
}
