// Package caddymodule registers the mcp_gateway HTTP handler with Caddy: one
// shared OAuth gateway in front of several MCP servers.
//
// The handler owns the whole MCP surface of a site: the OAuth endpoints and
// metadata of every server (served by package authserver), and the server
// paths themselves, where each request is authorized inline, its token
// swapped for the user's downstream token, and handed to the server's
// upstream handler (Caddy's reverse_proxy).
package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/gateway"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the mcp_gateway HTTP handler: one or more gateways (auth
// boundaries toward downstream authorization servers) and the MCP servers
// attached to them.
type Handler struct {
	// PublicURL is the origin MCP clients reach this site at, e.g.
	// "https://mcp.example.com". Issuers, resource URIs and the downstream
	// redirect URI (<public_url>/oauth/callback) are built from it.
	PublicURL string `json:"public_url"`

	// ProductName names the site in the titles of the gateway's pages
	// (consent, connected apps, errors), such as "Acme Support". At most
	// 100 characters, without control characters.
	ProductName string `json:"product_name,omitempty"`

	// Gateways are the auth boundaries. Each holds the full scope set its
	// servers may request.
	Gateways []*Gateway `json:"gateways"`

	// Servers are the MCP servers, each at a path prefix of this site and
	// attached to one gateway.
	Servers []*Server `json:"servers"`

	// Lifetimes of the tokens and codes the gateway issues.
	Lifetimes Lifetimes `json:"lifetimes,omitzero"`

	// RateLimits bound the auth endpoints per client address. Default: see
	// RateLimits; the limits apply even when this is unset.
	RateLimits *RateLimits `json:"rate_limits,omitempty"`

	edge     *authserver.Edge
	counter  outcomeCounter
	runtimes []*pooledGateway
	proxies  map[string]proxy // by server name
	acquired []string         // usage pool keys this instance took
	logger   *zap.Logger
}

// proxy is where a server's requests go: its upstream handler, and the
// gateway whose key binds the server's session IDs.
type proxy struct {
	upstream caddyhttp.MiddlewareHandler
	gateway  *gateway.Runtime
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_gateway",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves runtime placeholders, attaches each gateway to the
// state it shares with earlier configs (through a usage pool, so a reload
// drops no cache or key), and loads each server's upstream handler. It does
// no network or storage I/O: that happens on the first request.
func (g *Handler) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	if err := g.check(); err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	publicURL := repl.ReplaceKnown(g.PublicURL, "")
	if err := checkPublicURL(publicURL); err != nil {
		return err
	}
	publicURL = strings.TrimSuffix(publicURL, "/")

	storage := ctx.Storage()
	storageID := fmt.Sprintf("%T:%v", storage, storage)
	runtimes := map[string]*pooledGateway{}
	for i, gw := range g.Gateways {
		settings, err := resolveGateway(repl, publicURL, gw, storage, g.logger)
		if err != nil {
			return &ConfigError{fmt.Sprintf("gateways/%d", i), err.Error()}
		}
		rt, key, err := acquireGateway(storageID, settings)
		if err != nil {
			return err
		}
		g.acquired = append(g.acquired, key)
		runtimes[gw.Name] = rt
		g.runtimes = append(g.runtimes, rt)
	}

	var servers []*authserver.Server
	attached := map[string][]*authserver.Server{} // by gateway
	g.proxies = make(map[string]proxy, len(g.Servers))
	for _, srv := range g.Servers {
		gw := gatewayOf(srv, g.Gateways)
		rt := runtimes[gw.Name]
		offered := rt.Scopes()
		if len(srv.Scopes) > 0 {
			offered = scopes.MustParse(strings.Join(srv.Scopes, " "))
		}
		s := &authserver.Server{
			Name:    srv.Name,
			Path:    srv.Path,
			Rule:    scopes.Rule{Offered: offered, Strict: srv.StrictScopes},
			Gateway: rt.Gateway,
			// Its downstream token, narrowed to its own scopes.
			Narrowing: narrowing(rt.Runtime, gw, srv.Name, offered),
			// Scopes of single tools, resources and prompts; nil reads no
			// request body.
			Calls: callPolicy(srv.CallScopes),
		}
		servers = append(servers, s)
		attached[gw.Name] = append(attached[gw.Name], s)
		mod, err := ctx.LoadModule(srv, "UpstreamRaw")
		if err != nil {
			return fmt.Errorf("server %q: loading its upstream handler: %w", srv.Name, err)
		}
		g.proxies[srv.Name] = proxy{upstream: mod.(caddyhttp.MiddlewareHandler), gateway: rt.Runtime}
	}

	limits, err := g.RateLimits.resolve()
	if err != nil {
		return err
	}
	for _, rt := range g.runtimes {
		rt.metrics.register(ctx.GetMetricsRegistry(), g.logger, rt.Name())
	}
	metricsOf := map[*authserver.Server]*gatewayMetrics{}
	for name, list := range attached {
		for _, s := range list {
			metricsOf[s] = runtimes[name].metrics
		}
	}
	g.counter = newOutcomeCounter(servers, metricsOf)
	g.edge = authserver.New(authserver.Options{
		PublicURL:        publicURL,
		ProductName:      g.ProductName,
		AccessTokenTTL:   time.Duration(g.Lifetimes.AccessToken),
		RefreshTokenTTL:  time.Duration(g.Lifetimes.RefreshToken),
		RefreshGrace:     time.Duration(g.Lifetimes.RefreshGrace),
		CodeTTL:          time.Duration(g.Lifetimes.AuthorizationCode),
		AuthorizationTTL: time.Duration(g.Lifetimes.Authorization),
		Limits:           limits,
		ClientIP:         clientIP,
		Counter:          g.counter,
		Logger:           g.logger,
		AuditLogger:      ctx.Logger().Named("audit"),
	}, servers)
	// authserver.New completed the servers (resource URIs, issuers).
	for name, list := range attached {
		runtimes[name].Attach(list)
	}
	return nil
}

// Validate checks the configuration. Provision already ran the same rules
// before loading the upstream guests (which clears their raw JSON), so a
// provisioned handler has nothing left to check.
func (g *Handler) Validate() error {
	if g.edge != nil {
		return nil
	}
	return g.check()
}

// Cleanup releases the shared gateway state this instance took. Requests
// still in flight on this instance (long SSE streams) keep working: the
// state is destroyed only when the last config using it is gone.
func (g *Handler) Cleanup() error {
	var errs []error
	for _, key := range g.acquired {
		if _, err := gatewayPool.Delete(key); err != nil {
			errs = append(errs, err)
		}
	}
	g.acquired = nil
	return errors.Join(errs...)
}

// ServeHTTP serves the gateway's OAuth endpoints and its servers' paths, and
// passes every other request to the next handler.
func (g *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	s := g.edge.ServerAt(r.URL.Path)
	if s == nil && !g.edge.Owns(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	if err := g.ready(r.Context()); err != nil {
		g.logger.Error("gateway state unavailable", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	if s == nil {
		if g.edge.ServeOAuth(w, r) {
			return nil
		}
		return next.ServeHTTP(w, r)
	}
	if reason := uncleanPath(r.URL, s.Path); reason != "" {
		g.edge.Refused(s, "", "", authserver.RequestInvalid, reason)
		writeError(w, http.StatusBadRequest, "invalid_request", reason)
		return nil
	}
	access, ok := g.edge.Authorize(w, r, s)
	if !ok {
		return nil
	}
	p := g.proxies[s.Name]
	session, ok := g.openSession(w, r, s, access.Claims, p.gateway.Sessions())
	if !ok {
		return nil
	}
	// The client's token never reaches the upstream: the user's downstream
	// token takes its place (MCP forbids token passthrough). Authorize
	// accepted exactly one Authorization header, so its value is replaced
	// in place rather than with a new slice.
	r.Header["Authorization"][0] = "Bearer " + access.DownstreamToken
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", access.Claims.Subject)
		repl.Set("http.mcp_gateway.server", s.Name)
		repl.Set("http.mcp_gateway.client_id", access.Claims.ClientID)
		repl.Set("http.mcp_gateway.scopes", access.Claims.Scope)
	}
	stripPrefix(r, s.Path)
	out := w
	if access.Lists != nil {
		// List results are cut down to what the token may use; the filter
		// must read them, so the upstream is asked for them unencoded.
		r.Header.Del("Accept-Encoding")
		filter := access.Lists.Filter(w)
		defer func() {
			if err := filter.Finish(); err != nil {
				g.logger.Debug("writing a filtered list result", zap.String("server", s.Name), zap.Error(err))
			}
		}()
		out = filter
	}
	tracked := &writeTracker{
		ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: out},
		sessions:              p.gateway.Sessions(),
		server:                s.Issuer,
		claims:                access.Claims,
		session:               session,
	}
	err := p.upstream.ServeHTTP(tracked, r, next)
	if err == nil || tracked.wrote {
		return err
	}
	// The upstream failed before answering (down, refused, timed out). MCP
	// clients read JSON, not Caddy's empty error page; the user's grant is
	// untouched, so the client only has to retry.
	status := http.StatusBadGateway
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode >= 500 {
		status = he.StatusCode
	}
	g.counter.Count(s, authserver.RequestUpstreamError)
	g.logger.Error("MCP upstream failed", zap.String("server", s.Name), zap.Int("status", status), zap.Error(err))
	writeError(w, status, "upstream_unavailable", "MCP server "+s.Name+" did not answer; try again later")
	return nil
}

// writeError answers with the JSON error body (error, error_description)
// of the gateway's own answers on a server path.
func writeError(w http.ResponseWriter, status int, code, description string) {
	writeGatewayAnswer(w, status, map[string]string{"error": code, "error_description": description})
}

// writeGatewayAnswer writes body, the gateway's own answer on a server
// path, as JSON that no cache keeps.
func writeGatewayAnswer(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// openSession checks the session ID of a request against its token, and
// hands the upstream its own ID (see gateway.SessionIDs). An ID that was not
// issued to this user and client at this server never reaches the
// upstream: it is answered as MCP answers an unknown session, 404 with a
// JSON-RPC error, upon which clients start a new session. It reports
// whether the request may go on, with the session it is in; when not, it
// has answered it.
func (g *Handler) openSession(w http.ResponseWriter, r *http.Request, s *authserver.Server, claims *accesstoken.Claims, ids *gateway.SessionIDs) (requestSession, bool) {
	if name := sessionHeaderSpelling(r.Header); name != "" {
		// CGI, WSGI and PHP fold "_" (PHP also ".") and "-" together, so
		// an upstream behind one would read this header as the session
		// ID, which no one checked.
		g.edge.Refused(s, claims.ClientID, claims.Subject, authserver.RequestUnknownSession, "a session ID header spelt "+name)
		writeRPCError(w, http.StatusBadRequest, rpcInvalidRequest, "Bad Request: send the session ID as Mcp-Session-Id, not "+name)
		return requestSession{}, false
	}
	values := r.Header[sessionHeader]
	switch {
	case len(values) == 0 || len(values) == 1 && values[0] == "":
		return requestSession{}, true // no session yet: an initialize, or a server without sessions
	case len(values) > 1:
		// Upstreams differ in which one they read; none is checked.
		g.edge.Refused(s, claims.ClientID, claims.Subject, authserver.RequestUnknownSession, "more than one Mcp-Session-Id header")
		writeRPCError(w, http.StatusBadRequest, rpcInvalidRequest, "Bad Request: more than one Mcp-Session-Id header")
		return requestSession{}, false
	}
	upstream, ok := ids.Open(s.Issuer, claims.Subject, claims.ClientID, values[0])
	if !ok {
		g.edge.Refused(s, claims.ClientID, claims.Subject, authserver.RequestUnknownSession, "a session ID not issued to this user and client at this server")
		writeRPCError(w, http.StatusNotFound, rpcSessionNotFound, "Session not found")
		return requestSession{}, false
	}
	client := values[0]
	values[0] = upstream
	return requestSession{client: client, upstream: upstream}, true
}

// sessionHeader carries the MCP session ID (streamable HTTP transport) in
// requests and in the response that opens a session.
const sessionHeader = "Mcp-Session-Id"

// sessionHeaderLower is sessionHeader lower-cased, for comparisons.
const sessionHeaderLower = "mcp-session-id"

// sessionHeaderSpelling returns the name of a header of h that is not
// sessionHeader but names it with "_" or "." for "-", or in another case,
// or "" when there is none. Upstreams behind CGI, WSGI or PHP read
// Mcp_Session_Id (PHP also Mcp.Session.Id) as the session ID, so such a
// header would carry an unchecked one past the gateway. Caddy drops
// headers with "_" or "." unless the server's expected_underscore_headers
// or expected_dot_headers admit them; this holds whatever those say.
func sessionHeaderSpelling(h http.Header) string {
	for name := range h {
		if len(name) != len(sessionHeader) || name == sessionHeader {
			continue
		}
		same := true
		for i := 0; i < len(name) && same; i++ {
			c := name[i]
			switch {
			case c == '_' || c == '.':
				c = '-'
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			}
			same = c == sessionHeaderLower[i]
		}
		if same {
			return name
		}
	}
	return ""
}

// requestSession is the session a request is in: the ID its client holds
// and the upstream's.
type requestSession struct{ client, upstream string }

// JSON-RPC error codes of the gateway's answers about sessions: the
// official TypeScript SDK's for an unknown session, and JSON-RPC's for a
// malformed request.
const (
	rpcSessionNotFound = -32001
	rpcInvalidRequest  = -32600
)

// writeRPCError answers a request refused before any of its messages was
// read with a JSON-RPC error without an id, as MCP servers do.
func writeRPCError(w http.ResponseWriter, status, code int, message string) {
	writeGatewayAnswer(w, status, map[string]any{
		"jsonrpc": "2.0",
		"id":      nil,
		"error":   map[string]any{"code": code, "message": message},
	})
}

// writeTracker records whether a response was started, so an upstream
// error is answered only when nothing reached the client yet, and seals
// the session ID an upstream hands out (in the response to initialize) to
// the request's server, user and client before the client sees it. The
// wrapper keeps Flush, Hijack and Unwrap, which SSE streaming needs.
type writeTracker struct {
	*caddyhttp.ResponseWriterWrapper
	wrote bool

	sessions *gateway.SessionIDs
	server   string // the server's issuer
	claims   *accesstoken.Claims
	session  requestSession // the request's, if any
	sealed   string         // the last session ID sealed for this response
}

// WriteHeader seals the session ID before each header is written: an
// interim (1xx) response's too, whose headers reverse_proxy clears after.
func (t *writeTracker) WriteHeader(status int) {
	if !t.wrote {
		t.sealSession()
	}
	if status >= 200 {
		t.wrote = true
	}
	t.ResponseWriterWrapper.WriteHeader(status)
}

func (t *writeTracker) Write(b []byte) (int, error) {
	if !t.wrote {
		t.sealSession()
		t.wrote = true
	}
	return t.ResponseWriterWrapper.Write(b)
}

func (t *writeTracker) sealSession() {
	ids := t.Header()[sessionHeader]
	for i, id := range ids {
		switch {
		case id == "", id == t.sealed, id == t.session.client:
			// Sealed at an interim response already, in a header map
			// that was kept.
		case id == t.session.upstream:
			// An upstream that repeats the session's ID on every response:
			// the client's is already sealed.
			ids[i] = t.session.client
		default:
			ids[i] = t.sessions.Seal(t.server, t.claims.Subject, t.claims.ClientID, id)
			t.sealed = ids[i]
		}
	}
}

// uncleanPath says why the path of u below a server's prefix (which u.Path
// starts with, as matched) is refused, or returns "" when it is clean. A
// dot segment, percent-encoded or not, with parameters (";x") or not,
// would let the upstream or a proxy in front of it resolve a path outside
// the server's; an encoded slash or a backslash is a separator to some
// servers and not to others. Either way, what the upstream serves would
// not be the path that was authorized.
func uncleanPath(u *url.URL, prefix string) string {
	rest := u.Path[len(prefix):] // decoded: %2e is a dot here, %5c a backslash
	if strings.IndexByte(rest, '\\') >= 0 {
		return "the path below " + prefix + " holds a backslash, plain or encoded"
	}
	if hasEncodedSlash(u.RawPath) {
		return "the path below " + prefix + " holds an encoded slash (%2F)"
	}
	for rest != "" {
		rest = rest[1:] // the slash before each segment
		seg := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i:]
		} else {
			rest = ""
		}
		// Servlet containers (Tomcat, Jetty) and some proxies drop a
		// segment's parameters after ';' before resolving dot segments, so
		// "..;x" is ".." to them.
		if dots, _, _ := strings.Cut(seg, ";"); dots == "." || dots == ".." {
			return "the path below " + prefix + " holds a dot segment (" + seg + "); send the path resolved"
		}
	}
	return ""
}

// hasEncodedSlash reports whether an escaped path holds %2F, in either
// case. Decoding turns it into a separator, so only the raw path shows it.
func hasEncodedSlash(raw string) bool {
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] == '%' && raw[i+1] == '2' && raw[i+2]|0x20 == 'f' {
			return true
		}
	}
	return false
}

// stripPrefix removes the server's path prefix, so the upstream sees the
// paths it serves itself, always starting with a slash.
func stripPrefix(r *http.Request, prefix string) {
	u := *r.URL
	u.Path = strings.TrimPrefix(u.Path, prefix)
	if u.Path == "" {
		u.Path = "/"
	}
	// RawPath keeps the escapes the client chose. When the prefix was
	// spelt with escapes of its own it is not cut from RawPath, which is
	// then dropped: the upstream gets Path escaped afresh.
	raw, ok := strings.CutPrefix(u.RawPath, prefix)
	switch {
	case !ok || raw != "" && raw[0] != '/':
		u.RawPath = ""
	case raw == "":
		u.RawPath = "/"
	default:
		u.RawPath = raw
	}
	r.URL = &u
}

// ready loads each gateway's durable state (sealing key, signing keys) on
// first use; it is retried until it succeeds.
func (g *Handler) ready(ctx context.Context) error {
	for _, rt := range g.runtimes {
		if _, err := rt.Load(ctx); err != nil {
			return err
		}
	}
	return nil
}

// narrowing returns how server name of gateway gw, offering the scopes
// offered, gets its downstream token: nil (the full token) when
// per_server_tokens is off, else narrowed to what each client was granted
// (gateway.Runtime.Narrowing).
func narrowing(rt *gateway.Runtime, gw *Gateway, name string, offered scopes.Set) *grants.Narrowing {
	p := gw.PerServerTokens
	if p == nil {
		p = &PerServerTokens{}
	}
	if p.Mode == "off" {
		return nil
	}
	return rt.Narrowing(name, offered, p.Mode == "token_exchange", p.Fallback == "refuse")
}

// clientIP is the address Caddy resolved for the request, honouring the
// server's trusted_proxies; the rate limits count per this address.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
