package e2e_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// challengeOf posts an MCP initialize request with a bearer token and
// returns the status and the WWW-Authenticate header.
func challengeOf(t *testing.T, target, token string) (int, string) {
	t.Helper()
	resp, _, err := testenv.PostMCP(target, token,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// TestTokenChecksOnEveryCall checks what the gateway refuses on a server
// path: tokens of another server, forged tokens, and tokens whose scopes
// the server no longer offers.
func TestTokenChecksOnEveryCall(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	c := e.register(t, "support-assistant")
	support := c.login(t, "support-assistant", "accounts.read")
	ops := c.login(t, "ops-console", "")

	// The official SDK client lists the tools of each server through the
	// gateway.
	for _, s := range []struct{ path, token, tool string }{
		{"/support", support.AccessToken, "list_tickets"},
		{"/ops", ops.AccessToken, "restart_service"},
	} {
		names := sessionTools(t, connect(t, e.public+s.path, &recordingTransport{token: s.token}))
		if !strings.Contains(strings.Join(names, " "), s.tool) || !strings.Contains(strings.Join(names, " "), "whoami") {
			t.Errorf("%s lists tools %v", s.path, names)
		}
	}

	status, challenge := challengeOf(t, e.public+"/ops", support.AccessToken)
	if status != http.StatusUnauthorized || !strings.Contains(challenge, `error="invalid_token"`) {
		t.Errorf("a support-assistant token on ops-console: %d %s", status, challenge)
	}

	parts := strings.Split(support.AccessToken, ".")
	header := map[string]any{}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[0])
	_ = json.Unmarshal(raw, &header)
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(support.AccessToken, claims); err != nil {
		t.Fatal(err)
	}
	kid, _ := header["kid"].(string)
	forged := map[string]string{}

	none := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	none.Header["kid"] = kid
	forged["alg none"], _ = none.SignedString(jwt.UnsafeAllowNoneSignatureType)

	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	hs.Header["kid"] = kid
	forged["HS256 keyed with the public key"], _ = hs.SignedString(publicKeyPEM(t, e.public+"/oauth/support-assistant/jwks", kid))

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	es := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	es.Header["kid"] = kid
	forged["another key's signature"], _ = es.SignedString(other)

	wider := jwt.MapClaims{}
	for k, v := range claims {
		wider[k] = v
	}
	wider["scope"] = "accounts.read tickets.read"
	body, _ := json.Marshal(wider)
	forged["tampered claims"] = parts[0] + "." + base64.RawURLEncoding.EncodeToString(body) + "." + parts[2]
	forged["not a JWT"] = "opaque-token"

	for name, token := range forged {
		if token == "" {
			t.Fatalf("%s: could not build the token", name)
		}
		status, challenge := challengeOf(t, e.public+"/support", token)
		if status != http.StatusUnauthorized || !strings.Contains(challenge, `error="invalid_token"`) || !strings.Contains(challenge, "resource_metadata=") {
			t.Errorf("%s: %d %s", name, status, challenge)
		}
	}
	if status, _ := challengeOf(t, e.public+"/support", support.AccessToken); status != http.StatusOK {
		t.Fatalf("the genuine token was refused: %d", status)
	}

	// After a reload narrows support-assistant to tickets.read, a token that
	// holds only accounts.read no longer fits it.
	e.load("tickets.read")
	status, challenge = challengeOf(t, e.public+"/support", support.AccessToken)
	if status != http.StatusForbidden || !strings.Contains(challenge, `error="insufficient_scope"`) || !strings.Contains(challenge, `scope="tickets.read"`) {
		t.Errorf("a token without the server's scopes: %d %s", status, challenge)
	}
}

// publicKeyPEM fetches the gateway's JWKS and returns the PEM of key kid,
// as an attacker would to try an HS256 key-confusion forgery.
func publicKeyPEM(t *testing.T, jwksURL, kid string) []byte {
	t.Helper()
	resp, err := http.Get(jwksURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct{ Kid, X, Y string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if k.Kid != kid {
			continue
		}
		x, _ := base64.RawURLEncoding.DecodeString(k.X)
		y, _ := base64.RawURLEncoding.DecodeString(k.Y)
		der, err := x509.MarshalPKIXPublicKey(&ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)})
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	t.Fatalf("kid %s is not in the JWKS", kid)
	return nil
}

// TestDownstreamRefreshAndRevocation shortens the provider's token lifetime
// so the gateway must refresh: many concurrent calls cause one refresh, and
// a revoked grant sends the client back to authorize.
func TestDownstreamRefreshAndRevocation(t *testing.T) {
	// The broker refreshes a token when half its lifetime (at most 30s) is
	// left: a 4s lifetime is due after 2s and fresh for 2s after a refresh.
	e := startEnv(t, testenv.ProviderConfig{AccessTokenTTL: 4 * time.Second})
	c := e.register(t, "support-assistant")
	tok := c.login(t, "support-assistant", "")
	time.Sleep(2500 * time.Millisecond)

	before := e.provider.RefreshCount()
	var wg sync.WaitGroup
	statuses := make(chan int, 16)
	for range 16 {
		wg.Go(func() {
			status, _ := challengeOf(t, e.public+"/support", tok.AccessToken)
			statuses <- status
		})
	}
	wg.Wait()
	close(statuses)
	for status := range statuses {
		if status != http.StatusOK {
			t.Errorf("a call across the downstream expiry got %d", status)
		}
	}
	if n := e.provider.RefreshCount() - before; n != 1 {
		t.Errorf("16 concurrent calls caused %d downstream refreshes, want 1", n)
	}
	res, err := e.callTool(t, "/support", tok.AccessToken, "whoami", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.provider.TokenInfo(strings.TrimPrefix(whoami(t, res).Authorization, "Bearer ")); !ok {
		t.Error("after the refresh the upstream got a token the provider does not know")
	}

	// The provider ends the user's grant: once the cached token needs a
	// refresh, the client is sent to authorize again.
	if e.provider.RevokeUserTokens(testenv.DefaultUser().Subject) == 0 {
		t.Fatal("the provider had no tokens to revoke")
	}
	waitUntil(t, 10*time.Second, "the revoked grant sends the client to authorize", func() error {
		status, challenge := challengeOf(t, e.public+"/support", tok.AccessToken)
		if status != http.StatusUnauthorized || !strings.Contains(challenge, "resource_metadata=") {
			return fmt.Errorf("after the downstream revocation: %d %s", status, challenge)
		}
		return nil
	})
	again := c.login(t, "support-assistant", "")
	if status, _ := challengeOf(t, e.public+"/support", again.AccessToken); status != http.StatusOK {
		t.Errorf("after authorizing again: %d", status)
	}
}

// TestUpstreamDown checks that a dead upstream gets a JSON 502 and leaves
// the user's grant alone.
func TestUpstreamDown(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	c := e.register(t, "support-assistant")
	support := c.login(t, "support-assistant", "")
	ops := c.login(t, "ops-console", "")
	e.ops.Close()

	req, _ := http.NewRequest(http.MethodPost, e.public+"/ops", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Authorization", "Bearer "+ops.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var oerr struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if resp.StatusCode != http.StatusBadGateway || json.Unmarshal(body, &oerr) != nil || oerr.Error == "" || oerr.ErrorDescription == "" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("upstream down: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if status, _ := challengeOf(t, e.public+"/support", support.AccessToken); status != http.StatusOK {
		t.Errorf("the user's grant did not survive an upstream failure: %d", status)
	}
}
