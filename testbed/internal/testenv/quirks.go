package testenv

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// plainUserPath is where a PlainOAuth provider serves the signed-in user,
// as GitHub serves https://api.github.com/user.
const plainUserPath = "/user"

// maxRecorded bounds the provider's records of requests.
const maxRecorded = 1000

// assertionType is the client_assertion_type of private_key_jwt.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// authorizeQuirks applies ProviderConfig's provider behaviours to an
// authorization request: it may refuse it or rewrite its form, which op
// reads next. It returns the requested audience values.
func (p *Provider) authorizeQuirks(r *http.Request) ([]string, error) {
	c := p.cfg
	if c.AudienceParameter == "audience" && len(r.Form["resource"]) > 0 {
		return nil, errors.New("invalid_request: this provider takes the API audience as the audience parameter, not resource")
	}
	asked := strings.Fields(r.Form.Get("scope"))
	if c.PlainOAuth && slices.Contains(asked, "openid") {
		return nil, errors.New("invalid_scope: this server is not an OpenID provider; openid is not a scope here")
	}
	if c.OfflineByParameter {
		if slices.Contains(asked, "offline_access") {
			return nil, errors.New("invalid_scope: offline_access is not a scope here; ask for access_type=offline")
		}
		if r.Form.Get("access_type") == "offline" {
			r.Form.Set("scope", strings.Join(append(asked, "offline_access"), " "))
		}
	}
	if c.RefuseUnknownScopes {
		known := append([]string{"openid", "profile", "email"}, c.Scopes...)
		if !c.OfflineByParameter {
			known = append(known, "offline_access")
		}
		for _, s := range asked {
			if !slices.Contains(known, s) {
				return nil, fmt.Errorf("invalid_scope: %q is not a scope of this provider", s)
			}
		}
	}
	return r.Form[c.AudienceParameter], nil
}

// tokenQuirks applies ProviderConfig's provider behaviours to a token
// request: the one client authentication method it accepts, and whether a
// refresh may narrow the scope. It may rewrite the form, which op reads
// next; a private_key_jwt assertion, once verified here, is replaced by the
// client's secret, which op checks as usual.
func (p *Provider) tokenQuirks(r *http.Request) (int, error) {
	c := p.cfg
	_, _, basic := r.BasicAuth()
	form := r.PostForm
	method := "client_secret_post"
	switch {
	case form.Get("client_assertion_type") != "":
		method = "private_key_jwt"
	case basic:
		method = "client_secret_basic"
	case form.Get("client_secret") == "":
		method = "none"
	}
	p.record(&p.authMethods, method)
	if c.ClientAuthMethod != "" && method != c.ClientAuthMethod {
		return http.StatusUnauthorized, fmt.Errorf("invalid_client: this client authenticates with %s, not %s", c.ClientAuthMethod, method)
	}
	if c.AudienceParameter == "audience" && len(form["resource"]) > 0 {
		return http.StatusBadRequest, errors.New("invalid_request: this provider takes the API audience as the audience parameter, not resource")
	}
	if method == "private_key_jwt" {
		if err := p.verifyAssertion(form); err != nil {
			return http.StatusUnauthorized, fmt.Errorf("invalid_client: %w", err)
		}
		for _, k := range []string{"client_assertion", "client_assertion_type", "client_id"} {
			form.Del(k)
			r.Form.Del(k)
		}
		r.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	}
	if form.Get("grant_type") == tokenExchangeGrant {
		p.record(&p.exchanges, form.Get("scope"))
	}
	if form.Get("grant_type") == "client_credentials" {
		p.record(&p.clientGrants, form.Get("scope"))
	}
	if form.Get("grant_type") == "refresh_token" {
		p.record(&p.refreshScopes, form.Get("scope"))
		if c.IgnoreRefreshScope {
			form.Del("scope")
			r.Form.Del("scope")
		}
	}
	return 0, nil
}

// verifyAssertion checks a private_key_jwt client assertion: signed by the
// client's key, issued by and about the client, for this provider, not
// expired and not seen before.
func (p *Provider) verifyAssertion(form url.Values) error {
	if form.Get("client_assertion_type") != assertionType {
		return fmt.Errorf("client_assertion_type must be %s", assertionType)
	}
	aud := p.Endpoint().TokenURL
	if p.cfg.AssertionAudience == "issuer" {
		aud = p.issuer
	}
	claims := jwt.MapClaims{}
	token, err := jwt.ParseWithClaims(form.Get("client_assertion"), claims,
		func(*jwt.Token) (any, error) { return p.cfg.ClientPublicKey, nil },
		jwt.WithValidMethods([]string{"RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"}),
		jwt.WithIssuer(p.cfg.ClientID),
		jwt.WithSubject(p.cfg.ClientID),
		jwt.WithAudience(aud),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		return fmt.Errorf("the client assertion does not verify: %w", err)
	}
	if kid := p.cfg.ClientKeyID; kid != "" && token.Header["kid"] != kid {
		return fmt.Errorf("the client assertion names key %v, not the registered %q", token.Header["kid"], kid)
	}
	if cert := p.cfg.ClientCertificate; cert != nil {
		sha1Sum, sha256Sum := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
		if token.Header["x5t#S256"] != base64.RawURLEncoding.EncodeToString(sha256Sum[:]) &&
			token.Header["x5t"] != base64.RawURLEncoding.EncodeToString(sha1Sum[:]) {
			return errors.New("the client assertion names no registered certificate: its x5t#S256 or x5t header must carry the certificate's thumbprint")
		}
	}
	jti, _ := claims["jti"].(string)
	exp, _ := claims.GetExpirationTime()
	if jti == "" || exp == nil {
		return errors.New("the client assertion needs a jti and an exp")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for id, until := range p.assertionIDs {
		if now.After(until) {
			delete(p.assertionIDs, id)
		}
	}
	if _, seen := p.assertionIDs[jti]; seen {
		return errors.New("the client assertion was used before")
	}
	if p.assertionIDs == nil {
		p.assertionIDs = make(map[string]time.Time)
	}
	p.assertionIDs[jti] = exp.Time
	return nil
}

// record appends v to a list of the provider's, up to maxRecorded entries.
func (p *Provider) record(list *[]string, v string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(*list) < maxRecorded {
		*list = append(*list, v)
	}
}

// ClientAuthMethods returns how the client authenticated at the token
// endpoint, one entry per request: client_secret_basic,
// client_secret_post, private_key_jwt or none.
func (p *Provider) ClientAuthMethods() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.authMethods)
}

// RefreshScopes returns the scope parameter of each refresh request, ""
// where there was none.
func (p *Provider) RefreshScopes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.refreshScopes)
}

// ExchangeScopes returns the scope parameter of each token exchange
// request, "" where there was none.
func (p *Provider) ExchangeScopes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.exchanges)
}

// ClientCredentialsScopes returns the scope of each client credentials
// request, in order: one entry per token the client obtained that way.
func (p *Provider) ClientCredentialsScopes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.clientGrants)
}

// writeOAuthError answers a token request with an RFC 6749 §5.2 error;
// err's text is "<code>: <description>".
func writeOAuthError(w http.ResponseWriter, status int, err error) {
	code, desc, _ := strings.Cut(err.Error(), ": ")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// formEncoded serves a token request and answers it form-encoded rather
// than as JSON, as GitHub does for clients that do not ask for JSON, and
// without the ID token op issues even without the openid scope.
func formEncoded(next http.Handler, w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	var fields map[string]any
	if json.Unmarshal(rec.Body.Bytes(), &fields) != nil {
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		return
	}
	v := url.Values{}
	delete(fields, "id_token")
	for k, f := range fields {
		switch f := f.(type) {
		case string:
			v.Set(k, f)
		case float64:
			v.Set(k, strconv.FormatFloat(f, 'f', -1, 64))
		}
	}
	w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(rec.Code)
	w.Write([]byte(v.Encode()))
}

// serveUser answers GET /user with the user an access token belongs to,
// as GitHub's API does.
func (p *Provider) serveUser(w http.ResponseWriter, r *http.Request) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	info, ok := p.TokenInfo(token)
	u, known := p.store.user(info.Subject)
	if !strings.EqualFold(scheme, "Bearer") || !ok || !known || time.Now().After(info.Expiry) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"message":"Bad credentials"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"id": u.NumericID, "login": u.Username, "name": u.Name, "email": u.Email})
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = slices.Clone(vs)
	}
	return c
}
