package testenv

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"
)

// OAuthClient is a scripted MCP client of a gateway, as tests and the load
// benchmark drive one: it registers, walks a person's browser through an
// authorization (the gateway's consent page, the provider's sign-in) and
// redeems codes and refresh tokens. Its methods return errors and never
// fail a test themselves, so callers decide what a refusal means.
type OAuthClient struct {
	Public      string // the gateway's public URL
	ID          string // the client ID
	RedirectURI string // where authorizations return to, unless a request names another
	State       string // the state parameter of every authorization
	// Browser is the person's browser. A new client's stops at the
	// redirect URI's host; StopAt changes that.
	Browser *Browser
	HTTP    *http.Client // for the token endpoint; default http.DefaultClient
	// SignIn, when set, is what the person types on the provider's
	// sign-in form (username, password) instead of the prefilled first
	// user's: another person signing in.
	SignIn url.Values
}

// DefaultState is the state parameter of a new client's authorizations.
const DefaultState = "st-1"

// NewOAuthClient returns the client id of the gateway at public, with a
// browser of its own.
func NewOAuthClient(public, id, redirectURI string) *OAuthClient {
	c := &OAuthClient{Public: public, ID: id, RedirectURI: redirectURI, State: DefaultState}
	c.Browser = c.newBrowser()
	return c
}

// RegisterClient registers a client with metadata (RFC 7591) at server's
// registration endpoint and returns it; its redirect URI is the first the
// gateway registered.
func RegisterClient(hc *http.Client, public, server string, metadata map[string]any) (*OAuthClient, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	body, err := json.Marshal(metadata)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Post(public+"/oauth/"+server+"/register", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var reg struct {
		ClientID     string   `json:"client_id"`
		RedirectURIs []string `json:"redirect_uris"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(raw, &reg) != nil || reg.ClientID == "" || len(reg.RedirectURIs) == 0 {
		return nil, fmt.Errorf("registration at %s: status %d: %s", server, resp.StatusCode, raw)
	}
	c := NewOAuthClient(public, reg.ClientID, reg.RedirectURIs[0])
	c.HTTP = hc
	return c, nil
}

// WithNewBrowser returns a copy of c with a browser of its own, without
// cookies, stopping at the redirect URI's host: another person, or another
// of the same person's browsers, on the same client.
func (c *OAuthClient) WithNewBrowser() *OAuthClient {
	copied := *c
	copied.Browser = c.newBrowser()
	return &copied
}

func (c *OAuthClient) newBrowser() *Browser {
	b := NewBrowser()
	if u, err := url.Parse(c.RedirectURI); err == nil {
		b.StopAt(func(to *url.URL) bool { return to.Host == u.Host })
	}
	return b
}

// Issuer is the authorization server of one of the gateway's servers.
func (c *OAuthClient) Issuer(server string) string { return c.Public + "/oauth/" + server }

// PKCE returns a new code verifier and its S256 challenge (RFC 7636).
func PKCE() (verifier, challenge string) {
	verifier = oauth2.GenerateVerifier()
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// AuthorizeURL is an authorization request of c at server: response_type,
// client_id, redirect_uri and state, and params, which replace those.
func (c *OAuthClient) AuthorizeURL(server string, params url.Values) string {
	q := url.Values{"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {c.RedirectURI}, "state": {c.State}}
	for k, v := range params {
		q[k] = v
	}
	return c.Issuer(server) + "/authorize?" + q.Encode()
}

// Begin opens the authorization request in the browser and returns the
// first page it ends at: the consent page, the provider's sign-in, an error
// page, or the redirect back to the client.
func (c *OAuthClient) Begin(server string, params url.Values) (*Page, error) {
	return c.Browser.Get(c.AuthorizeURL(server, params))
}

// Authorize runs the browser through the authorization, answering the
// consent page with approve and signing in at the provider when they are
// shown, and returns the redirect back to the client: with a code, or with
// an error. It fails when the flow ends anywhere else than at the
// request's redirect URI.
func (c *OAuthClient) Authorize(server string, params url.Values, approve bool) (*url.URL, error) {
	page, err := c.Begin(server, params)
	if err != nil {
		return nil, err
	}
	if page, err = passConsentAndLogin(c.Browser, page, approve, c.SignIn); err != nil {
		return nil, err
	}
	redirect := cmp.Or(params.Get("redirect_uri"), c.RedirectURI)
	if page.Status/100 != 3 || withoutQuery(page.URL) != redirect {
		return nil, fmt.Errorf("the flow ended at %s (status %d), not at the redirect URI %s:\n%.2000s", page.URL.Redacted(), page.Status, redirect, page.Body)
	}
	return page.URL, nil
}

// withoutQuery is u without its query and fragment, where an authorization
// server adds its answer to a redirect URI.
func withoutQuery(u *url.URL) string {
	v := *u
	v.RawQuery, v.Fragment = "", ""
	return v.String()
}

// Code runs an approved authorization with PKCE and params and returns the
// code with its verifier, after checking that the redirect carries the
// request's state and the server's issuer (RFC 9207).
func (c *OAuthClient) Code(server string, params url.Values) (code, verifier string, err error) {
	verifier, challenge := PKCE()
	q := url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	for k, v := range params {
		q[k] = v
	}
	back, err := c.Authorize(server, q, true)
	if err != nil {
		return "", "", err
	}
	got := back.Query()
	switch {
	case got.Get("error") != "":
		return "", "", fmt.Errorf("authorization at %s refused: %s: %s", server, got.Get("error"), got.Get("error_description"))
	case got.Get("code") == "":
		return "", "", fmt.Errorf("no code in the redirect %s", back.Redacted())
	case got.Get("state") != cmp.Or(params.Get("state"), c.State) || got.Get("iss") != c.Issuer(server):
		return "", "", fmt.Errorf("the redirect carries state %q and iss %q, want %q and %q", got.Get("state"), got.Get("iss"), cmp.Or(params.Get("state"), c.State), c.Issuer(server))
	}
	return got.Get("code"), verifier, nil
}

// Tokens is a token endpoint's answer: tokens, or an OAuth error.
type Tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	ExpiresIn    int    `json:"expires_in"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
	// Status and Header are the HTTP response's.
	Status int         `json:"-"`
	Header http.Header `json:"-"`
}

// Err is nil for a 200 answer with an access token, and otherwise says
// what the endpoint answered.
func (t Tokens) Err() error {
	if t.Status == http.StatusOK && t.AccessToken != "" {
		return nil
	}
	return fmt.Errorf("token endpoint: status %d: %s: %s", t.Status, t.Error, t.Description)
}

// Token posts form, with c's client_id, to server's token endpoint. The
// error is only for a failed exchange with the endpoint; its refusals are
// in the Tokens.
func (c *OAuthClient) Token(server string, form url.Values) (Tokens, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	form.Set("client_id", c.ID)
	return ReadTokens(hc.PostForm(c.Issuer(server)+"/token", form))
}

// ReadTokens reads the answer of a request to a token endpoint, as
// http.Client.Do returns it, and closes its body. The error is only for a
// failed exchange with the endpoint; its refusals are in the Tokens.
func ReadTokens(resp *http.Response, err error) (Tokens, error) {
	if err != nil {
		return Tokens{}, err
	}
	defer resp.Body.Close()
	var tok Tokens
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok); err != nil {
		return Tokens{}, fmt.Errorf("token response (status %d) unreadable: %w", resp.StatusCode, err)
	}
	tok.Status, tok.Header = resp.StatusCode, resp.Header
	return tok, nil
}

// Exchange redeems a code obtained with c's redirect URI.
func (c *OAuthClient) Exchange(server, code, verifier string) (Tokens, error) {
	return c.redeem(server, code, verifier, c.RedirectURI)
}

func (c *OAuthClient) redeem(server, code, verifier, redirectURI string) (Tokens, error) {
	return c.Token(server, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirectURI}, "code_verifier": {verifier}})
}

// Refresh redeems a refresh token.
func (c *OAuthClient) Refresh(server, refreshToken string) (Tokens, error) {
	return c.Token(server, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}})
}

// Login runs a whole authorization at server with params and redeems the
// code (at the redirect URI the authorization used); it fails unless the
// token endpoint answers tokens.
func (c *OAuthClient) Login(server string, params url.Values) (Tokens, error) {
	code, verifier, err := c.Code(server, params)
	if err != nil {
		return Tokens{}, err
	}
	redirect := c.RedirectURI
	if r := params.Get("redirect_uri"); r != "" {
		redirect = r
	}
	tok, err := c.redeem(server, code, verifier, redirect)
	if err != nil {
		return tok, err
	}
	if err := tok.Err(); err != nil {
		return tok, fmt.Errorf("redeeming the code at %s: %w", server, err)
	}
	return tok, nil
}
