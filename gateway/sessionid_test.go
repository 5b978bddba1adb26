package gateway

import (
	"bytes"
	"strings"
	"testing"
)

const (
	testServer = "https://mcp.example.com/oauth/support-assistant"
	testUser   = "demo-user"
	testClient = "mcp_client-x"
	testID     = "2DMPYNN6Z6HBX2B4TLVMR52NQM"
)

func testSessionIDs(t testing.TB, gateway string) *SessionIDs {
	t.Helper()
	key, err := sessionKey(bytes.Repeat([]byte{7}, 32), gateway)
	if err != nil {
		t.Fatal(err)
	}
	return NewSessionIDs(key)
}

func TestSessionIDs(t *testing.T) {
	ids := testSessionIDs(t, "acme")
	sealed := ids.Seal(testServer, testUser, testClient, testID)
	mac := sealed[len(testID)+1:]
	if !strings.HasPrefix(sealed, testID+".") || len(mac) != macChars {
		t.Fatalf("sealed %q, want %q, a dot and a MAC of %d characters", sealed, testID, macChars)
	}
	for _, c := range []byte(sealed) {
		if c < 0x21 || c > 0x7e {
			t.Fatalf("sealed %q holds %q, outside the visible ASCII MCP allows", sealed, c)
		}
	}
	dotted := ids.Seal(testServer, testUser, testClient, "a.b.c")
	other := testSessionIDs(t, "other-gateway").Seal(testServer, testUser, testClient, testID)
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
			got, ok := ids.Open(tc.server, tc.user, tc.client, tc.id)
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
	if got, ok := b.Open(testServer, testUser, testClient, a.Seal(testServer, testUser, testClient, testID)); !ok || got != testID {
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
	sealed := ids.Seal(testServer, testUser, testClient, testID)
	if allocs := testing.AllocsPerRun(100, func() {
		if _, ok := ids.Open(testServer, testUser, testClient, sealed); !ok {
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
		sealed := ids.Seal(testServer, user, client, upstream)
		got, ok := ids.Open(testServer, user, client, sealed)
		if upstream != "" && len(sealed) <= maxSessionID && (!ok || got != upstream) {
			t.Fatalf("%q sealed as %q does not open: %q %v", upstream, sealed, got, ok)
		}
		if _, ok := ids.Open(testServer, user+"x", client, sealed); ok {
			t.Fatalf("%q opens for another user", sealed)
		}
		if _, ok := ids.Open(testServer, user, client+"x", sealed); ok {
			t.Fatalf("%q opens for another client", sealed)
		}
		if got, ok := ids.Open(testServer, user, client, presented); ok && ids.Seal(testServer, user, client, got) != presented {
			t.Fatalf("%q was accepted, but %q is what was sealed for %q", presented, ids.Seal(testServer, user, client, got), got)
		}
	})
}

// BenchmarkSessionIDs is the cost the session binding adds to a proxied
// request: Open of the client's session ID on the way in, and Seal of the
// upstream's on the way out (when the upstream sends one).
func BenchmarkSessionIDs(b *testing.B) {
	ids := testSessionIDs(b, "acme")
	sealed := ids.Seal(testServer, testUser, testClient, testID)
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := ids.Open(testServer, testUser, testClient, sealed); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ids.Seal(testServer, testUser, testClient, testID)
		}
	})
}
