package downstream

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// FieldError is a wrong setting of a Config. Field names the setting as
// the gateway's config spells it ("client_auth/method",
// "scope_map/tickets.read"), so that the caller can point at where it was
// set; Msg says what is wrong and what to do.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks the settings, each on its own and against each other,
// without I/O. A value that still holds a runtime placeholder ({env.NAME},
// {file./path}) is not judged by its form: the caller checks the config
// again once it has resolved it. Whether the required settings (Issuer,
// ClientID, Scopes) are given at all is the caller's to say, in the terms
// of its config.
func (c *Config) Validate() error {
	if err := CheckEndpointURL(c.Issuer); err != nil {
		return &FieldError{"authorization_server", "authorization_server " + err.Error()}
	}
	explicit := c.Endpoints.AuthorizationEndpoint != "" || c.Endpoints.TokenEndpoint != ""
	if explicit && (c.Endpoints.AuthorizationEndpoint == "" || c.Endpoints.TokenEndpoint == "") {
		field := "authorization_endpoint"
		if c.Endpoints.TokenEndpoint == "" {
			field = "token_endpoint"
		}
		return &FieldError{field, "authorization_endpoint and token_endpoint go together: give both for a server without a discovery document, or neither to discover them from authorization_server"}
	}
	for _, e := range []struct{ field, url string }{
		{"authorization_endpoint", c.Endpoints.AuthorizationEndpoint},
		{"token_endpoint", c.Endpoints.TokenEndpoint},
	} {
		if e.url == "" {
			continue
		}
		if err := CheckEndpointURL(e.url); err != nil {
			return &FieldError{e.field, e.field + " " + err.Error()}
		}
	}

	switch c.ResourceParam {
	case "", ParamResource, ParamNone:
	case ParamAudience:
		if c.Resource == "" {
			return &FieldError{"resource_parameter", "resource_parameter audience needs the audience to send: audience <value>"}
		}
	default:
		return &FieldError{"resource_parameter", fmt.Sprintf("resource_parameter %q must be resource (RFC 8707), audience (Auth0) or none", c.ResourceParam)}
	}

	for _, name := range slices.Sorted(maps.Keys(c.AuthParams)) {
		value := c.AuthParams[name]
		field := "authorization_params/" + name
		if name == "" || value == "" {
			return &FieldError{field, fmt.Sprintf("authorization parameter %q needs a name and a value", name)}
		}
		if slices.Contains(ReservedAuthParams, name) {
			return &FieldError{field, fmt.Sprintf("authorization parameter %q is set by the gateway itself and cannot be configured; use resource/audience, scopes and login_scopes for those", name)}
		}
	}

	for _, name := range slices.Sorted(maps.Keys(c.ScopeMap)) {
		mapped := c.ScopeMap[name]
		field := "scope_map/" + name
		if !slices.Contains(c.Scopes, name) {
			return &FieldError{field, fmt.Sprintf("scope_map maps %q, which is not one of the gateway's scopes (%s)", name, strings.Join(c.Scopes, " "))}
		}
		if len(mapped) == 0 {
			return &FieldError{field, fmt.Sprintf("scope_map gives %q no downstream scope", name)}
		}
		if _, err := scopes.New(mapped...); err != nil {
			return &FieldError{field, fmt.Sprintf("scope_map %s: %v", name, err)}
		}
	}
	if len(c.LoginScopes) > 0 {
		if _, err := scopes.New(c.LoginScopes...); err != nil {
			return &FieldError{"login_scopes", "login_scopes: " + err.Error()}
		}
	}

	if err := c.checkIdentity(explicit); err != nil {
		return err
	}
	return c.ClientAuth.check()
}

// checkIdentity checks the rule that resolves the user. explicit says
// whether the endpoints are configured rather than discovered.
func (c *Config) checkIdentity(explicit bool) error {
	source := c.IdentitySource
	switch source {
	case "":
		source = SourceIDToken
	case SourceIDToken, SourceUserinfo:
	default:
		return &FieldError{"identity/source", fmt.Sprintf("identity source %q must be id_token or userinfo", source)}
	}
	switch {
	case c.UserinfoURL != "" && source != SourceUserinfo:
		return &FieldError{"identity/endpoint", "an identity endpoint goes with source userinfo: identity userinfo <url> claim <name>"}
	case c.UserinfoURL != "":
		if err := CheckEndpointURL(c.UserinfoURL); err != nil {
			return &FieldError{"identity/endpoint", "identity endpoint " + err.Error()}
		}
	case explicit && source == SourceUserinfo:
		return &FieldError{"identity", "without discovery there is no userinfo endpoint to find: name it, e.g. identity userinfo https://api.github.com/user claim id"}
	case explicit:
		return &FieldError{"identity", "without discovery there are no keys to verify ID tokens with: resolve the user at a user endpoint instead, e.g. identity userinfo https://api.github.com/user claim id"}
	}
	if source == SourceIDToken && !slices.Contains(c.LoginScopes, "openid") {
		return &FieldError{"login_scopes", "identity id_token needs an ID token, which only the openid scope brings: add openid to login_scopes, or use identity userinfo"}
	}
	return nil
}

// check checks the client authentication: the method, and that what it
// needs is given and what it does not use is not.
func (a *ClientAuth) check() error {
	switch a.Method {
	case "":
		if a.Key != nil || a.AssertionAudience != "" {
			return &FieldError{"client_auth/method", "key, certificate, key_id and assertion_audience go with client_auth private_key_jwt"}
		}
		return nil
	case AuthSecretBasic, AuthSecretPost:
		if a.Secret == "" {
			return &FieldError{"client_auth/method", fmt.Sprintf("client_auth %s needs client_secret", a.Method)}
		}
	case AuthPrivateKeyJWT:
		if a.Secret != "" {
			return &FieldError{"client_auth/method", "client_auth private_key_jwt signs assertions instead of sending a secret: remove client_secret"}
		}
		switch aud := a.AssertionAudience; aud {
		case "", AudienceTokenEndpoint, AudienceIssuer:
		default:
			if err := CheckEndpointURL(aud); err != nil {
				return &FieldError{"client_auth/assertion_audience", fmt.Sprintf("assertion_audience must be token_endpoint, issuer or an absolute URL: %v", err)}
			}
		}
		return nil
	case AuthNone:
		if a.Secret != "" {
			return &FieldError{"client_auth/method", "client_auth none is for a public client: remove client_secret, or choose client_secret_basic or client_secret_post"}
		}
	default:
		return &FieldError{"client_auth/method", fmt.Sprintf("client_auth method %q must be client_secret_basic, client_secret_post, private_key_jwt or none", a.Method)}
	}
	if a.Key != nil || a.AssertionAudience != "" {
		return &FieldError{"client_auth/method", fmt.Sprintf("key, certificate, key_id and assertion_audience go with client_auth private_key_jwt, not %s", a.Method)}
	}
	return nil
}

// checkURL checks that raw is an absolute http(s) URL, https unless on a
// loopback host. A value holding a placeholder is left for later.
func CheckEndpointURL(raw string) error {
	if strings.Contains(raw, "{") {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q must be an absolute http(s) URL", raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q uses http on a public host; use https", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Fingerprint identifies the settings: two configs with the same
// fingerprint make the same client of the same downstream server, so a
// caller may share one Client (and what hangs from it) between them. It
// covers every setting; the client secret and the private key enter only
// as digests. HTTPClient and Now, the plumbing of requests rather than
// settings, are left out.
func (c *Config) Fingerprint() string {
	f := fingerprinter{h: sha256.New()}
	f.strings(c.Issuer, c.ClientID)
	e := c.Endpoints
	f.strings(e.Issuer, e.AuthorizationEndpoint, e.TokenEndpoint, e.UserinfoEndpoint, e.JWKSURI, e.RevocationEndpoint)
	f.list(e.TokenEndpointAuthMethodsSupported)
	secret := sha256.Sum256([]byte(c.ClientAuth.Secret))
	f.strings(c.ClientAuth.Method, hex.EncodeToString(secret[:]), c.ClientAuth.Key.fingerprint(), c.ClientAuth.AssertionAudience)
	f.strings(c.Resource, c.ResourceParam)
	f.list(c.Scopes)
	f.strings(fmt.Sprint(len(c.ScopeMap)))
	for _, k := range slices.Sorted(maps.Keys(c.ScopeMap)) {
		f.strings(k)
		f.list(c.ScopeMap[k])
	}
	// Nil (none) and empty login scopes ask for the same.
	f.list(c.LoginScopes)
	f.strings(fmt.Sprint(len(c.AuthParams)))
	for _, k := range slices.Sorted(maps.Keys(c.AuthParams)) {
		f.strings(k, c.AuthParams[k])
	}
	f.strings(c.RedirectURL, c.IdentitySource, c.IdentityClaim, c.UserinfoURL, c.MetadataTTL.String())
	return hex.EncodeToString(f.h.Sum(nil))
}

// fingerprinter hashes strings each prefixed by its length, so that no two
// different sequences hash the same bytes.
type fingerprinter struct{ h hash.Hash }

func (f fingerprinter) strings(values ...string) {
	var n [binary.MaxVarintLen64]byte
	for _, v := range values {
		f.h.Write(n[:binary.PutUvarint(n[:], uint64(len(v)))])
		f.h.Write([]byte(v))
	}
}

func (f fingerprinter) list(values []string) {
	f.strings(fmt.Sprint(len(values)))
	f.strings(values...)
}

// fingerprint identifies the key by its public key's digest, with its key
// ID, algorithm and certificate; "" for no key.
func (k *ClientKey) fingerprint() string {
	if k == nil {
		return ""
	}
	der, err := x509.MarshalPKIXPublicKey(k.key.Public())
	if err != nil {
		// Every key ParseClientKey accepts marshals.
		der = []byte(fmt.Sprintf("%T", k.key))
	}
	sum := sha256.Sum256(der)
	return strings.Join([]string{hex.EncodeToString(sum[:]), k.id, k.method.Alg(), k.x5tS256}, "\x00")
}
