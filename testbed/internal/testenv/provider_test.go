package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// callbackURL is the gateway callback the tests register. Nothing listens
// there: the browser stops at it, as a real one hands it to the gateway.
const callbackURL = "http://127.0.0.1:1/oauth/callback"

func startProvider(t *testing.T, cfg ProviderConfig) *Provider {
	t.Helper()
	if cfg.RedirectURIs == nil {
		cfg.RedirectURIs = []string{callbackURL}
	}
	p, err := StartProvider(cfg)
	if err != nil {
		t.Fatalf("StartProvider: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func oauthConfig(p *Provider, scopes ...string) *oauth2.Config {
	cfg := p.Config()
	return &oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  callbackURL,
		Scopes:       scopes,
	}
}

// stopAtCallback makes b stop at the callback URL instead of fetching it.
func stopAtCallback(b *Browser) {
	b.StopAt(func(u *url.URL) bool { return strings.HasPrefix(u.String(), callbackURL) })
}

// authorize runs the front channel: it opens the authorization URL, signs in
// on the provider's form and returns the callback URL the browser was sent
// to.
func authorize(t *testing.T, conf *oauth2.Config, opts ...oauth2.AuthCodeOption) *url.URL {
	t.Helper()
	b := NewBrowser()
	stopAtCallback(b)
	login, err := b.Get(conf.AuthCodeURL("state-123", opts...))
	if err != nil {
		t.Fatalf("open authorization URL: %v", err)
	}
	form := login.Form("login")
	if login.Status != http.StatusOK || form == nil {
		t.Fatalf("authorization URL: status %d, want the login form; body:\n%s", login.Status, login.Body)
	}
	back, err := b.Submit(form, "", nil)
	if err != nil {
		t.Fatalf("submit login form: %v", err)
	}
	if !strings.HasPrefix(back.URL.String(), callbackURL) {
		t.Fatalf("after login the browser is at %s (status %d), want the callback", back.URL, back.Status)
	}
	return back.URL
}

// signIn runs the whole code flow with PKCE and returns the tokens.
func signIn(t *testing.T, conf *oauth2.Config, opts ...oauth2.AuthCodeOption) *oauth2.Token {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	callback := authorize(t, conf, append(opts, oauth2.S256ChallengeOption(verifier))...)
	q := callback.Query()
	if q.Get("state") != "state-123" || q.Get("code") == "" {
		t.Fatalf("callback %s: want state-123 and a code", callback)
	}
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange code: %v", err)
	}
	return tok
}

// refresh forces a refresh-token grant.
func refresh(conf *oauth2.Config, refreshToken string) (*oauth2.Token, error) {
	expired := &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Now().Add(-time.Hour)}
	return conf.TokenSource(context.Background(), expired).Token()
}

func wantOAuthError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v, want an OAuth error %s", err, code)
	}
	if re.Response.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("got status %d error %q, want %d %q", re.Response.StatusCode, re.ErrorCode, status, code)
	}
}

func getJSON(t *testing.T, rawURL, bearer string, v any) {
	t.Helper()
	resp, err := GetJSON(rawURL, bearer, v)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", rawURL, resp.StatusCode)
	}
}

type discovery struct {
	Issuer                 string   `json:"issuer"`
	AuthorizationEndpoint  string   `json:"authorization_endpoint"`
	TokenEndpoint          string   `json:"token_endpoint"`
	UserinfoEndpoint       string   `json:"userinfo_endpoint"`
	RevocationEndpoint     string   `json:"revocation_endpoint"`
	JWKSURI                string   `json:"jwks_uri"`
	ScopesSupported        []string `json:"scopes_supported"`
	GrantTypes             []string `json:"grant_types_supported"`
	TokenAuthMethods       []string `json:"token_endpoint_auth_methods_supported"`
	CodeChallengeMethods   []string `json:"code_challenge_methods_supported"`
	IDTokenSigningAlgs     []string `json:"id_token_signing_alg_values_supported"`
	RevocationAuthMethods  []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpoint  string   `json:"introspection_endpoint"`
	ResponseTypesSupported []string `json:"response_types_supported"`
}

func discover(t *testing.T, p *Provider) discovery {
	t.Helper()
	var d discovery
	getJSON(t, p.Issuer()+"/.well-known/openid-configuration", "", &d)
	return d
}

// verifyIDToken checks the ID token's signature against the provider's
// JWKS and returns its claims.
func verifyIDToken(t *testing.T, p *Provider, idToken string) map[string]any {
	t.Helper()
	var keys jose.JSONWebKeySet
	getJSON(t, discover(t, p).JWKSURI, "", &keys)
	jws, err := jose.ParseSigned(idToken, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse ID token: %v", err)
	}
	matching := keys.Key(jws.Signatures[0].Header.KeyID)
	if len(matching) != 1 {
		t.Fatalf("JWKS has %d keys for kid %q, want 1", len(matching), jws.Signatures[0].Header.KeyID)
	}
	payload, err := jws.Verify(matching[0].Key)
	if err != nil {
		t.Fatalf("verify ID token: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestProviderCodeFlowRefreshAndRevocation(t *testing.T) {
	p := startProvider(t, ProviderConfig{})
	conf := oauthConfig(p, "openid", "profile", "email", "offline_access", "tickets.read", "accounts.read")
	before := time.Now()
	tok := signIn(t, conf, oauth2.SetAuthURLParam("resource", DefaultAudience))

	t.Run("ID token", func(t *testing.T) {
		idToken, _ := tok.Extra("id_token").(string)
		if idToken == "" {
			t.Fatal("token response has no id_token")
		}
		claims := verifyIDToken(t, p, idToken)
		for claim, want := range map[string]string{
			"iss":   p.Issuer(),
			"sub":   "demo-user",
			"email": "demo@example.com",
			"name":  "Demo User",
			"azp":   DefaultClientID,
		} {
			if claims[claim] != want {
				t.Errorf("ID token %s = %v, want %q", claim, claims[claim], want)
			}
		}
		aud, _ := claims["aud"].([]any)
		if !slices.Contains(aud, any(DefaultClientID)) {
			t.Errorf("ID token aud = %v, want it to contain the client ID", claims["aud"])
		}
	})

	t.Run("access token", func(t *testing.T) {
		info, ok := p.TokenInfo(tok.AccessToken)
		if !ok {
			t.Fatal("TokenInfo does not know the access token")
		}
		if info.Subject != "demo-user" || info.ClientID != DefaultClientID {
			t.Errorf("TokenInfo subject %q client %q, want demo-user %s", info.Subject, info.ClientID, DefaultClientID)
		}
		if !slices.Equal(info.Audience, []string{DefaultAudience}) {
			t.Errorf("audience %v, want [%s]", info.Audience, DefaultAudience)
		}
		for _, s := range []string{"tickets.read", "accounts.read"} {
			if !slices.Contains(info.Scopes, s) {
				t.Errorf("scopes %v lack %s", info.Scopes, s)
			}
		}
		if slices.Contains(info.Scopes, "tickets.write") {
			t.Errorf("scopes %v contain tickets.write, which was not requested", info.Scopes)
		}
		if !info.Expiry.After(before.Add(DefaultAccessTokenTTL)) {
			t.Errorf("expiry %v is before the configured lifetime", info.Expiry)
		}
		if _, ok := p.TokenInfo(tok.AccessToken + "x"); ok {
			t.Error("TokenInfo accepts a token with a broken signature")
		}
	})

	t.Run("userinfo", func(t *testing.T) {
		var info map[string]any
		getJSON(t, discover(t, p).UserinfoEndpoint, tok.AccessToken, &info)
		if info["sub"] != "demo-user" || info["email"] != "demo@example.com" {
			t.Errorf("userinfo = %v", info)
		}
	})

	t.Run("observations", func(t *testing.T) {
		if got := p.ClientIDs(); !slices.Equal(got, []string{DefaultClientID}) {
			t.Errorf("ClientIDs = %v, want [%s]", got, DefaultClientID)
		}
		last, ok := p.LastAuthorize()
		if !ok || !slices.Equal(last.Resources, []string{DefaultAudience}) || !slices.Equal(last.Scopes, conf.Scopes) || last.RedirectURI != callbackURL {
			t.Errorf("LastAuthorize = %+v, %v", last, ok)
		}
	})

	// Subtests above only read; the rest changes the grant, in order.
	if p.RefreshCount() != 0 {
		t.Fatalf("RefreshCount = %d before any refresh", p.RefreshCount())
	}
	refreshed, err := refresh(conf, tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if p.RefreshCount() != 1 {
		t.Errorf("RefreshCount = %d after one refresh, want 1", p.RefreshCount())
	}
	if refreshed.RefreshToken == "" || refreshed.RefreshToken == tok.RefreshToken {
		t.Errorf("refresh token was not rotated")
	}
	if info, ok := p.TokenInfo(refreshed.AccessToken); !ok || !slices.Equal(info.Audience, []string{DefaultAudience}) || !slices.Contains(info.Scopes, "tickets.read") {
		t.Errorf("refreshed access token: %+v, %v; want the grant's audience and scopes", info, ok)
	}

	_, err = refresh(conf, tok.RefreshToken)
	wantOAuthError(t, err, http.StatusBadRequest, "invalid_grant")

	if n := p.RevokeUserTokens("demo-user"); n != 1 {
		t.Errorf("RevokeUserTokens revoked %d tokens, want 1", n)
	}
	_, err = refresh(conf, refreshed.RefreshToken)
	wantOAuthError(t, err, http.StatusBadRequest, "invalid_grant")
	if p.RefreshCount() != 1 {
		t.Errorf("RefreshCount = %d, failed refreshes must not count", p.RefreshCount())
	}
}

func TestProviderTokenEndpointDown(t *testing.T) {
	p := startProvider(t, ProviderConfig{})
	conf := oauthConfig(p, "openid", "offline_access")
	tok := signIn(t, conf)

	p.SetTokenEndpointDown(true)
	_, err := refresh(conf, tok.RefreshToken)
	wantOAuthError(t, err, http.StatusServiceUnavailable, "temporarily_unavailable")

	p.SetTokenEndpointDown(false)
	if _, err := refresh(conf, tok.RefreshToken); err != nil {
		t.Fatalf("refresh after the endpoint came back: %v", err)
	}
}

func TestProviderClientAuthentication(t *testing.T) {
	p := startProvider(t, ProviderConfig{})
	tests := []struct {
		name    string
		style   oauth2.AuthStyle
		secret  string
		wantErr string
	}{
		{"client_secret_basic", oauth2.AuthStyleInHeader, DefaultClientSecret, ""},
		{"client_secret_post", oauth2.AuthStyleInParams, DefaultClientSecret, ""},
		{"wrong secret basic", oauth2.AuthStyleInHeader, "wrong", "invalid_client"},
		{"wrong secret post", oauth2.AuthStyleInParams, "wrong", "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := oauthConfig(p, "openid")
			verifier := oauth2.GenerateVerifier()
			code := authorize(t, conf, oauth2.S256ChallengeOption(verifier)).Query().Get("code")
			conf.ClientSecret = tt.secret
			conf.Endpoint.AuthStyle = tt.style
			_, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("exchange: %v", err)
				}
				return
			}
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != tt.wantErr {
				t.Fatalf("exchange error %v, want %s", err, tt.wantErr)
			}
		})
	}
}

func TestProviderPKCEIsChecked(t *testing.T) {
	p := startProvider(t, ProviderConfig{})
	conf := oauthConfig(p, "openid")
	code := authorize(t, conf, oauth2.S256ChallengeOption(oauth2.GenerateVerifier())).Query().Get("code")
	_, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
	wantOAuthError(t, err, http.StatusBadRequest, "invalid_grant")
}

func TestProviderAuthorizeErrors(t *testing.T) {
	p := startProvider(t, ProviderConfig{})
	verifier := oauth2.GenerateVerifier()
	tests := []struct {
		name string
		opts []oauth2.AuthCodeOption
		want string // error parameter on the redirect to the client
	}{
		{"no PKCE", nil, "invalid_request"},
		{"plain PKCE", []oauth2.AuthCodeOption{
			oauth2.SetAuthURLParam("code_challenge", verifier),
			oauth2.SetAuthURLParam("code_challenge_method", "plain"),
		}, "invalid_request"},
		{"unknown resource", []oauth2.AuthCodeOption{
			oauth2.S256ChallengeOption(verifier),
			oauth2.SetAuthURLParam("resource", "https://other.example.com"),
		}, "invalid_target"},
		{"prompt none", []oauth2.AuthCodeOption{
			oauth2.S256ChallengeOption(verifier),
			oauth2.SetAuthURLParam("prompt", "none"),
		}, "login_required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBrowser()
			stopAtCallback(b)
			page, err := b.Get(oauthConfig(p, "openid").AuthCodeURL("s", tt.opts...))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(page.URL.String(), callbackURL) {
				t.Fatalf("browser at %s (status %d), want an error redirect to the callback", page.URL, page.Status)
			}
			if got := page.URL.Query().Get("error"); got != tt.want {
				t.Fatalf("error = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("unregistered redirect URI", func(t *testing.T) {
		conf := oauthConfig(p, "openid")
		conf.RedirectURL = "http://127.0.0.1:1/evil"
		b := NewBrowser()
		b.StopAt(func(u *url.URL) bool { return u.Port() == "1" })
		page, err := b.Get(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
		if err != nil {
			t.Fatal(err)
		}
		if page.URL.Port() == "1" {
			t.Fatalf("provider redirected to the unregistered URI %s", page.URL)
		}
	})
}

func TestProviderAudience(t *testing.T) {
	p := startProvider(t, ProviderConfig{})
	conf := oauthConfig(p, "openid", "tickets.read")

	t.Run("without resource the token is for the client", func(t *testing.T) {
		info, ok := p.TokenInfo(signIn(t, conf).AccessToken)
		if !ok || !slices.Equal(info.Audience, []string{DefaultClientID}) {
			t.Fatalf("TokenInfo = %+v, %v; want audience [%s]", info, ok, DefaultClientID)
		}
	})

	t.Run("resource at the token endpoint binds the token", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := authorize(t, conf, oauth2.S256ChallengeOption(verifier)).Query().Get("code")
		tok, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier),
			oauth2.SetAuthURLParam("resource", DefaultAudience))
		if err != nil {
			t.Fatal(err)
		}
		info, ok := p.TokenInfo(tok.AccessToken)
		if !ok || !slices.Equal(info.Audience, []string{DefaultAudience}) {
			t.Fatalf("TokenInfo = %+v, %v; want audience [%s]", info, ok, DefaultAudience)
		}
	})
}

func TestProviderShortLifetime(t *testing.T) {
	p := startProvider(t, ProviderConfig{AccessTokenTTL: time.Second})
	before := time.Now()
	tok := signIn(t, oauthConfig(p, "openid", "offline_access"))
	// expires_in must not round down to 0, which clients read as "never".
	if tok.Expiry.IsZero() {
		t.Fatal("token response has no expires_in")
	}
	info, _ := p.TokenInfo(tok.AccessToken)
	if !info.Expiry.After(before.Add(time.Second)) {
		t.Errorf("exp %v is less than the configured second after %v", info.Expiry, before)
	}
}

func TestProviderRevocationEndpoint(t *testing.T) {
	p := startProvider(t, ProviderConfig{})
	conf := oauthConfig(p, "openid", "offline_access")
	tok := signIn(t, conf)

	form := url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}}
	req, _ := http.NewRequest(http.MethodPost, discover(t, p).RevocationEndpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(DefaultClientID, DefaultClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revocation: status %d", resp.StatusCode)
	}
	_, err = refresh(conf, tok.RefreshToken)
	wantOAuthError(t, err, http.StatusBadRequest, "invalid_grant")
}

func TestProviderDiscovery(t *testing.T) {
	p := startProvider(t, ProviderConfig{Scopes: []string{"notes.read"}})
	d := discover(t, p)
	if d.Issuer != p.Issuer() {
		t.Errorf("issuer %q, want %q", d.Issuer, p.Issuer())
	}
	contains := []struct {
		field string
		got   []string
		want  []string
	}{
		{"scopes_supported", d.ScopesSupported, []string{"openid", "profile", "email", "offline_access", "notes.read"}},
		{"grant_types_supported", d.GrantTypes, []string{"authorization_code", "refresh_token"}},
		{"token_endpoint_auth_methods_supported", d.TokenAuthMethods, []string{"client_secret_basic", "client_secret_post"}},
		{"code_challenge_methods_supported", d.CodeChallengeMethods, []string{"S256"}},
		{"id_token_signing_alg_values_supported", d.IDTokenSigningAlgs, []string{"RS256"}},
	}
	for _, c := range contains {
		for _, w := range c.want {
			if !slices.Contains(c.got, w) {
				t.Errorf("%s = %v, lacks %s", c.field, c.got, w)
			}
		}
	}
	for name, endpoint := range map[string]string{"userinfo": d.UserinfoEndpoint, "revocation": d.RevocationEndpoint, "jwks": d.JWKSURI} {
		if !strings.HasPrefix(endpoint, p.Issuer()+"/") {
			t.Errorf("%s endpoint %q is not under the issuer", name, endpoint)
		}
	}
}

func TestProviderLoginPage(t *testing.T) {
	second := User{Subject: "alice-id", Username: "alice", Password: "s3cret", Email: "alice@example.com", Name: "Alice"}
	p := startProvider(t, ProviderConfig{Users: []User{DefaultUser(), second}})
	conf := oauthConfig(p, "openid", "email")

	b := NewBrowser()
	stopAtCallback(b)
	verifier := oauth2.GenerateVerifier()
	page, err := b.Get(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	form := page.Form("login")
	if form == nil || form.Method != http.MethodPost || form.Values.Get("username") != "demo" {
		t.Fatalf("login form %+v, want a POST form with username demo prefilled", form)
	}

	page, err = b.Submit(form, "", url.Values{"username": {"alice"}, "password": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusUnauthorized || !strings.Contains(page.Body, "Wrong username or password") || page.Form("login") == nil {
		t.Fatalf("wrong password: status %d, want 401 and the form again", page.Status)
	}

	page, err = b.Submit(page.Form("login"), "", url.Values{"password": {"s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := conf.Exchange(context.Background(), page.URL.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange after signing in as alice: %v", err)
	}
	if info, _ := p.TokenInfo(tok.AccessToken); info.Subject != "alice-id" {
		t.Errorf("token subject %q, want alice-id", info.Subject)
	}
}

func TestProviderAddRedirectURI(t *testing.T) {
	p := startProvider(t, ProviderConfig{RedirectURIs: []string{}})
	conf := oauthConfig(p, "openid")
	p.AddRedirectURI(callbackURL)
	if got := p.Config().RedirectURIs; !slices.Equal(got, []string{callbackURL}) {
		t.Fatalf("RedirectURIs = %v", got)
	}
	signIn(t, conf)
}

func TestStartProviderRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  ProviderConfig
	}{
		{"sub-second lifetime", ProviderConfig{AccessTokenTTL: 500 * time.Millisecond}},
		{"scope with space", ProviderConfig{Scopes: []string{"a b"}}},
		{"user without subject", ProviderConfig{Users: []User{{Username: "x"}}}},
		{"duplicate username", ProviderConfig{Users: []User{{Subject: "1", Username: "x"}, {Subject: "2", Username: "x"}}}},
		{"bad address", ProviderConfig{Addr: "256.0.0.1:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := StartProvider(tt.cfg)
			if err == nil {
				p.Close()
				t.Fatal("StartProvider succeeded")
			}
		})
	}
}
