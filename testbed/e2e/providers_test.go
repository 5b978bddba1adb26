package e2e_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// These tests run the gateway against the test provider configured to
// behave like a particular identity provider, with the gateway block
// docs/providers.md gives for it, through a whole real flow: registration,
// consent, the downstream login, the code exchange, and MCP calls whose
// downstream token the upstream reports.

// gatewayBlock rewrites the gateway block of the test Caddyfile: it drops
// the lines that start with one of drop and adds lines, in which
// {issuer}, {authorize} and {token} stand for the provider's issuer and
// endpoints.
func gatewayBlock(drop []string, lines string) envOption {
	return withEdit(func(e *env, caddyfile string) string {
		var out []string
		for _, line := range strings.Split(caddyfile, "\n") {
			trimmed := strings.TrimSpace(line)
			if slices.ContainsFunc(drop, func(p string) bool { return strings.HasPrefix(trimmed, p) }) {
				continue
			}
			out = append(out, line)
			if strings.HasPrefix(trimmed, "gateway acme {") {
				out = append(out, strings.NewReplacer(
					"{issuer}", e.provider.Issuer(),
					"{authorize}", e.provider.Endpoint().AuthURL,
					"{token}", e.provider.Endpoint().TokenURL,
				).Replace(lines))
			}
		}
		return strings.Join(out, "\n")
	})
}

// upstreamSees calls whoami on a server and returns what its upstream
// received: the headers, and the provider's record of the downstream
// token.
func (e *env) upstreamSees(t *testing.T, path, bearer string) (testenv.WhoAmI, testenv.TokenInfo, string) {
	t.Helper()
	res, err := e.callTool(t, path, bearer, "whoami", map[string]any{})
	if err != nil {
		t.Fatalf("whoami on %s: %v", path, err)
	}
	who := whoami(t, res)
	token := strings.TrimPrefix(who.Authorization, "Bearer ")
	info, ok := e.provider.TokenInfo(token)
	if !ok {
		t.Fatalf("the upstream of %s got %q, which the provider did not issue", path, who.Authorization)
	}
	return who, info, token
}

// defaultLogin are the login scopes when the config names none.
var defaultLogin = []string{"openid", "offline_access"}

// narrowed is the scope of a token narrowed to scopes: those and the login
// scopes.
func narrowed(login []string, scopes ...string) []string {
	return append(slices.Clone(login), scopes...)
}

// sameScopes compares scope lists as sets.
func sameScopes(got []string, want ...string) bool {
	return slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want)))
}

// loginBoth signs one user in for both servers.
func loginBoth(t *testing.T, e *env) (support, ops tokens) {
	t.Helper()
	c := e.register(t, "support-assistant")
	return c.login(t, "support-assistant", ""), c.login(t, "ops-console", "")
}

// writeKey writes a private key as PKCS #8 PEM into a file of its own and
// returns the file's path, for a {file.*} placeholder.
func writeKey(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gateway-key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPerServerTokens: one user's grant yields, for each server, a
// downstream token narrowed to the scopes its client was granted (here all
// the server offers) and the login scopes, each refreshed on its own.
func TestPerServerTokens(t *testing.T) {
	// A 4s lifetime is due for refresh after 2s.
	e := startEnv(t, testenv.ProviderConfig{AccessTokenTTL: 4 * time.Second})
	support, ops := loginBoth(t, e)

	_, s, supportToken := e.upstreamSees(t, "/support", support.AccessToken)
	if !sameScopes(s.Scopes, narrowed(defaultLogin, "tickets.read", "accounts.read")...) || !slices.Contains(s.Audience, testenv.DefaultAudience) {
		t.Errorf("support-assistant's upstream got a token for %v at %v, want tickets.read accounts.read and the login scopes at %s", s.Scopes, s.Audience, testenv.DefaultAudience)
	}
	_, o, _ := e.upstreamSees(t, "/ops", ops.AccessToken)
	if !sameScopes(o.Scopes, narrowed(defaultLogin, "tickets.write", "admin.read")...) {
		t.Errorf("ops-console's upstream got a token for %v, want tickets.write admin.read and the login scopes", o.Scopes)
	}
	if s.Subject != testenv.DefaultUser().Subject || o.Subject != s.Subject {
		t.Errorf("the narrowed tokens belong to %q and %q", s.Subject, o.Subject)
	}
	// Each narrowing was a refresh asking for the server's scopes; the
	// second used the refresh token the first rotated, so both came from
	// the one grant.
	if got := e.provider.RefreshScopes(); len(got) != 2 || !sameScopes(strings.Fields(got[0]), narrowed(defaultLogin, "accounts.read", "tickets.read")...) || !sameScopes(strings.Fields(got[1]), narrowed(defaultLogin, "admin.read", "tickets.write")...) {
		t.Errorf("the provider saw refreshes with scopes %q, want one narrowing per server", got)
	}

	// Served from memory while fresh.
	before := e.provider.RefreshCount()
	if _, _, again := e.upstreamSees(t, "/support", support.AccessToken); again != supportToken || e.provider.RefreshCount() != before {
		t.Error("a second call narrowed again instead of reusing the narrowed token")
	}

	// Refreshed on its own when due, and narrowed again.
	var s2 testenv.TokenInfo
	var next string
	waitUntil(t, 10*time.Second, "support-assistant's narrowed token is renewed", func() error {
		if _, s2, next = e.upstreamSees(t, "/support", support.AccessToken); next == supportToken {
			return errors.New("the upstream still gets the first narrowed token")
		}
		return nil
	})
	if next == supportToken || !sameScopes(s2.Scopes, narrowed(defaultLogin, "tickets.read", "accounts.read")...) {
		t.Errorf("after expiry support-assistant's upstream got %v (a new token: %v)", s2.Scopes, next != supportToken)
	}
	if n := e.provider.RefreshCount() - before; n != 1 {
		t.Errorf("renewing support-assistant's token took %d refreshes, want 1 (ops-console's is renewed when it is used)", n)
	}
}

// TestPerServerTokensOff: every server gets the grant's full token.
func TestPerServerTokensOff(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{}, withLines("", "per_server_tokens off"))
	support, _ := loginBoth(t, e)
	_, s, _ := e.upstreamSees(t, "/support", support.AccessToken)
	if !sameScopes(s.Scopes, "openid", "offline_access", "tickets.read", "tickets.write", "accounts.read", "admin.read") {
		t.Errorf("with per_server_tokens off the upstream got %v, want the full grant", s.Scopes)
	}
	if n := len(e.provider.RefreshScopes()); n != 0 {
		t.Errorf("%d refreshes, want none", n)
	}
}

// waitForLog returns the log file's text once it holds want n times, or
// after five seconds whatever it holds: Caddy writes its log
// asynchronously.
func waitForLog(file, want string, n int) string {
	var logs string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		raw, _ := os.ReadFile(file)
		if logs = string(raw); strings.Count(logs, want) >= n {
			break
		}
	}
	return logs
}

// TestNarrowingFallback: a provider that ignores the scope of a refresh
// cannot narrow. By default the server then gets the full token and the
// log says why; with fallback refuse the request is refused with 503.
func TestNarrowingFallback(t *testing.T) {
	t.Run("full_token", func(t *testing.T) {
		logFile := filepath.Join(t.TempDir(), "caddy.log")
		e := startEnv(t, testenv.ProviderConfig{IgnoreRefreshScope: true},
			withGlobal("log {\n\t\toutput file "+logFile+"\n\t\tlevel WARN\n\t}"))
		support, _ := loginBoth(t, e)
		_, s, _ := e.upstreamSees(t, "/support", support.AccessToken)
		if !sameScopes(s.Scopes, "openid", "offline_access", "tickets.read", "tickets.write", "accounts.read", "admin.read") {
			t.Errorf("the fallback handed out %v, want the full token", s.Scopes)
		}
		// The finding holds for an hour: no second attempt.
		e.upstreamSees(t, "/support", support.AccessToken)
		if got := e.provider.RefreshScopes(); len(got) != 1 {
			t.Errorf("the provider saw %d narrowing attempts, want 1", len(got))
		}
		logs := waitForLog(logFile, "cannot narrow", 1)
		if !strings.Contains(logs, "cannot narrow") || !strings.Contains(logs, `"server":"support-assistant"`) || !strings.Contains(logs, "ignored a refresh narrowed") {
			t.Errorf("no warning naming the server and the reason in the log:\n%s", lastLines(logs, 10))
		}
	})
	t.Run("no token exchange", func(t *testing.T) {
		e := startEnv(t, testenv.ProviderConfig{}, withLines("", "per_server_tokens token_exchange"))
		support, _ := loginBoth(t, e)
		_, s, _ := e.upstreamSees(t, "/support", support.AccessToken)
		if len(s.Scopes) != 6 || len(e.provider.ExchangeScopes()) != 1 {
			t.Errorf("a provider without token exchange: the upstream got %v after %d exchange attempts, want the full token after one", s.Scopes, len(e.provider.ExchangeScopes()))
		}
	})
	t.Run("refuse", func(t *testing.T) {
		logFile := filepath.Join(t.TempDir(), "caddy.log")
		e := startEnv(t, testenv.ProviderConfig{IgnoreRefreshScope: true}, withLines("", "per_server_tokens refresh fallback refuse"),
			withGlobal("log {\n\t\toutput file "+logFile+"\n\t\tlevel WARN\n\t}"))
		support, ops := loginBoth(t, e)
		for range 2 {
			for path, tok := range map[string]string{"/support": support.AccessToken, "/ops": ops.AccessToken} {
				resp, raw, err := testenv.PostMCP(e.public+path, tok, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
				if err != nil {
					t.Fatal(err)
				}
				var body struct {
					Error            string `json:"error"`
					ErrorDescription string `json:"error_description"`
				}
				_ = json.Unmarshal([]byte(raw), &body)
				// Retrying is pointless until the provider is asked again,
				// an hour after it was found not to narrow.
				retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
				if resp.StatusCode != http.StatusServiceUnavailable || body.Error != "temporarily_unavailable" || retry < 3000 || retry > 3600 ||
					!strings.Contains(body.ErrorDescription, "does not issue tokens limited to server") {
					t.Errorf("%s: status %d, Retry-After %q, %s: %s; want 503 temporarily_unavailable saying why, with Retry-After about an hour",
						path, resp.StatusCode, resp.Header.Get("Retry-After"), body.Error, body.ErrorDescription)
				}
			}
		}
		// Each server's finding is logged once, not once per request.
		logs := waitForLog(logFile, "its requests are refused", 2)
		if n := strings.Count(logs, "its requests are refused"); n != 2 {
			t.Errorf("the refusal was logged %d times for 2 servers, want once each:\n%s", n, lastLines(logs, 10))
		}
	})
}

// TestProviderAuth0: the audience goes as an audience parameter, the
// secret in the form, and extra authorization parameters are sent.
func TestProviderAuth0(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{AudienceParameter: "audience", ClientAuthMethod: "client_secret_post"},
		gatewayBlock([]string{"resource "}, `
			audience https://api.example.com
			client_auth client_secret_post
			authorization_params prompt consent`))
	support, _ := loginBoth(t, e)
	last, _ := e.provider.LastAuthorize()
	if !slices.Equal(last.Audiences, []string{testenv.DefaultAudience}) || len(last.Resources) != 0 || last.Params.Get("prompt") != "consent" {
		t.Errorf("the authorization request carried audience %v, resource %v, prompt %q", last.Audiences, last.Resources, last.Params.Get("prompt"))
	}
	_, s, _ := e.upstreamSees(t, "/support", support.AccessToken)
	if !slices.Equal(s.Audience, []string{testenv.DefaultAudience}) || !sameScopes(s.Scopes, narrowed(defaultLogin, "tickets.read", "accounts.read")...) {
		t.Errorf("the upstream got a token for %v at %v", s.Scopes, s.Audience)
	}
	for _, m := range e.provider.ClientAuthMethods() {
		if m != "client_secret_post" {
			t.Errorf("the gateway authenticated with %s", m)
		}
	}
}

// TestProviderEntra: the gateway's scope names map to the provider's, no
// resource is sent, and each server's token carries the provider's names
// of its scopes, with the login scopes.
func TestProviderEntra(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{
		Scopes:              []string{"api://acme/tickets.read", "api://acme/tickets.write", "api://acme/accounts.read", "api://acme/admin.read"},
		RefuseUnknownScopes: true,
		ClientAuthMethod:    "client_secret_basic",
	}, gatewayBlock([]string{"resource "}, `
			resource_parameter none
			client_auth client_secret_basic
			scope_map {
				tickets.read api://acme/tickets.read
				tickets.write api://acme/tickets.write
				accounts.read api://acme/accounts.read
				admin.read api://acme/admin.read
			}`))
	support, ops := loginBoth(t, e)
	last, _ := e.provider.LastAuthorize()
	if !sameScopes(last.Scopes, "openid", "offline_access", "api://acme/tickets.read", "api://acme/tickets.write", "api://acme/accounts.read", "api://acme/admin.read") || len(last.Resources) != 0 {
		t.Errorf("the authorization request asked for %v with resource %v", last.Scopes, last.Resources)
	}
	who, s, _ := e.upstreamSees(t, "/support", support.AccessToken)
	if !sameScopes(s.Scopes, narrowed(defaultLogin, "api://acme/tickets.read", "api://acme/accounts.read")...) {
		t.Errorf("support-assistant's upstream got %v", s.Scopes)
	}
	if who.XHeaders["X-Mcp-Scopes"] != "accounts.read tickets.read" {
		t.Errorf("the gateway's own scope names became %q", who.XHeaders["X-Mcp-Scopes"])
	}
	if _, o, _ := e.upstreamSees(t, "/ops", ops.AccessToken); !sameScopes(o.Scopes, narrowed(defaultLogin, "api://acme/tickets.write", "api://acme/admin.read")...) {
		t.Errorf("ops-console's upstream got %v", o.Scopes)
	}
}

// TestProviderEntraCertificate: private_key_jwt with a certificate
// credential, as Entra registers them: every assertion names the
// certificate by its thumbprint.
func TestProviderEntraCertificate(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "mcp-gateway"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	certFile := filepath.Join(t.TempDir(), "gateway-cert.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, testenv.ProviderConfig{ClientAuthMethod: "private_key_jwt", ClientCertificate: cert},
		gatewayBlock([]string{"resource ", "client_secret "}, `
			resource_parameter none
			client_auth private_key_jwt {
				key {file.`+writeKey(t, key)+`}
				certificate {file.`+certFile+`}
			}`))
	support, _ := loginBoth(t, e)
	if _, s, _ := e.upstreamSees(t, "/support", support.AccessToken); !sameScopes(s.Scopes, narrowed(defaultLogin, "tickets.read", "accounts.read")...) {
		t.Errorf("support-assistant's upstream got %v", s.Scopes)
	}
	if methods := e.provider.ClientAuthMethods(); len(methods) < 3 || slices.ContainsFunc(methods, func(m string) bool { return m != "private_key_jwt" }) {
		t.Errorf("the token requests authenticated with %v, want private_key_jwt with the certificate", methods)
	}
	// A certificate file that cannot be read fails the load, rather than
	// leaving assertions without their thumbprints.
	missing := strings.Replace(e.caddyfile("tickets.read accounts.read"), certFile, filepath.Join(t.TempDir(), "missing.pem"), 1)
	if err := testenv.RunCaddyfile([]byte(missing)); err == nil || !strings.Contains(err.Error(), "certificate resolved to an empty value") {
		t.Errorf("loading a config whose certificate file is missing: %v", err)
	}
}

// TestProviderGoogle: no offline_access scope (Google refuses it) but
// access_type offline for the refresh token, email among the login
// scopes, and Google's scope URLs.
func TestProviderGoogle(t *testing.T) {
	const prefix = "https://www.googleapis.com/auth/acme."
	e := startEnv(t, testenv.ProviderConfig{
		Scopes:              []string{prefix + "tickets.readonly", prefix + "tickets", prefix + "accounts.readonly", prefix + "admin.readonly"},
		RefuseUnknownScopes: true,
		OfflineByParameter:  true,
		ClientAuthMethod:    "client_secret_post",
	}, gatewayBlock([]string{"resource "}, `
			resource_parameter none
			client_auth client_secret_post
			login_scopes openid email
			authorization_params access_type offline prompt consent
			scope_map tickets.read `+prefix+`tickets.readonly
			scope_map tickets.write `+prefix+`tickets
			scope_map accounts.read `+prefix+`accounts.readonly
			scope_map admin.read `+prefix+`admin.readonly`))
	support, _ := loginBoth(t, e)
	last, _ := e.provider.LastAuthorize()
	if slices.Contains(last.Scopes, "offline_access") || !slices.Contains(last.Scopes, "email") ||
		last.Params.Get("access_type") != "offline" || last.Params.Get("prompt") != "consent" {
		t.Errorf("the authorization request: scopes %v, params %v", last.Scopes, last.Params)
	}
	// The narrowed token is itself proof of the refresh token that
	// access_type offline brought.
	if _, s, _ := e.upstreamSees(t, "/support", support.AccessToken); !sameScopes(s.Scopes, narrowed([]string{"openid", "email"}, prefix+"tickets.readonly", prefix+"accounts.readonly")...) {
		t.Errorf("support-assistant's upstream got %v", s.Scopes)
	}
}

// TestProviderGitHub: no discovery document, no ID token, a form-encoded
// token response; the user is the numeric id of the /user endpoint.
func TestProviderGitHub(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{PlainOAuth: true, ClientAuthMethod: "client_secret_post"},
		gatewayBlock([]string{"resource ", "identity "}, `
			authorization_endpoint {authorize}
			token_endpoint {token}
			client_auth client_secret_post
			resource_parameter none
			login_scopes none
			identity userinfo {issuer}/user claim id
			per_server_tokens off`))
	support, _ := loginBoth(t, e)
	last, _ := e.provider.LastAuthorize()
	if !sameScopes(last.Scopes, "tickets.read", "tickets.write", "accounts.read", "admin.read") {
		t.Errorf("the authorization request asked for %v", last.Scopes)
	}
	who, s, _ := e.upstreamSees(t, "/support", support.AccessToken)
	if who.XHeaders["X-Mcp-User"] != "1000" || s.Subject != testenv.DefaultUser().Subject {
		t.Errorf("the user is %q (token of %q), want GitHub's numeric id 1000", who.XHeaders["X-Mcp-User"], s.Subject)
	}
}

// TestProviderOkta: private_key_jwt with an RSA key from a file, the
// assertion's audience the token endpoint.
func TestProviderOkta(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writeKey(t, key)
	e := startEnv(t, testenv.ProviderConfig{ClientAuthMethod: "private_key_jwt", ClientPublicKey: key.Public()},
		gatewayBlock([]string{"resource ", "client_secret "}, `
			resource_parameter none
			client_auth private_key_jwt key {file.`+keyFile+`}`))
	support, _ := loginBoth(t, e)
	if _, s, _ := e.upstreamSees(t, "/support", support.AccessToken); !sameScopes(s.Scopes, narrowed(defaultLogin, "tickets.read", "accounts.read")...) {
		t.Errorf("support-assistant's upstream got %v", s.Scopes)
	}
	methods := e.provider.ClientAuthMethods()
	if len(methods) < 3 || slices.ContainsFunc(methods, func(m string) bool { return m != "private_key_jwt" }) {
		t.Errorf("the token requests authenticated with %v, want private_key_jwt for the exchanges and the narrowing", methods)
	}
}

// TestProviderKeycloak: private_key_jwt with an EC key and a key ID, the
// assertion's audience the issuer, the user resolved at the discovered
// userinfo endpoint by preferred_username, and per-server tokens by token
// exchange (the provider ignores the scope of refreshes, so a narrowed
// token can only come from an exchange).
func TestProviderKeycloak(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writeKey(t, key)
	e := startEnv(t, testenv.ProviderConfig{ClientAuthMethod: "private_key_jwt", ClientPublicKey: key.Public(), ClientKeyID: "gateway-2026", AssertionAudience: "issuer",
		TokenExchange: true, IgnoreRefreshScope: true},
		gatewayBlock([]string{"resource ", "client_secret ", "identity "}, `
			resource_parameter none
			client_auth private_key_jwt {
				key {file.`+keyFile+`}
				key_id gateway-2026
				assertion_audience issuer
			}
			login_scopes openid offline_access profile
			identity userinfo claim preferred_username
			per_server_tokens token_exchange`))
	support, ops := loginBoth(t, e)
	who, s, _ := e.upstreamSees(t, "/support", support.AccessToken)
	keycloakLogin := []string{"openid", "offline_access", "profile"}
	if who.XHeaders["X-Mcp-User"] != testenv.DefaultUser().Username || !sameScopes(s.Scopes, narrowed(keycloakLogin, "tickets.read", "accounts.read")...) {
		t.Errorf("the user is %q and the upstream got %v", who.XHeaders["X-Mcp-User"], s.Scopes)
	}
	if _, o, _ := e.upstreamSees(t, "/ops", ops.AccessToken); !sameScopes(o.Scopes, narrowed(keycloakLogin, "tickets.write", "admin.read")...) || o.Subject != s.Subject {
		t.Errorf("ops-console's upstream got %v of %q", o.Scopes, o.Subject)
	}
	if ex, ref := e.provider.ExchangeScopes(), e.provider.RefreshScopes(); len(ex) != 2 || len(ref) != 0 {
		t.Errorf("%d token exchanges and %d refreshes, want one exchange per server and no refresh", len(ex), len(ref))
	}
}
