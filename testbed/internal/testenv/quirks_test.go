package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// refreshScoped sends a refresh request with a scope parameter.
func refreshScoped(conf *oauth2.Config, refreshToken, scope string, extra url.Values) (*oauth2.Token, error) {
	params := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	for k, v := range extra {
		params[k] = v
	}
	cc := clientcredentials.Config{ClientID: conf.ClientID, ClientSecret: conf.ClientSecret, TokenURL: conf.Endpoint.TokenURL,
		Scopes: strings.Fields(scope), EndpointParams: params, AuthStyle: conf.Endpoint.AuthStyle}
	return cc.Token(context.Background())
}

func TestProviderNarrowsOnRefresh(t *testing.T) {
	for _, ignore := range []bool{false, true} {
		p := startProvider(t, ProviderConfig{IgnoreRefreshScope: ignore})
		conf := oauthConfig(p, "openid", "offline_access", "tickets.read", "accounts.read", "admin.read")
		tok := signIn(t, conf)
		narrow, err := refreshScoped(conf, tok.RefreshToken, "tickets.read", nil)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := p.TokenInfo(narrow.AccessToken)
		want := []string{"tickets.read"}
		if ignore {
			want = []string{"openid", "offline_access", "tickets.read", "accounts.read", "admin.read"}
		}
		if !slices.Equal(info.Scopes, want) {
			t.Errorf("ignore=%v: narrowed token scopes %v, want %v", ignore, info.Scopes, want)
		}
		if got := narrow.Extra("scope"); got != strings.Join(want, " ") {
			t.Errorf("ignore=%v: the answer's scope is %q", ignore, got)
		}
		// The rotated refresh token keeps the whole grant (RFC 6749 §6).
		full, err := refresh(conf, narrow.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		if info, _ := p.TokenInfo(full.AccessToken); len(info.Scopes) != 5 {
			t.Errorf("ignore=%v: a plain refresh after narrowing has scopes %v", ignore, info.Scopes)
		}
		if got := p.RefreshScopes(); !slices.Equal(got, []string{"tickets.read", ""}) {
			t.Errorf("RefreshScopes = %q", got)
		}
	}
}

func TestProviderAudienceParameter(t *testing.T) {
	p := startProvider(t, ProviderConfig{AudienceParameter: "audience"})
	conf := oauthConfig(p, "openid", "tickets.read")
	tok := signIn(t, conf, oauth2.SetAuthURLParam("audience", DefaultAudience))
	if info, _ := p.TokenInfo(tok.AccessToken); !slices.Equal(info.Audience, []string{DefaultAudience}) {
		t.Errorf("audience %v", info.Audience)
	}
	if last, _ := p.LastAuthorize(); !slices.Equal(last.Audiences, []string{DefaultAudience}) || last.Params.Get("audience") != DefaultAudience {
		t.Errorf("recorded %+v", last)
	}
	b := NewBrowser()
	stopAtCallback(b)
	page, err := b.Get(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", DefaultAudience)))
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusBadRequest {
		t.Errorf("a resource parameter: status %d; want 400", page.Status)
	}
}

func TestProviderScopeRules(t *testing.T) {
	p := startProvider(t, ProviderConfig{Scopes: []string{"api://acme/tickets.read"}, RefuseUnknownScopes: true, OfflineByParameter: true})
	b := NewBrowser()
	stopAtCallback(b)
	for _, scope := range []string{"openid tickets.read", "openid offline_access api://acme/tickets.read"} {
		conf := oauthConfig(p, strings.Fields(scope)...)
		page, err := b.Get(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if err != nil {
			t.Fatal(err)
		}
		if page.Status != http.StatusBadRequest || !strings.Contains(page.Body, "invalid_scope") {
			t.Errorf("scope %q: status %d, want 400 invalid_scope", scope, page.Status)
		}
	}
	conf := oauthConfig(p, "openid", "api://acme/tickets.read")
	tok := signIn(t, conf, oauth2.SetAuthURLParam("access_type", "offline"))
	if tok.RefreshToken == "" {
		t.Error("access_type=offline brought no refresh token")
	}
	if tok := signIn(t, conf); tok.RefreshToken != "" {
		t.Error("a refresh token without access_type=offline")
	}
}

func TestProviderPlainOAuth(t *testing.T) {
	p := startProvider(t, ProviderConfig{PlainOAuth: true})
	resp, err := http.Get(p.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("discovery: status %d, want 404", resp.StatusCode)
	}
	tok := signIn(t, oauthConfig(p, "tickets.read"))
	// x/oauth2 reads numbers of a form-encoded answer as int64, of JSON as
	// float64.
	if _, isForm := tok.Extra("expires_in").(int64); !isForm {
		t.Errorf("the token response is not form-encoded: expires_in is %T", tok.Extra("expires_in"))
	}
	if idToken, _ := tok.Extra("id_token").(string); idToken != "" {
		t.Error("the token response has an ID token")
	}
	var user struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
	}
	getJSON(t, p.Issuer()+"/user", tok.AccessToken, &user)
	if user.ID != 1000 || user.Login != "demo" {
		t.Errorf("/user = %+v", user)
	}
}

func TestProviderClientAuthMethods(t *testing.T) {
	p := startProvider(t, ProviderConfig{ClientAuthMethod: "client_secret_post"})
	conf := oauthConfig(p, "openid")
	code := func() (string, string) {
		verifier := oauth2.GenerateVerifier()
		return authorize(t, conf, oauth2.S256ChallengeOption(verifier)).Query().Get("code"), verifier
	}
	c, v := code()
	_, err := conf.Exchange(context.Background(), c, oauth2.VerifierOption(v)) // Basic
	wantOAuthError(t, err, http.StatusUnauthorized, "invalid_client")
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	c, v = code()
	if _, err := conf.Exchange(context.Background(), c, oauth2.VerifierOption(v)); err != nil {
		t.Fatal(err)
	}
	if got := p.ClientAuthMethods(); !slices.Equal(got, []string{"client_secret_basic", "client_secret_post"}) {
		t.Errorf("ClientAuthMethods = %v", got)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, aud := range []string{"token_endpoint", "issuer"} {
		p := startProvider(t, ProviderConfig{ClientAuthMethod: "private_key_jwt", ClientPublicKey: key.Public(), AssertionAudience: aud})
		conf := oauthConfig(p, "openid")
		conf.ClientSecret, conf.Endpoint.AuthStyle = "", oauth2.AuthStyleInParams
		assertion := func(aud string) string {
			now := time.Now()
			s, _ := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": DefaultClientID, "sub": DefaultClientID, "aud": aud,
				"jti": rand.Text(), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}).SignedString(key)
			return s
		}
		right, wrong := p.Endpoint().TokenURL, p.Issuer()
		if aud == "issuer" {
			right, wrong = wrong, right
		}
		for _, tc := range []struct {
			assertion string
			ok        bool
		}{{assertion(wrong), false}, {assertion(right), true}} {
			verifier := oauth2.GenerateVerifier()
			code := authorize(t, conf, oauth2.S256ChallengeOption(verifier)).Query().Get("code")
			_, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier),
				oauth2.SetAuthURLParam("client_assertion_type", assertionType), oauth2.SetAuthURLParam("client_assertion", tc.assertion))
			if (err == nil) != tc.ok {
				t.Errorf("audience %s, assertion accepted=%v: %v", aud, tc.ok, err)
			}
		}
	}
}

func TestProviderTokenExchange(t *testing.T) {
	p := startProvider(t, ProviderConfig{TokenExchange: true})
	conf := oauthConfig(p, "openid", "tickets.read", "admin.read")
	tok := signIn(t, conf, oauth2.SetAuthURLParam("resource", DefaultAudience))
	exchange := func(scope string) (*oauth2.Token, error) {
		cc := clientcredentials.Config{ClientID: conf.ClientID, ClientSecret: conf.ClientSecret, TokenURL: conf.Endpoint.TokenURL,
			Scopes: strings.Fields(scope), AuthStyle: conf.Endpoint.AuthStyle, EndpointParams: url.Values{
				"grant_type":    {tokenExchangeGrant},
				"subject_token": {tok.AccessToken}, "subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
			}}
		return cc.Token(context.Background())
	}
	narrow, err := exchange("tickets.read")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := p.TokenInfo(narrow.AccessToken)
	if !slices.Equal(info.Scopes, []string{"tickets.read"}) || !slices.Equal(info.Audience, []string{DefaultAudience}) || info.Subject != "demo-user" {
		t.Errorf("exchanged token %+v", info)
	}
	if _, err := exchange("accounts.read"); err == nil {
		t.Error("a scope the subject token lacks was granted")
	}
	if got := p.ExchangeScopes(); !slices.Equal(got, []string{"tickets.read", "accounts.read"}) {
		t.Errorf("ExchangeScopes = %q", got)
	}
	if _, err := exchange("tickets.read"); err != nil {
		t.Errorf("a second exchange: %v", err)
	}
	plain := startProvider(t, ProviderConfig{})
	conf = oauthConfig(plain, "openid", "tickets.read")
	tok = signIn(t, conf)
	if _, err := exchange("tickets.read"); err == nil {
		t.Error("a provider without TokenExchange exchanged a token")
	}
}
