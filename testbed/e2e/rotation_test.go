package e2e_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/gateway"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// keysAnswer is the admin API's answer about a gateway's signing keys.
type keysAnswer struct {
	Kid  string `json:"kid"`
	Keys []struct {
		Kid       string    `json:"kid"`
		CreatedAt time.Time `json:"created_at"`
		RetiresAt time.Time `json:"retires_at"`
		Signing   bool      `json:"signing"`
	} `json:"keys"`
}

func (k keysAnswer) kids() []string {
	var out []string
	for _, key := range k.Keys {
		out = append(out, key.Kid)
	}
	return out
}

// adminKeys calls an instance's admin API about gateway acme's keys and
// fails t unless it answers 200.
func adminKeys(t *testing.T, admin, method, path string) keysAnswer {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+admin+"/mcp_gateway/gateways/acme/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out keysAnswer
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, body)
	}
	if strings.Contains(string(body), `"d"`) || strings.Contains(string(body), "private") {
		t.Errorf("%s %s shows more than public keys: %s", method, path, body)
	}
	return out
}

// jwksKids returns the key IDs an instance publishes at the jwks_uri of
// support-assistant, in order.
func jwksKids(t *testing.T, site string) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	resp, err := testenv.GetJSON(site+"/oauth/support-assistant/jwks", "", &set)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks at %s: %d", site, resp.StatusCode)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// kidOf returns the key ID in a JWT's header.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	header, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("token header: %v", err)
	}
	return h.Kid
}

// TestKeyRotationAcrossInstances rotates the signing key through the admin
// API of one instance of a two-instance cluster, with no downtime: tokens
// signed before keep working on both instances, the other instance signs
// with and publishes the new key within its poll interval without being
// told, tokens signed after work on both, and a rotation on the other
// instance is verified at once by the first.
func TestKeyRotationAcrossInstances(t *testing.T) {
	cl := startCluster(t, "storage file_system "+t.TempDir(), testenv.ProviderConfig{})
	c := (&env{t: t, public: cl.public}).register(t, "support-assistant")
	onA := c.on(cl.a)
	// issuedBy returns an access token signed by the instance at site: the
	// browser signs in through the public URL (A), and the code is
	// redeemed at site.
	issuedBy := func(site string) string {
		t.Helper()
		code, verifier := onA.code(t, "support-assistant", nil)
		tok := c.on(site).redeem(t, "support-assistant", code, verifier)
		if tok.Status != http.StatusOK {
			t.Fatalf("redeeming a code at %s: %d %s", site, tok.Status, tok.Description)
		}
		return tok.AccessToken
	}
	works := func(what, token string) {
		t.Helper()
		for _, site := range []string{cl.a, cl.b} {
			if status, _ := challengeOf(t, site+"/support", token); status != http.StatusOK {
				t.Errorf("%s on %s: %d", what, site, status)
			}
		}
	}

	before := issuedBy(cl.a)
	first := kidOf(t, before)
	works("a token signed before the rotation", before)
	if got := adminKeys(t, cl.adminB, http.MethodGet, "keys").kids(); !slices.Equal(got, []string{first}) {
		t.Fatalf("B's keys before the rotation: %v, want [%s]", got, first)
	}

	// A rotates: it answers with the new key, which signs, and the old
	// one, which retires RetireAfter (a day and an hour) later.
	rotated := adminKeys(t, cl.adminA, http.MethodPost, "keys/rotate")
	if rotated.Kid == "" || rotated.Kid == first || !slices.Equal(rotated.kids(), []string{rotated.Kid, first}) ||
		!rotated.Keys[0].Signing || rotated.Keys[1].Signing || !rotated.Keys[0].RetiresAt.IsZero() ||
		rotated.Keys[1].RetiresAt.Sub(rotated.Keys[0].CreatedAt) != 25*time.Hour {
		t.Fatalf("rotation on A answered %+v", rotated)
	}
	if got := jwksKids(t, cl.a); !slices.Equal(got, []string{rotated.Kid, first}) {
		t.Errorf("A publishes %v after its rotation, want the new key and the old one", got)
	}
	works("a token signed before the rotation, after it", before)

	// B was not told and has seen no token of the new key: it picks the
	// key up from storage on its poll.
	waitUntil(t, 3*gateway.PollInterval, "B publishes the key A rotated in", func() error {
		if got := jwksKids(t, cl.b); !slices.Equal(got, []string{rotated.Kid, first}) {
			return fmt.Errorf("B publishes %v", got)
		}
		return nil
	})
	for _, site := range []string{cl.a, cl.b} {
		tok := issuedBy(site)
		if kid := kidOf(t, tok); kid != rotated.Kid {
			t.Errorf("%s signs with %s after the rotation, want the new key %s", site, kid, rotated.Kid)
		}
		works("a token "+site+" signed after the rotation", tok)
	}

	// A second rotation, on B: a token B signs at once verifies on A, which
	// reads the keys when it meets an unknown key (or on its poll, if that
	// comes first).
	again := adminKeys(t, cl.adminB, http.MethodPost, "keys/rotate")
	if !slices.Equal(again.kids(), []string{again.Kid, rotated.Kid, first}) {
		t.Fatalf("second rotation, on B, answered %v, want the new key and both earlier ones", again.kids())
	}
	tok := issuedBy(cl.b)
	if kid := kidOf(t, tok); kid != again.Kid {
		t.Fatalf("B signs with %s after its rotation, want %s", kid, again.Kid)
	}
	works("a token B signed right after its rotation", tok)
	works("a token signed before both rotations", before)
	if got := jwksKids(t, cl.a); !slices.Equal(got, again.kids()) {
		t.Errorf("A publishes %v, want %v", got, again.kids())
	}

	// Rotation is a POST: a GET, which a prefetching tool may send, rotates
	// nothing.
	resp, err := http.Get("http://" + cl.adminA + "/mcp_gateway/gateways/acme/keys/rotate")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET keys/rotate: %d, want 405", resp.StatusCode)
	}
	if got := adminKeys(t, cl.adminA, http.MethodGet, "keys").kids(); !slices.Equal(got, again.kids()) {
		t.Errorf("after a GET of keys/rotate A has keys %v, want %v", got, again.kids())
	}
}
