package caddymodule

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/ratelimit"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// ConfigError is a configuration mistake, located by its JSON path (and, in
// a Caddyfile, by file and line) and said in words that name the fix.
type ConfigError struct {
	// Path is the JSON path of the offending value, e.g. "servers/1/scopes".
	Path string
	// Msg says what is wrong and what to do.
	Msg string
}

func (e *ConfigError) Error() string { return e.Path + ": " + e.Msg }

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// dnsLabel is one label of an ASCII host name.
var dnsLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// isHostName reports whether h is a host as a URL names it: an ASCII DNS
// name or an IP address, without scheme, port, path or wildcard.
func isHostName(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Zone() == ""
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if !dnsLabel.MatchString(label) {
			return false
		}
	}
	return true
}

// hasPlaceholder reports whether a value is resolved only at provision time.
func hasPlaceholder(s string) bool { return strings.Contains(s, "{") }

// check validates the configuration without any I/O: the same rules run at
// Caddyfile adaptation (with file:line), at `caddy validate` and at every load.
func (g *Handler) check() error {
	if err := checkPublicURL(g.PublicURL); err != nil {
		return err
	}
	if err := checkPageText(g.ProductName, 100); err != nil {
		return &ConfigError{"product_name", "product_name " + err.Error()}
	}
	if err := g.Lifetimes.check(); err != nil {
		return err
	}
	if _, err := g.RateLimits.resolve(); err != nil {
		return err
	}
	if len(g.Gateways) == 0 {
		return &ConfigError{"gateways", "declare at least one gateway: the downstream authorization server, client ID and scopes its servers share"}
	}
	gateways := map[string]*Gateway{}
	for i, gw := range g.Gateways {
		path := fmt.Sprintf("gateways/%d", i)
		if err := checkGateway(path, gw); err != nil {
			return err
		}
		if gateways[gw.Name] != nil {
			return &ConfigError{path + "/name", fmt.Sprintf("gateway %q is declared twice; give each gateway its own name", gw.Name)}
		}
		gateways[gw.Name] = gw
	}
	if len(g.Servers) == 0 {
		return &ConfigError{"servers", "declare at least one server: a name, a path and the upstream that serves it"}
	}
	servers := map[string]*Server{}
	for i, srv := range g.Servers {
		path := fmt.Sprintf("servers/%d", i)
		if err := checkServer(path, srv, g.Gateways); err != nil {
			return err
		}
		if servers[srv.Name] != nil {
			return &ConfigError{path + "/name", fmt.Sprintf("server %q is declared twice; give each server its own name", srv.Name)}
		}
		for _, other := range g.Servers[:i] {
			if pathsOverlap(srv.Path, other.Path) {
				return &ConfigError{path + "/path", fmt.Sprintf("server %q at %s overlaps server %q at %s; give each server its own path", srv.Name, srv.Path, other.Name, other.Path)}
			}
		}
		servers[srv.Name] = srv
	}
	for i, gw := range g.Gateways {
		for j, c := range gw.Clients {
			for k, name := range c.Servers {
				srv := servers[name]
				if srv == nil || gatewayOf(srv, g.Gateways) != gw {
					return &ConfigError{fmt.Sprintf("gateways/%d/clients/%d/servers/%d", i, j, k), fmt.Sprintf("client %q names server %q, which is not attached to gateway %q", c.ID, name, gw.Name)}
				}
			}
		}
	}
	return nil
}

// checkPageText checks a text of the config that the gateway's pages show.
func checkPageText(text string, max int) error {
	if utf8.RuneCountInString(text) > max {
		return fmt.Errorf("is longer than %d characters; shorten it", max)
	}
	if !utf8.ValidString(text) || strings.IndexFunc(text, unicode.IsControl) >= 0 {
		return errors.New("holds a control character or invalid UTF-8")
	}
	return nil
}

func checkPublicURL(raw string) error {
	const path = "public_url"
	if raw == "" {
		return &ConfigError{path, "public_url is required: the origin MCP clients reach this site at, e.g. https://mcp.example.com (issuer and resource URIs are built from it, never from the Host header)"}
	}
	if hasPlaceholder(raw) {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return &ConfigError{path, fmt.Sprintf("public_url %q must be an absolute http(s) URL such as https://mcp.example.com", raw)}
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return &ConfigError{path, fmt.Sprintf("public_url %q uses http on a public host; OAuth requires https except on loopback addresses", raw)}
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return &ConfigError{path, fmt.Sprintf("public_url %q must be an origin only (scheme, host, optional port), without path, query or user info", raw)}
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

func checkGateway(path string, gw *Gateway) error {
	if !namePattern.MatchString(gw.Name) {
		return &ConfigError{path + "/name", fmt.Sprintf("gateway name %q must be 1-64 letters, digits, '.', '_' or '-'", gw.Name)}
	}
	who := fmt.Sprintf("gateway %q", gw.Name)
	if gw.AuthorizationServer == "" {
		return &ConfigError{path + "/authorization_server", who + " needs authorization_server: the issuer URL of the downstream OAuth/OpenID server"}
	}
	if gw.ClientID == "" {
		return &ConfigError{path + "/client_id", who + " needs client_id: the gateway's client ID at " + gw.AuthorizationServer}
	}
	if len(gw.Scopes) == 0 {
		return &ConfigError{path + "/scopes", who + " needs scopes: the full set of scopes its servers may request"}
	}
	if _, err := scopes.New(gw.Scopes...); err != nil {
		return &ConfigError{path + "/scopes", who + ": " + err.Error()}
	}
	if err := checkDownstream(path, who, gw); err != nil {
		return err
	}
	if err := checkEnterpriseIdPs(path, who, gw); err != nil {
		return err
	}
	if err := checkScopeDescriptions(path, who, gw); err != nil {
		return err
	}
	for j, h := range gw.TrustedClientHosts {
		if !isHostName(h) {
			return &ConfigError{fmt.Sprintf("%s/trusted_client_hosts/%d", path, j), fmt.Sprintf("%s: trusted_client_hosts: %q is not a host name; give the host alone, such as claude.ai (no scheme, port, path or wildcard; an internationalized name in its xn-- form)", who, h)}
		}
	}
	seen := map[string]bool{}
	for j, c := range gw.Clients {
		cpath := fmt.Sprintf("%s/clients/%d", path, j)
		if c.ID == "" {
			return &ConfigError{cpath + "/id", who + ": a pre-registered client needs an id"}
		}
		if seen[c.ID] {
			return &ConfigError{cpath + "/id", fmt.Sprintf("%s: client %q is declared twice", who, c.ID)}
		}
		seen[c.ID] = true
		if err := checkMachineClient(cpath, who, gw, c); err != nil {
			return err
		}
		if len(c.RedirectURIs) == 0 && c.ClientCredentials == nil && !enterpriseClient(gw, c.ID) {
			return &ConfigError{cpath + "/redirect_uris", fmt.Sprintf("%s: client %q needs redirect_uris (or client_credentials, for a client with no person present, or an enterprise_idp naming it)", who, c.ID)}
		}
		for k, u := range c.RedirectURIs {
			if err := authserver.ValidateRedirectURI(u); err != nil {
				return &ConfigError{fmt.Sprintf("%s/redirect_uris/%d", cpath, k), fmt.Sprintf("%s: client %q: %v", who, c.ID, err)}
			}
		}
	}
	return nil
}

// checkScopeDescriptions checks the words the gateway's pages show for its
// scopes: each describes one of the gateway's scopes, in a short text fit
// for a page.
func checkScopeDescriptions(path, who string, gw *Gateway) error {
	for _, name := range slices.Sorted(maps.Keys(gw.ScopeDescriptions)) {
		p := path + "/scope_descriptions/" + name
		if !slices.Contains(gw.Scopes, name) {
			return &ConfigError{p, fmt.Sprintf("%s: scope_description describes %q, which is not one of the gateway's scopes (%s)", who, name, strings.Join(gw.Scopes, " "))}
		}
		text := gw.ScopeDescriptions[name]
		if text == "" {
			return &ConfigError{p, fmt.Sprintf("%s: scope_description of %q is empty", who, name)}
		}
		if err := checkPageText(text, 200); err != nil {
			return &ConfigError{p, fmt.Sprintf("%s: scope_description of %q %v", who, name, err)}
		}
	}
	return nil
}

// checkDownstream checks how the gateway talks to its downstream server:
// the settings of its downstream client (downstream.Config.Validate, on
// the values as written: those holding placeholders are checked again
// once resolved, at provision) and how its servers' tokens are narrowed.
func checkDownstream(path, who string, gw *Gateway) error {
	dc, err := gw.downstreamConfig(path, who, func(s string) string { return s })
	if err != nil {
		return err
	}
	if err := dc.Validate(); err != nil {
		return downstreamError(path, who, gw, err)
	}

	if p := gw.PerServerTokens; p != nil {
		switch p.Mode {
		case "", "refresh", "token_exchange", "off":
		default:
			return &ConfigError{path + "/per_server_tokens/mode", fmt.Sprintf("%s: per_server_tokens mode %q must be refresh, token_exchange or off", who, p.Mode)}
		}
		switch p.Fallback {
		case "", "full_token", "refuse":
		default:
			return &ConfigError{path + "/per_server_tokens/fallback", fmt.Sprintf("%s: per_server_tokens fallback %q must be full_token or refuse", who, p.Fallback)}
		}
		if p.Mode == "off" && p.Fallback != "" {
			return &ConfigError{path + "/per_server_tokens/fallback", who + ": per_server_tokens off narrows nothing, so it has no fallback; remove it"}
		}
	}
	return nil
}

// downstreamError locates an error of downstream.Config.Validate in the
// gateway's config at path.
func downstreamError(path, who string, gw *Gateway, err error) error {
	var fe *downstream.FieldError
	if !errors.As(err, &fe) {
		return &ConfigError{path, who + ": " + err.Error()}
	}
	field := fe.Field
	if field == "identity" && gw.Identity == nil {
		// The default identity rule is wrong only because of the endpoints.
		field = "authorization_endpoint"
	}
	return &ConfigError{path + "/" + field, who + ": " + fe.Msg}
}

// checkClientKey checks the client_auth settings that only the config
// has: the key's text, certificate and key ID, which the downstream
// config holds parsed. The key parses unless it is yet to be resolved.
func checkClientKey(path, who string, ca *ClientAuth, resolve func(string) string) (*downstream.ClientKey, error) {
	path += "/client_auth"
	if ca == nil {
		return nil, nil
	}
	if ca.Method != downstream.AuthPrivateKeyJWT {
		if ca.PrivateKey != "" || ca.Certificate != "" || ca.KeyID != "" {
			return nil, &ConfigError{path + "/method", fmt.Sprintf("%s: key, certificate, key_id and assertion_audience go with client_auth private_key_jwt, not %s", who, ca.Method)}
		}
		return nil, nil
	}
	if ca.PrivateKey == "" {
		return nil, &ConfigError{path + "/private_key", who + ": client_auth private_key_jwt needs the private key: client_auth private_key_jwt key {file./path/to/key.pem}"}
	}
	pemText := ca.keyPEM(resolve)
	if hasPlaceholder(pemText) {
		return nil, nil // checked once resolved
	}
	key, err := downstream.ParseClientKey([]byte(pemText), resolve(ca.KeyID))
	if err != nil {
		return nil, &ConfigError{path + "/private_key", who + ": " + err.Error()}
	}
	return key, nil
}

func checkServer(path string, srv *Server, list []*Gateway) error {
	if !namePattern.MatchString(srv.Name) {
		return &ConfigError{path + "/name", fmt.Sprintf("server name %q must be 1-64 letters, digits, '.', '_' or '-'", srv.Name)}
	}
	who := fmt.Sprintf("server %q", srv.Name)
	p := srv.Path
	switch {
	case !strings.HasPrefix(p, "/") || p == "/":
		return &ConfigError{path + "/path", fmt.Sprintf("%s: path %q must start with / and name a prefix such as /support", who, p)}
	case strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#*{} ") || strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../"):
		return &ConfigError{path + "/path", fmt.Sprintf("%s: path %q must be a plain prefix without trailing slash, wildcards or dot segments", who, p)}
	case pathsOverlap(p, "/oauth") || pathsOverlap(p, "/.well-known"):
		return &ConfigError{path + "/path", fmt.Sprintf("%s: path %q is reserved for the gateway's OAuth endpoints; choose another", who, p)}
	}
	gw := gatewayOf(srv, list)
	if gw == nil {
		if srv.Gateway == "" {
			names := make([]string, 0, len(list))
			for _, g := range list {
				names = append(names, g.Name)
			}
			return &ConfigError{path + "/gateway", fmt.Sprintf("%s must name its gateway: several are declared (%s)", who, strings.Join(names, ", "))}
		}
		return &ConfigError{path + "/gateway", fmt.Sprintf("%s names gateway %q, which is not declared", who, srv.Gateway)}
	}
	full, _ := scopes.New(gw.Scopes...) // checked with the gateway
	offered := full
	if len(srv.Scopes) > 0 {
		asked, err := scopes.New(srv.Scopes...)
		if err != nil {
			return &ConfigError{path + "/scopes", who + ": " + err.Error()}
		}
		if extra := asked.Minus(full); !extra.IsEmpty() {
			return &ConfigError{path + "/scopes", fmt.Sprintf("%s requests scope(s) %s outside gateway %q's set (%s): add them to the gateway's scopes, or remove them from the server",
				who, extra, gw.Name, full)}
		}
		offered = asked
	}
	if err := checkCallScopes(path+"/call_scopes", who, srv.CallScopes, offered); err != nil {
		return err
	}
	if len(srv.UpstreamRaw) == 0 {
		return &ConfigError{path + "/upstream", who + " needs an upstream: e.g. reverse_proxy 127.0.0.1:9001 in its block"}
	}
	return nil
}

// gatewayOf returns the gateway a server is attached to: the one it names,
// or the only one.
func gatewayOf(srv *Server, list []*Gateway) *Gateway {
	if srv.Gateway == "" {
		if len(list) == 1 {
			return list[0]
		}
		return nil
	}
	for _, g := range list {
		if g.Name == srv.Gateway {
			return g
		}
	}
	return nil
}

// pathsOverlap reports whether one path prefix covers the other.
func pathsOverlap(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

// check bounds each lifetime: negative values are mistakes, and access
// tokens that outlive a day would make revocation meaningless (the
// verifier refuses them anyway).
func (l Lifetimes) check() error {
	limits := []struct {
		field string
		value caddy.Duration
		max   time.Duration
	}{
		{"access_token", l.AccessToken, accesstoken.MaxLifetime},
		{"refresh_token", l.RefreshToken, 365 * 24 * time.Hour},
		{"refresh_grace", l.RefreshGrace, 5 * time.Minute},
		{"authorization_code", l.AuthorizationCode, 10 * time.Minute},
		{"authorization", l.Authorization, time.Hour},
	}
	for _, lim := range limits {
		if d := time.Duration(lim.value); d < 0 || d > lim.max {
			return &ConfigError{"lifetimes/" + lim.field, fmt.Sprintf("%s lifetime %s is out of range: use a duration between 0 (the default) and %s", lim.field, d, lim.max)}
		}
	}
	return nil
}

// resolve reads the rate limits over the defaults; a nil RateLimits is the
// defaults.
func (rl *RateLimits) resolve() (authserver.Limits, error) {
	limits := authserver.DefaultLimits
	if rl == nil {
		return limits, nil
	}
	if rl.Off {
		return authserver.Limits{}, nil
	}
	for _, l := range []struct {
		field, value string
		target       *ratelimit.Rate
	}{
		{"register", rl.Register, &limits.Register},
		{"authorize", rl.Authorize, &limits.Authorize},
		{"token", rl.Token, &limits.Token},
		{"callback", rl.Callback, &limits.Callback},
		{"client_auth_failures", rl.ClientAuthFailures, &limits.ClientAuthFailures},
	} {
		switch l.value {
		case "":
		case "off":
			*l.target = ratelimit.Rate{}
		default:
			rate, err := ratelimit.ParseRate(l.value)
			if err != nil {
				return authserver.Limits{}, &ConfigError{"rate_limits/" + l.field, err.Error() + `; or "off" to lift this limit`}
			}
			*l.target = rate
		}
	}
	return limits, nil
}
