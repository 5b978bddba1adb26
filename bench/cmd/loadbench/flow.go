package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/internal/testenv"
)

// The real authorization flow, as an MCP client and the person at its
// browser go through it: registration, the gateway's consent page, the
// provider's sign-in, the code exchange and refreshes.

// redirectURI is the MCP client's loopback redirect URI. Nothing listens
// there: the browser stops at it and the code is read from the URL.
const redirectURI = "http://127.0.0.1:33418/callback"

// newHTTPClient returns a client whose pool is as large as the
// benchmark's concurrency, so that connections are reused.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// oauthClient is a registered MCP client of the gateway.
type oauthClient struct {
	http   *http.Client
	public string // the gateway's public URL
	id     string
}

// tokens is a token response.
type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

// register registers a public client (RFC 7591) at server's endpoint.
func register(hc *http.Client, public, server string) (*oauthClient, error) {
	body := `{"redirect_uris":["` + redirectURI + `"],"client_name":"loadbench","token_endpoint_auth_method":"none"}`
	resp, err := hc.Post(public+"/oauth/"+server+"/register", "application/json", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var reg struct {
		ClientID string `json:"client_id"`
	}
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("registration: status %d: %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil || reg.ClientID == "" {
		return nil, fmt.Errorf("registration response unreadable: %v", err)
	}
	return &oauthClient{http: hc, public: public, id: reg.ClientID}, nil
}

// newBrowser returns a browser that stops at the client's redirect URI.
func newBrowser() *testenv.Browser {
	b := testenv.NewBrowser()
	b.StopAt(func(u *url.URL) bool { return u.Host == "127.0.0.1:33418" })
	return b
}

// code runs the browser part of the flow for server and returns an
// authorization code with its PKCE verifier. The browser approves the
// consent page and signs in at the provider when they are shown.
func (c *oauthClient) code(b *testenv.Browser, server string) (code, verifier string, err error) {
	verifier = oauth2.GenerateVerifier()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {c.id},
		"redirect_uri":          {redirectURI},
		"state":                 {"loadbench"},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	page, err := b.Get(c.public + "/oauth/" + server + "/authorize?" + q.Encode())
	if err != nil {
		return "", "", err
	}
	if page, err = testenv.PassConsentAndLogin(b, page, true); err != nil {
		return "", "", err
	}
	if page.URL.Host != "127.0.0.1:33418" {
		return "", "", fmt.Errorf("the flow ended at %s (status %d), not at the client", page.URL.Redacted(), page.Status)
	}
	back := page.URL.Query()
	if back.Get("code") == "" {
		return "", "", fmt.Errorf("authorization failed: %s: %s", back.Get("error"), back.Get("error_description"))
	}
	return back.Get("code"), verifier, nil
}

// exchange redeems a code at server's token endpoint.
func (c *oauthClient) exchange(server, code, verifier string) (tokens, error) {
	return c.token(server, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	})
}

// refresh redeems a refresh token at server's token endpoint.
func (c *oauthClient) refresh(server, refreshToken string) (tokens, error) {
	return c.token(server, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}})
}

func (c *oauthClient) token(server string, form url.Values) (tokens, error) {
	form.Set("client_id", c.id)
	resp, err := c.http.PostForm(c.public+"/oauth/"+server+"/token", form)
	if err != nil {
		return tokens{}, err
	}
	defer resp.Body.Close()
	var tok tokens
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		return tokens{}, fmt.Errorf("token response (status %d) unreadable: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return tokens{}, fmt.Errorf("token endpoint: status %d: %s: %s", resp.StatusCode, tok.Error, tok.Description)
	}
	return tok, nil
}

// login runs the whole flow for server and returns its tokens.
func (c *oauthClient) login(server string) (tokens, error) {
	code, verifier, err := c.code(newBrowser(), server)
	if err != nil {
		return tokens{}, err
	}
	return c.exchange(server, code, verifier)
}
