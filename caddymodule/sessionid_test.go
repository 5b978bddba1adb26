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
)

const (
	testServer = "https://mcp.example.com/oauth/support-assistant"
	testUser   = "demo-user"
	testClient = "mcp_client-x"
	testID     = "2DMPYNN6Z6HBX2B4TLVMR52NQM"
)

func testSessionIDs(t testing.TB, gateway string) *sessionIDs {
	t.Helper()
	key, err := sessionKey(bytes.Repeat([]byte{7}, 32), gateway)
	if err != nil {
		t.Fatal(err)
	}
	return newSessionIDs(key)
}

func TestSessionIDs(t *testing.T) {
	ids := testSessionIDs(t, "acme")
	sealed := ids.seal(testServer, testUser, testClient, testID)
	mac := sealed[len(testID)+1:]
	if !strings.HasPrefix(sealed, testID+".") || len(mac) != macChars {
		t.Fatalf("sealed %q, want %q, a dot and a MAC of %d characters", sealed, testID, macChars)
	}
	for _, c := range []byte(sealed) {
		if c < 0x21 || c > 0x7e {
			t.Fatalf("sealed %q holds %q, outside the visible ASCII MCP allows", sealed, c)
		}
	}
	dotted := ids.seal(testServer, testUser, testClient, "a.b.c")
	other := testSessionIDs(t, "other-gateway").seal(testServer, testUser, testClient, testID)
	altered := []byte(mac)
	altered[0] ^= 'A' ^ 'B'

	for _, tc := range []struct {
		name                 string
		server, user, client string
		id                   string
		want                 string // the upstream's ID, "" when refused
	}{
		{"its own binding", testServer, testUser, testClient, sealed, testID},
		{"an upstream ID with dots", testServer, testUser, testClient, dotted, "a.b.c"},
		{"another user", testServer, "mallory", testClient, sealed, ""},
		{"another client of the same user", testServer, testUser, "mcp_client-y", sealed, ""},
		{"another server", "https://mcp.example.com/oauth/ops-console", testUser, testClient, sealed, ""},
		{"fields shifted across a boundary", testServer, testUser[:4], testUser[4:] + testClient, sealed, ""},
		{"another gateway's key", testServer, testUser, testClient, other, ""},
		{"an altered MAC", testServer, testUser, testClient, testID + "." + string(altered), ""},
		{"the MAC in upper case", testServer, testUser, testClient, testID + "." + strings.ToUpper(mac), ""},
		{"a MAC cut by one", testServer, testUser, testClient, sealed[:len(sealed)-1], ""},
		{"half a MAC", testServer, testUser, testClient, testID + "." + mac[:len(mac)/2], ""},
		{"a MAC and one more character", testServer, testUser, testClient, sealed + "A", ""},
		{"the MAC of another upstream ID", testServer, testUser, testClient, "OTHER." + mac, ""},
		{"a dot and no MAC", testServer, testUser, testClient, testID + ".", ""},
		{"no MAC", testServer, testUser, testClient, testID, ""},
		{"the MAC alone", testServer, testUser, testClient, "." + mac, ""},
		{"the MAC without its dot", testServer, testUser, testClient, testID + mac, ""},
		{"empty", testServer, testUser, testClient, "", ""},
		{"oversized", testServer, testUser, testClient, strings.Repeat("x", maxSessionID) + "." + mac, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ids.open(tc.server, tc.user, tc.client, tc.id)
			if ok != (tc.want != "") || got != tc.want {
				t.Fatalf("open(%q) = %q, %v; want %q", tc.id, got, ok, tc.want)
			}
		})
	}
}

// TestSessionKeySurvivesReloads: every instance and every config derives
// the same key from the same sealing key, and another gateway another.
func TestSessionKeySurvivesReloads(t *testing.T) {
	a, b := testSessionIDs(t, "acme"), testSessionIDs(t, "acme")
	if got, ok := b.open(testServer, testUser, testClient, a.seal(testServer, testUser, testClient, testID)); !ok || got != testID {
		t.Fatal("a session ID sealed by one instance does not open at another sharing its sealing key")
	}
	k1, _ := sessionKey(bytes.Repeat([]byte{7}, 32), "acme")
	k2, _ := sessionKey(bytes.Repeat([]byte{7}, 32), "other")
	if bytes.Equal(k1, k2) || bytes.Equal(k1, bytes.Repeat([]byte{7}, 32)) {
		t.Fatal("the session-ID key is not separate from the sealing key and other gateways' keys")
	}
}

// TestSessionIDOpenAllocations: checking a request's session ID is on
// every request of a session, and allocates nothing.
func TestSessionIDOpenAllocations(t *testing.T) {
	ids := testSessionIDs(t, "acme")
	sealed := ids.seal(testServer, testUser, testClient, testID)
	if allocs := testing.AllocsPerRun(100, func() {
		if _, ok := ids.open(testServer, testUser, testClient, sealed); !ok {
			t.Fatal("refused")
		}
	}); allocs != 0 {
		t.Errorf("open allocates %.0f times, want 0", allocs)
	}
}

// FuzzSessionID: what is sealed opens for its own binding alone, and the
// only ID accepted for an upstream's ID is the one sealed for it.
func FuzzSessionID(f *testing.F) {
	f.Add(testUser, testClient, testID, testID+".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	ids := testSessionIDs(f, "acme")
	f.Fuzz(func(t *testing.T, user, client, upstream, presented string) {
		sealed := ids.seal(testServer, user, client, upstream)
		got, ok := ids.open(testServer, user, client, sealed)
		if upstream != "" && len(sealed) <= maxSessionID && (!ok || got != upstream) {
			t.Fatalf("%q sealed as %q does not open: %q %v", upstream, sealed, got, ok)
		}
		if _, ok := ids.open(testServer, user+"x", client, sealed); ok {
			t.Fatalf("%q opens for another user", sealed)
		}
		if _, ok := ids.open(testServer, user, client+"x", sealed); ok {
			t.Fatalf("%q opens for another client", sealed)
		}
		if got, ok := ids.open(testServer, user, client, presented); ok && ids.seal(testServer, user, client, got) != presented {
			t.Fatalf("%q was accepted, but %q is what was sealed for %q", presented, ids.seal(testServer, user, client, got), got)
		}
	})
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
	sealed := ids.seal(testServer, testUser, testClient, testID)
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
