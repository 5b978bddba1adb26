package authserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

const (
	// machineClient is a machine client of the config with a secret,
	// allowed tickets.read and tickets.write.
	machineClient = "ci-bot"
	machineSecret = "ci-bot-secret-of-32-bytes-or-so."
	// keyClient is a machine client with a private_key_jwt key.
	keyClient = "key-bot"
)

// machineDownstream stands for the downstream server's client credentials
// grant: it records the scope names of each request and answers a token
// that names them.
type machineDownstream struct {
	mu    sync.Mutex
	asked [][]string
}

func (d *machineDownstream) ClientCredentials(_ context.Context, names []string) (*oauth2.Token, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked = append(d.asked, names)
	return &oauth2.Token{AccessToken: "machine-" + strings.Join(names, "+"), Expiry: time.Now().Add(time.Hour)}, nil
}

// withMachines adds the machine clients to the test edge's gateway, and
// returns their downstream and key-bot's private key.
func (te *testEdge) withMachines() (*machineDownstream, *ecdsa.PrivateKey) {
	te.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		te.t.Fatal(err)
	}
	d := &machineDownstream{}
	te.gw.Clients[machineClient] = &grants.Client{
		ID: machineClient, SecretHash: grants.HashSecret(machineSecret), TokenEndpointAuthMethod: "client_secret_basic",
		GrantTypes: []string{authserver.GrantClientCredentials}, Source: grants.SourceConfig,
	}
	te.gw.Clients[keyClient] = &grants.Client{
		ID: keyClient, TokenEndpointAuthMethod: authserver.AuthPrivateKeyJWT,
		GrantTypes: []string{authserver.GrantClientCredentials}, Source: grants.SourceConfig,
	}
	te.gw.Machines = map[string]*authserver.MachineClient{
		machineClient: {Scopes: scopes.MustParse("tickets.read tickets.write"), Downstream: d, TokenKey: machineClient},
		keyClient:     {Keys: &authserver.ClientKeys{Key: &key.PublicKey}, Downstream: d, TokenKey: keyClient},
	}
	return d, key
}

// clientAssertion signs an assertion of keyClient for aud.
func clientAssertion(t *testing.T, key *ecdsa.PrivateKey, aud string) string {
	t.Helper()
	now := time.Now()
	signed, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		Issuer: keyClient, Subject: keyClient, Audience: jwt.ClaimStrings{aud}, ID: rand.Text(),
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// TestClientCredentialsGrant: a machine client of the config gets an
// access token of its own (no refresh token, the scopes its server offers
// that it may have), whose requests carry the downstream token of its own
// client credentials grant, obtained once per scope set; the metadata
// advertises the grant only where the gateway has such clients; a token
// whose client stopped being one is refused.
func TestClientCredentialsGrant(t *testing.T) {
	te := newTestEdge(t)
	metadata := func() (md struct {
		GrantTypes  []string `json:"grant_types_supported"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}) {
		t.Helper()
		w := te.serve(httptest.NewRequest(http.MethodGet, publicURL+"/.well-known/oauth-authorization-server/oauth/support", nil))
		if err := json.Unmarshal(w.Body.Bytes(), &md); err != nil {
			t.Fatal(err)
		}
		return md
	}
	if md := metadata(); slices.Contains(md.GrantTypes, "client_credentials") || slices.Contains(md.AuthMethods, "private_key_jwt") {
		t.Errorf("a gateway without machine clients advertises %+v", md)
	}
	d, key := te.withMachines()
	if md := metadata(); !slices.Contains(md.GrantTypes, "client_credentials") || !slices.Contains(md.AuthMethods, "private_key_jwt") {
		t.Errorf("a gateway with machine clients advertises %+v", md)
	}

	ask := func() tokens {
		r := postForm("/oauth/support/token", url.Values{"grant_type": {"client_credentials"}})
		r.Header.Set("Authorization", basicAuth(machineClient, machineSecret))
		return wantTokens(t, te.serve(r))
	}
	tok := ask()
	if tok.RefreshToken != "" || tok.Scope != "tickets.read" {
		t.Fatalf("token: scope %q, refresh token %v; want tickets.read and none", tok.Scope, tok.RefreshToken != "")
	}
	for range 2 {
		access, ok, w := te.callAuthorize(mcpCall(te.support, ask().AccessToken, pingBody), te.support)
		if !ok {
			t.Fatalf("a machine client's token refused: %d %s", w.Code, w.Body)
		}
		if access.DownstreamToken != "machine-tickets.read" || access.Claims.Subject != machineClient || access.Claims.GrantType != "client_credentials" {
			t.Errorf("access: downstream %q, claims %+v", access.DownstreamToken, access.Claims)
		}
	}
	if len(d.asked) != 1 {
		t.Errorf("the downstream server was asked %d times for one scope set: %v", len(d.asked), d.asked)
	}

	// private_key_jwt, with the issuer as the assertion's audience and no
	// client_id; the same assertion a second time is a replay.
	signed := clientAssertion(t, key, te.support.Issuer)
	form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {authserver.AssertionType}, "client_assertion": {signed}}
	if tok := wantTokens(t, te.serve(postForm("/oauth/support/token", form))); tok.Scope != "accounts.read tickets.read" {
		t.Errorf("key-bot's token has scope %q, want the server's", tok.Scope)
	}
	wantOAuthError(t, te.serve(postForm("/oauth/support/token", form)), http.StatusUnauthorized, "invalid_client")

	// A client the config no longer lets use the grant.
	te.gw.Machines = nil
	if _, ok, w := te.callAuthorize(mcpCall(te.support, tok.AccessToken, pingBody), te.support); ok || w.Code != http.StatusUnauthorized {
		t.Errorf("a token of a former machine client: ok %v, %d %s", ok, w.Code, w.Body)
	}
}

// TestKeyClientFailuresCountPerAddress: junk assertions naming a key
// client, sent from one address, use up that address's allowance of
// failed authentications for the client and no one else's: the client
// itself, at another address, still gets its token. A signature cannot be
// guessed, so nothing is given away. Secret clients keep one allowance per
// client, whatever the address, since a secret can be guessed.
func TestKeyClientFailuresCountPerAddress(t *testing.T) {
	te := newTestEdge(t)
	limits := authserver.Limits{ClientAuthFailures: authserver.DefaultLimits.ClientAuthFailures, Token: authserver.DefaultLimits.Token}
	te.edge = authserver.New(authserver.Options{PublicURL: publicURL, Now: te.clock.Now, Limits: limits}, []*authserver.Server{te.support, te.ops})
	_, key := te.withMachines()
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	from := func(addr string, r *http.Request) *http.Request {
		r.RemoteAddr = addr + ":40000"
		return r
	}
	const attacker, owner = "203.0.113.9", "198.51.100.7"
	assertionForm := func(signed string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {authserver.AssertionType}, "client_assertion": {signed}}
	}
	limit := limits.ClientAuthFailures.Events
	for range limit {
		junk := assertionForm(clientAssertion(t, other, te.support.Issuer))
		wantOAuthError(t, te.serve(from(attacker, postForm("/oauth/support/token", junk))), http.StatusUnauthorized, "invalid_client")
	}
	junk := assertionForm(clientAssertion(t, other, te.support.Issuer))
	wantOAuthError(t, te.serve(from(attacker, postForm("/oauth/support/token", junk))), http.StatusTooManyRequests, "temporarily_unavailable")
	// Even the client's own assertion, from the attacker's address.
	wantOAuthError(t, te.serve(from(attacker, postForm("/oauth/support/token", assertionForm(clientAssertion(t, key, te.support.Issuer))))),
		http.StatusTooManyRequests, "temporarily_unavailable")
	wantTokens(t, te.serve(from(owner, postForm("/oauth/support/token", assertionForm(clientAssertion(t, key, te.support.Issuer))))))

	secretTry := func(addr, secret string) *httptest.ResponseRecorder {
		r := from(addr, postForm("/oauth/support/token", url.Values{"grant_type": {"client_credentials"}}))
		r.Header.Set("Authorization", basicAuth(machineClient, secret))
		return te.serve(r)
	}
	for range limit {
		wantOAuthError(t, secretTry(attacker, "a-guess"), http.StatusUnauthorized, "invalid_client")
	}
	wantOAuthError(t, secretTry(owner, machineSecret), http.StatusTooManyRequests, "temporarily_unavailable")
}
