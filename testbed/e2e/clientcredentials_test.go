package e2e_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/auth/extauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// machineClients are clients of the config that use the client
// credentials grant: one with a secret and a downstream token of its own,
// one with a private_key_jwt key, one acting as a user who authorized
// once.
const machineClients = `client ci-bot {
				secret {env.CI_BOT_SECRET}
				client_credentials {
					scopes tickets.read tickets.write
				}
			}
			client key-bot {
				public_key {env.KEY_BOT_PUBLIC_KEY}
				client_credentials
			}
			client svc-account {
				secret {env.CI_BOT_SECRET}
				servers support-assistant
				client_credentials {
					as_user demo-user
				}
			}`

const ciBotSecret = "ci-bot-secret-0123456789"

// startMachineEnv starts the gateway with the machine clients, at a
// provider that offers the client credentials grant, and returns it with
// key-bot's private key.
func startMachineEnv(t *testing.T) (*env, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CI_BOT_SECRET", ciBotSecret)
	t.Setenv("KEY_BOT_PUBLIC_KEY", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	e := startEnv(t, testenv.ProviderConfig{ClientCredentials: true}, withLines("", machineClients))
	return e, key
}

// clientCredentials posts a client credentials request with form and
// basic (client_id:secret by HTTP Basic, or nothing) to server's token
// endpoint.
func (e *env) clientCredentials(t *testing.T, server string, form url.Values, basicID, basicSecret string) tokens {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	req, err := http.NewRequest(http.MethodPost, e.public+"/oauth/"+server+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	tok, err := testenv.ReadTokens(http.DefaultClient.Do(req))
	return answered(t, tok, err)
}

// assertion signs a client assertion of clientID for aud.
func assertion(t *testing.T, key *ecdsa.PrivateKey, clientID, aud, jti string) string {
	t.Helper()
	now := time.Now()
	signed, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		Issuer: clientID, Subject: clientID, Audience: jwt.ClaimStrings{aud}, ID: jti,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(2 * time.Minute)),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func assertionForm(signed string) url.Values {
	return url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {signed}}
}

// downstreamOf calls whoami through the gateway with bearer and returns
// what the provider says of the token the upstream received.
func (e *env) downstreamOf(t *testing.T, path, bearer string) (testenv.WhoAmI, testenv.TokenInfo) {
	t.Helper()
	res, err := e.callTool(t, path, bearer, "whoami", map[string]any{})
	if err != nil {
		t.Fatalf("whoami through the gateway: %v", err)
	}
	who := whoami(t, res)
	got := strings.TrimPrefix(who.Authorization, "Bearer ")
	if got == bearer {
		t.Fatal("the gateway's own token reached the upstream")
	}
	info, ok := e.provider.TokenInfo(got)
	if !ok {
		t.Fatalf("the upstream got %q, which the provider did not issue", who.Authorization)
	}
	return who, info
}

// downstreamVia connects the go-sdk client to path with handler
// authorizing it, calls whoami, and returns what the provider says of the
// token the upstream received.
func (e *env) downstreamVia(t *testing.T, path string, handler auth.OAuthHandler) (testenv.WhoAmI, testenv.TokenInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := mcp.NewClient(&mcp.Implementation{Name: "sdk-oauth-handler", Version: "1"}, nil)
	session, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.public + path, OAuthHandler: handler}, nil)
	if err != nil {
		t.Fatalf("connecting with %T: %v", handler, err)
	}
	defer session.Close()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	who := whoami(t, res)
	info, ok := e.provider.TokenInfo(strings.TrimPrefix(who.Authorization, "Bearer "))
	if !ok {
		t.Fatalf("the upstream got %q, which the provider did not issue", who.Authorization)
	}
	return who, info
}

// TestClientCredentials covers the MCP authorization extension
// io.modelcontextprotocol/oauth-client-credentials: clients of the config
// with no person present obtain tokens with their secret or a
// private_key_jwt assertion, and their calls reach the upstream with a
// downstream token (the gateway's own client credentials grant, or the
// grant of the user a service account acts as), never the gateway's.
func TestClientCredentials(t *testing.T) {
	e, key := startMachineEnv(t)
	supportIssuer := e.public + "/oauth/support-assistant"

	t.Run("metadata advertises the grant and private_key_jwt", func(t *testing.T) {
		var md struct {
			GrantTypes  []string `json:"grant_types_supported"`
			AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
			SigningAlgs []string `json:"token_endpoint_auth_signing_alg_values_supported"`
		}
		if _, err := testenv.GetJSON(e.public+"/.well-known/oauth-authorization-server/oauth/support-assistant", "", &md); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(md.GrantTypes, "client_credentials") || !slices.Contains(md.AuthMethods, "private_key_jwt") ||
			!slices.Contains(md.AuthMethods, "client_secret_basic") || !slices.Contains(md.SigningAlgs, "ES256") || slices.Contains(md.SigningAlgs, "HS256") {
			t.Errorf("authorization server metadata: %+v", md)
		}
	})

	t.Run("the Go SDK's ClientCredentialsHandler calls a tool", func(t *testing.T) {
		h, err := extauth.NewClientCredentialsHandler(&extauth.ClientCredentialsHandlerConfig{
			Credentials: &oauthex.ClientCredentials{ClientID: "ci-bot", ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: ciBotSecret}},
		})
		if err != nil {
			t.Fatal(err)
		}
		who, info := e.downstreamVia(t, "/support", h)
		// The gateway's own downstream client's token, for what ci-bot
		// was granted at this server (support's scopes within ci-bot's)
		// and the gateway's audience.
		if info.Subject != testenv.DefaultClientID || !slices.Equal(info.Scopes, []string{"tickets.read"}) || !slices.Contains(info.Audience, testenv.DefaultAudience) {
			t.Errorf("downstream token: %+v", info)
		}
		if who.XHeaders["X-Mcp-User"] != "ci-bot" || who.XHeaders["X-Mcp-Scopes"] != "tickets.read" {
			t.Errorf("placeholder headers at the upstream: %v", who.XHeaders)
		}
	})

	t.Run("the downstream token is obtained once and reused", func(t *testing.T) {
		before := len(e.provider.ClientCredentialsScopes())
		for range 2 {
			tok := e.clientCredentials(t, "support-assistant", url.Values{}, "ci-bot", ciBotSecret)
			if tok.Status != http.StatusOK || tok.RefreshToken != "" || tok.Scope != "tickets.read" {
				t.Fatalf("token: %d %q refresh %v %s", tok.Status, tok.Scope, tok.RefreshToken != "", tok.Description)
			}
			e.downstreamOf(t, "/support", tok.AccessToken)
		}
		if after := e.provider.ClientCredentialsScopes(); len(after) != before {
			t.Errorf("the provider was asked again for the same scopes: %v", after[before:])
		}
		// Another server, another scope set: a token of its own, narrowed.
		tok := e.clientCredentials(t, "ops-console", url.Values{"scope": {"tickets.write"}}, "ci-bot", ciBotSecret)
		if tok.Status != http.StatusOK || tok.Scope != "tickets.write" {
			t.Fatalf("ops token: %d %q %s", tok.Status, tok.Scope, tok.Description)
		}
		if _, info := e.downstreamOf(t, "/ops", tok.AccessToken); !slices.Equal(info.Scopes, []string{"tickets.write"}) {
			t.Errorf("ops downstream token scopes %v, want [tickets.write]", info.Scopes)
		}
	})

	t.Run("private_key_jwt without client_id", func(t *testing.T) {
		// The TypeScript SDK's audience, the issuer; RFC 7523's, the token
		// endpoint.
		for _, aud := range []string{supportIssuer, supportIssuer + "/token"} {
			tok := e.clientCredentials(t, "support-assistant", assertionForm(assertion(t, key, "key-bot", aud, rand.Text())), "", "")
			if tok.Status != http.StatusOK || tok.Scope != "accounts.read tickets.read" {
				t.Fatalf("aud %s: %d %q %s", aud, tok.Status, tok.Scope, tok.Description)
			}
			if who, _ := e.downstreamOf(t, "/support", tok.AccessToken); who.XHeaders["X-Mcp-User"] != "key-bot" {
				t.Errorf("upstream saw user %q", who.XHeaders["X-Mcp-User"])
			}
		}
	})

	t.Run("as_user acts with the user's grant once they authorized", func(t *testing.T) {
		wantTokenError(t, e.clientCredentials(t, "support-assistant", url.Values{}, "svc-account", ciBotSecret), http.StatusBadRequest, "invalid_grant")
		e.register(t, "support-assistant").login(t, "support-assistant", "")
		tok := e.clientCredentials(t, "support-assistant", url.Values{"scope": {"tickets.read"}}, "svc-account", ciBotSecret)
		if tok.Status != http.StatusOK || tok.Scope != "tickets.read" {
			t.Fatalf("token: %d %q %s", tok.Status, tok.Scope, tok.Description)
		}
		if _, info := e.downstreamOf(t, "/support", tok.AccessToken); info.Subject != testenv.DefaultUser().Subject || !slices.Contains(info.Scopes, "tickets.read") || slices.Contains(info.Scopes, "accounts.read") {
			t.Errorf("downstream token: %+v, want the user's narrowed to tickets.read", info)
		}
		// svc-account is limited to support-assistant.
		wantTokenError(t, e.clientCredentials(t, "ops-console", url.Values{}, "svc-account", ciBotSecret), http.StatusBadRequest, "unauthorized_client")
	})

	t.Run("the admin API revokes a client's tokens", func(t *testing.T) {
		tok := e.clientCredentials(t, "support-assistant", url.Values{}, "ci-bot", ciBotSecret)
		e.downstreamOf(t, "/support", tok.AccessToken)
		req, _ := http.NewRequest(http.MethodDelete, "http://"+e.admin+"/mcp_gateway/gateways/acme/grants?client_id=ci-bot", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"revoked":["`) {
			t.Fatalf("revoking ci-bot's grants: %d %s", resp.StatusCode, body)
		}
		if _, err := e.callTool(t, "/support", tok.AccessToken, "whoami", map[string]any{}); err == nil {
			t.Fatal("a revoked client credentials token still reached the upstream")
		}
		// The client may ask again: the grant is its credentials.
		e.downstreamOf(t, "/support", e.clientCredentials(t, "support-assistant", url.Values{}, "ci-bot", ciBotSecret).AccessToken)
	})
}

// TestClientCredentialsRefusals: the client credentials grant is refused,
// with the OAuth error that says why, to a client that registered
// itself, a wrong secret, a replayed or misdirected assertion, and a
// scope outside the server.
func TestClientCredentialsRefusals(t *testing.T) {
	e, key := startMachineEnv(t)
	supportIssuer := e.public + "/oauth/support-assistant"

	t.Run("a self-registered client", func(t *testing.T) {
		body := `{"redirect_uris":["` + clientRedirect + `"],"token_endpoint_auth_method":"client_secret_basic","client_name":"Self"}`
		resp, err := http.Post(e.public+"/oauth/support-assistant/register", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var reg struct {
			ID     string `json:"client_id"`
			Secret string `json:"client_secret"`
		}
		err = json.NewDecoder(resp.Body).Decode(&reg)
		resp.Body.Close()
		if err != nil || reg.Secret == "" {
			t.Fatalf("registration: %d %v", resp.StatusCode, err)
		}
		wantTokenError(t, e.clientCredentials(t, "support-assistant", url.Values{}, reg.ID, reg.Secret), http.StatusBadRequest, "unauthorized_client")
		// Nor may it register for the grant.
		resp, err = http.Post(e.public+"/oauth/support-assistant/register", "application/json",
			strings.NewReader(`{"redirect_uris":["`+clientRedirect+`"],"grant_types":["client_credentials"]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("registering for client_credentials: %d, want 400", resp.StatusCode)
		}
	})

	t.Run("a wrong secret", func(t *testing.T) {
		wantTokenError(t, e.clientCredentials(t, "support-assistant", url.Values{}, "ci-bot", "wrong"), http.StatusUnauthorized, "invalid_client")
		wantTokenError(t, e.clientCredentials(t, "support-assistant", url.Values{"client_id": {"ci-bot"}, "client_secret": {"wrong"}}, "", ""), http.StatusUnauthorized, "invalid_client")
	})

	t.Run("a key client without its assertion", func(t *testing.T) {
		wantTokenError(t, e.clientCredentials(t, "support-assistant", url.Values{"client_id": {"key-bot"}}, "", ""), http.StatusUnauthorized, "invalid_client")
	})

	t.Run("a replayed assertion", func(t *testing.T) {
		signed := assertion(t, key, "key-bot", supportIssuer, rand.Text())
		if tok := e.clientCredentials(t, "support-assistant", assertionForm(signed), "", ""); tok.Status != http.StatusOK {
			t.Fatalf("first use: %d %s", tok.Status, tok.Description)
		}
		wantTokenError(t, e.clientCredentials(t, "support-assistant", assertionForm(signed), "", ""), http.StatusUnauthorized, "invalid_client")
	})

	t.Run("an assertion for another audience", func(t *testing.T) {
		for _, aud := range []string{e.public + "/oauth/ops-console", e.public + "/oauth/ops-console/token", e.provider.Issuer(), e.public} {
			wantTokenError(t, e.clientCredentials(t, "support-assistant", assertionForm(assertion(t, key, "key-bot", aud, rand.Text())), "", ""), http.StatusUnauthorized, "invalid_client")
		}
	})

	t.Run("an assertion signed by another key", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		wantTokenError(t, e.clientCredentials(t, "support-assistant", assertionForm(assertion(t, other, "key-bot", supportIssuer, rand.Text())), "", ""), http.StatusUnauthorized, "invalid_client")
	})

	t.Run("a scope outside the server", func(t *testing.T) {
		wantTokenError(t, e.clientCredentials(t, "support-assistant", url.Values{"scope": {"admin.read"}}, "ci-bot", ciBotSecret), http.StatusBadRequest, "invalid_scope")
		// Within the server but beyond what the client may have.
		wantTokenError(t, e.clientCredentials(t, "support-assistant", url.Values{"scope": {"accounts.read"}}, "ci-bot", ciBotSecret), http.StatusBadRequest, "invalid_scope")
		wantTokenError(t, e.clientCredentials(t, "support-assistant", url.Values{"resource": {e.public + "/ops"}}, "ci-bot", ciBotSecret), http.StatusBadRequest, "invalid_target")
	})

	t.Run("a token of one server at another", func(t *testing.T) {
		tok := e.clientCredentials(t, "support-assistant", url.Values{}, "ci-bot", ciBotSecret)
		if _, err := e.callTool(t, "/ops", tok.AccessToken, "whoami", map[string]any{}); err == nil {
			t.Error("a support-assistant client credentials token was accepted by ops-console")
		}
	})
}
