package testenv_test

import (
	"context"
	"fmt"
	"log"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// A client signs a person in at the provider with the authorization code
// flow and PKCE, asking for an access token bound to the API audience; the
// scripted browser fills in the login form.
func ExampleStartProvider() {
	const callback = "http://127.0.0.1:8080/oauth/callback"
	p, err := testenv.StartProvider(testenv.ProviderConfig{RedirectURIs: []string{callback}})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	conf := &oauth2.Config{
		ClientID:     testenv.DefaultClientID,
		ClientSecret: testenv.DefaultClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  callback,
		Scopes:       []string{"openid", "offline_access", "tickets.read"},
	}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("state", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("resource", testenv.DefaultAudience))

	b := testenv.NewBrowser()
	b.StopAt(func(u *url.URL) bool { return strings.HasPrefix(u.String(), callback) })
	login, err := b.Get(authURL)
	if err != nil {
		log.Fatal(err)
	}
	back, err := b.Submit(login.Form("login"), "", nil) // demo/demo is prefilled
	if err != nil {
		log.Fatal(err)
	}

	tok, err := conf.Exchange(context.Background(), back.URL.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		log.Fatal(err)
	}
	info, _ := p.TokenInfo(tok.AccessToken)
	fmt.Println("subject:", info.Subject)
	fmt.Println("audience:", info.Audience)
	fmt.Println("scopes:", info.Scopes)
	fmt.Println("refresh token issued:", tok.RefreshToken != "")
	// Output:
	// subject: demo-user
	// audience: [https://api.example.com]
	// scopes: [openid offline_access tickets.read]
	// refresh token issued: true
}
