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
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
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
		{"/support/..;/ops", true, ""},
		{"/support/..;", true, ""},
		{"/support/..;x=1/ops", true, ""},
		{"/support/.;/x", true, ""},
		{"/support/%2e%2e;/ops", true, ""},
		{"/support/..%3b/ops", true, ""},
		{"/support/a;b", false, "/a;b"},
		{"/support/...;/x", false, "/...;/x"},
		{"/support/;/x", false, "/;/x"},
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

// TestSessionHeaderSpellings: a header that CGI, WSGI or PHP read as the
// session ID, under any spelling but the canonical one, is found, so that
// the request is refused rather than carry an unchecked ID upstream.
func TestSessionHeaderSpellings(t *testing.T) {
	for _, tc := range []struct {
		header http.Header
		want   string
	}{
		{http.Header{}, ""},
		{http.Header{"Mcp-Session-Id": {"x"}}, ""},
		{http.Header{"Mcp-Session-Id": {"x"}, "Mcp-Protocol-Version": {"2025-06-18"}}, ""},
		{http.Header{"Mcp-Session-Idx": {"x"}, "Mcp-Session-I": {"x"}, "Mcp-Session": {"x"}}, ""},
		{http.Header{"Mcp\rSession\rId": {"x"}}, ""},
		{http.Header{"Mcp_session_id": {"x"}}, "Mcp_session_id"},
		{http.Header{"Mcp-Session-Id": {"x"}, "Mcp_Session_Id": {"y"}}, "Mcp_Session_Id"},
		{http.Header{"Mcp-session_id": {"x"}}, "Mcp-session_id"},
		{http.Header{"MCP_SESSION_ID": {"x"}}, "MCP_SESSION_ID"},
		{http.Header{"mcp-session-id": {"x"}}, "mcp-session-id"},
		{http.Header{"Mcp.session.id": {"x"}}, "Mcp.session.id"},
		{http.Header{"Mcp_session.id": {"x"}}, "Mcp_session.id"},
	} {
		if got := sessionHeaderSpelling(tc.header); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.header, got, tc.want)
		}
	}
}

// TestOpenSessionRefusesOtherSpellings: a request carrying the session ID
// under another spelling of its header (alone, or beside a valid
// Mcp-Session-Id) is refused with 400 before it can reach the upstream.
func TestOpenSessionRefusesOtherSpellings(t *testing.T) {
	ids := testSessionIDs(t, "acme")
	g := &Handler{edge: authserver.New(authserver.Options{PublicURL: "https://mcp.example.com"}, nil)}
	s := &authserver.Server{Name: "support", Issuer: testServer, Gateway: func() *authserver.Gateway { return &authserver.Gateway{Name: "acme"} }}
	claims := &accesstoken.Claims{}
	claims.Subject, claims.ClientID = testUser, testClient
	sealed := ids.Seal(testServer, testUser, testClient, testID)
	open := func(h http.Header) (*httptest.ResponseRecorder, bool) {
		r := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/support", nil)
		r.Header = h
		w := httptest.NewRecorder()
		_, ok := g.openSession(w, r, s, claims, ids)
		return w, ok
	}
	if w, ok := open(http.Header{"Mcp-Session-Id": {sealed}}); !ok {
		t.Fatalf("the session's own ID refused: %d %s", w.Code, w.Body)
	}
	for _, h := range []http.Header{
		{"Mcp_session_id": {"forged"}},
		{"Mcp-Session-Id": {sealed}, "Mcp_Session_Id": {"forged"}},
		{"Mcp-Session-Id": {sealed}, "Mcp-session_id": {"forged"}},
		{"mcp-session-id": {"forged"}},
	} {
		if w, ok := open(h); ok || w.Code != http.StatusBadRequest {
			t.Errorf("%v: ok %v, %d %s; want refused with 400", h, ok, w.Code, w.Body)
		}
	}
}
