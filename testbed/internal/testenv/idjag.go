package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
)

// Token types of the enterprise-managed authorization extension.
const (
	TokenTypeIDJAG   = "urn:ietf:params:oauth:token-type:id-jag"
	tokenTypeIDToken = "urn:ietf:params:oauth:token-type:id_token"
	// IDJAGLifetime is how long the ID-JAGs of an IDJAG provider last.
	IDJAGLifetime = 5 * time.Minute
)

// serveIDJAG answers a token exchange for an ID-JAG (the extension's §4):
// the client authenticates with its secret, and its subject token is an
// ID token this provider issued to it, still valid.
func (p *Provider) serveIDJAG(w http.ResponseWriter, r *http.Request) {
	form := r.PostForm
	if !p.authenticateClient(w, r) {
		return
	}
	if form.Get("subject_token_type") != tokenTypeIDToken {
		writeOAuthError(w, http.StatusBadRequest, errors.New("invalid_request: subject_token_type must be "+tokenTypeIDToken))
		return
	}
	audience, resource := form.Get("audience"), form.Get("resource")
	if audience == "" || resource == "" {
		writeOAuthError(w, http.StatusBadRequest, errors.New("invalid_request: audience and resource are required"))
		return
	}
	var idToken jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(form.Get("subject_token"), &idToken, func(*jwt.Token) (any, error) {
		return &p.store.signingKey.key.PublicKey, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(p.issuer), jwt.WithAudience(p.store.clientID), jwt.WithExpirationRequired())
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, errors.New("invalid_grant: the subject token is not a valid ID token of this provider for this client"))
		return
	}
	user, ok := p.store.user(idToken.Subject)
	if !ok {
		writeOAuthError(w, http.StatusBadRequest, errors.New("invalid_grant: unknown user"))
		return
	}
	claims := jwt.MapClaims{
		"iss": p.issuer, "sub": user.Subject, "email": user.Email,
		"aud": audience, "resource": resource,
		"client_id": cmpOr(p.cfg.IDJAGClientID, p.store.clientID),
		"jti":       rand.Text(),
		"iat":       time.Now().Unix(),
		"exp":       time.Now().Add(IDJAGLifetime).Unix(),
	}
	if scope := form.Get("scope"); scope != "" {
		claims["scope"] = scope
	}
	signed, err := p.SignIDJAG(nil, claims)
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, errors.New("server_error: "+err.Error()))
		return
	}
	writeTokens(w, map[string]any{
		"issued_token_type": TokenTypeIDJAG,
		"access_token":      signed,
		"token_type":        "N_A",
		"scope":             form.Get("scope"),
		"expires_in":        int(IDJAGLifetime.Seconds()),
	})
}

// redeemIDJAG answers a token exchange of an ID-JAG this provider issued,
// still valid, for the user's tokens: the client authenticates with its
// secret, and gets an access token with the scopes it asks for that the
// provider offers, bound to the resource it names, and a refresh token.
func (p *Provider) redeemIDJAG(w http.ResponseWriter, r *http.Request) {
	form := r.PostForm
	if !p.authenticateClient(w, r) {
		return
	}
	id := p.store.clientID
	var claims jwt.RegisteredClaims
	tok, err := jwt.ParseWithClaims(form.Get("subject_token"), &claims, func(*jwt.Token) (any, error) {
		return &p.store.signingKey.key.PublicKey, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(p.issuer), jwt.WithExpirationRequired())
	if err != nil || tok.Header["typ"] != "oauth-id-jag+jwt" {
		writeOAuthError(w, http.StatusBadRequest, errors.New("invalid_grant: the subject token is not a valid ID-JAG of this provider"))
		return
	}
	if _, ok := p.store.user(claims.Subject); !ok {
		writeOAuthError(w, http.StatusBadRequest, errors.New("invalid_grant: unknown user"))
		return
	}
	audience, err := p.store.audienceFor(r.Context())
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, errors.New("invalid_target: unknown resource"))
		return
	}
	var scopes []string
	for _, s := range strings.Fields(form.Get("scope")) {
		if slices.Contains([]string{"openid", "profile", "email", "offline_access"}, s) || slices.Contains(p.store.apiScopes, s) {
			scopes = append(scopes, s)
		}
	}
	access, refresh, expiry := p.store.issueTokens(claims.Subject, id, scopes, audience)
	at := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": p.issuer, "sub": claims.Subject, "aud": audienceOrClient(audience, id), "client_id": id,
		"jti": access, "iat": time.Now().Unix(), "exp": expiry.Unix(), "scope": strings.Join(scopes, " "),
	})
	at.Header["kid"] = p.store.signingKey.id
	signed, err := at.SignedString(p.store.signingKey.key)
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, errors.New("server_error: "+err.Error()))
		return
	}
	writeTokens(w, map[string]any{
		"issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"access_token":      signed,
		"refresh_token":     refresh,
		"token_type":        "Bearer",
		"scope":             strings.Join(scopes, " "),
		"expires_in":        int(time.Until(expiry).Seconds()),
	})
}

// authenticateClient checks the secret of the provider's client, by HTTP
// Basic (form-encoded, RFC 6749 §2.3.1) or in the form, in constant time,
// and answers invalid_client when it is not.
func (p *Provider) authenticateClient(w http.ResponseWriter, r *http.Request) bool {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if p.store.AuthorizeClientIDSecret(r.Context(), id, secret) != nil {
		writeOAuthError(w, http.StatusUnauthorized, errors.New("invalid_client: client authentication failed"))
		return false
	}
	return true
}

// writeTokens answers a token request with fields, uncached.
func writeTokens(w http.ResponseWriter, fields map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(fields)
}

// SignIDJAG signs claims with the provider's key as an ID-JAG: header typ
// oauth-id-jag+jwt and the key's kid, which header may replace (tests
// craft faulty ID-JAGs with it).
func (p *Provider) SignIDJAG(header map[string]any, claims jwt.MapClaims) (string, error) {
	return SignIDJAG(p.store.signingKey.key, p.store.signingKey.id, header, claims)
}

// SignIDJAG signs claims with key as an ID-JAG with kid, header replacing
// header values.
func SignIDJAG(key *rsa.PrivateKey, kid string, header map[string]any, claims jwt.MapClaims) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["typ"] = "oauth-id-jag+jwt"
	tok.Header["kid"] = kid
	for k, v := range header {
		tok.Header[k] = v
	}
	return tok.SignedString(key)
}

// SignIn plays the provider's first user signing in at the provider with
// its client, in b, through the authorization code flow with PKCE to
// redirectURI (added to the client's, never fetched), and returns the
// token response, with the ID token in its id_token extra.
func (p *Provider) SignIn(ctx context.Context, b *Browser, redirectURI string) (*oauth2.Token, error) {
	p.AddRedirectURI(redirectURI)
	cfg := oauth2.Config{
		ClientID: p.store.clientID, ClientSecret: string(p.store.clientSecret), Endpoint: p.Endpoint(),
		RedirectURL: redirectURI, Scopes: []string{"openid", "email"},
	}
	verifier := oauth2.GenerateVerifier()
	b.StopAt(func(u *url.URL) bool { return strings.HasPrefix(u.String(), redirectURI) })
	defer b.StopAt(nil)
	page, err := b.Get(cfg.AuthCodeURL(rand.Text(), oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		return nil, err
	}
	if page, err = PassConsentAndLogin(b, page, true); err != nil {
		return nil, err
	}
	code := page.URL.Query().Get("code")
	if code == "" {
		return nil, fmt.Errorf("testenv: signing in at the provider ended at %s without a code", page.URL)
	}
	return cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
