package interop_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// clientCredentialsSteps are the steps sdk-client-credentials.mjs must
// report.
var clientCredentialsSteps = []string{
	"ClientCredentialsProvider: client_secret_basic, then tools/call whoami",
	"PrivateKeyJwtProvider: a private_key_jwt assertion, then tools/call whoami",
	"PrivateKeyJwtProvider: a second server, a new assertion",
	"a wrong secret is refused",
}

// TestTypeScriptSDKClientCredentials runs the official TypeScript SDK's
// ClientCredentialsProvider and PrivateKeyJwtProvider (the MCP extension
// io.modelcontextprotocol/oauth-client-credentials) against machine
// clients of the config: each discovers the gateway's authorization
// server from the 401, gets a token with no person present and calls
// tools, and the upstream receives the gateway's downstream client
// credentials token, never the gateway's.
func TestTypeScriptSDKClientCredentials(t *testing.T) {
	requireModule(t, "@modelcontextprotocol/sdk")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "ci-bot-secret-0123456789"
	t.Setenv("CI_BOT_SECRET", secret)
	t.Setenv("KEY_BOT_PUBLIC_KEY", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))
	g := startGateway(t, gatewayOptions{clientCredentials: true, acme: `client ci-bot {
				secret {env.CI_BOT_SECRET}
				client_credentials
			}
			client key-bot {
				public_key {env.KEY_BOT_PUBLIC_KEY}
				client_credentials
			}`})
	out := runNode(t, time.Minute, []string{"KEY_BOT_PRIVATE_KEY=" + string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}))},
		"sdk-client-credentials.mjs", g.public)

	var summary struct{ Passed []string }
	seen := map[string]testenv.WhoAmI{}
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "SUMMARY "); ok {
			if err := json.Unmarshal([]byte(rest), &summary); err != nil {
				t.Fatalf("summary line %q: %v", rest, err)
			}
		}
		if rest, ok := strings.CutPrefix(line, "WHOAMI "); ok {
			label, body, _ := strings.Cut(rest, " ")
			var who testenv.WhoAmI
			if err := json.Unmarshal([]byte(body), &who); err != nil {
				t.Fatalf("whoami line %q: %v", rest, err)
			}
			seen[label] = who
		}
	}
	for _, s := range clientCredentialsSteps {
		if !slices.Contains(summary.Passed, s) {
			t.Errorf("sdk-client-credentials.mjs did not pass %q\n%s", s, out)
		}
	}
	// What each upstream call carried: a token the provider issued to the
	// gateway's downstream client, for the server's scopes.
	for label, want := range map[string][]string{
		"ci-bot":      {"accounts.read", "tickets.read"},
		"key-bot":     {"accounts.read", "tickets.read"},
		"key-bot-ops": {"admin.read", "tickets.write"},
	} {
		who, ok := seen[label]
		if !ok {
			t.Errorf("no whoami of %s\n%s", label, out)
			continue
		}
		info, ok := g.provider.TokenInfo(strings.TrimPrefix(who.Authorization, "Bearer "))
		if !ok {
			t.Errorf("%s: the upstream got a token the provider did not issue", label)
			continue
		}
		if got := slices.Sorted(slices.Values(info.Scopes)); info.Subject != testenv.DefaultClientID || !slices.Equal(got, want) || !slices.Contains(info.Audience, testenv.DefaultAudience) {
			t.Errorf("%s: downstream token %+v, want the gateway's client's with %v", label, info, want)
		}
	}
	t.Logf("TypeScript SDK machine clients:\n%s", out)
}
