// Package authserver is the gateway's public auth edge: toward MCP clients it
// is the OAuth 2.1 authorization server and the protected resource that the
// MCP authorization specification asks for.
//
// Every MCP server behind the gateway gets its own issuer,
// <public>/oauth/<server>, so a client that omits the resource parameter
// still gets a token for the right server; all servers of one gateway share
// that gateway's clients, grants, signing keys and downstream login. The
// package has no Caddy dependency: the caddymodule package builds an Edge
// from the Caddy config and hands it every request.
package authserver

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/mcpcalls"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// Paths of the auth edge, below the public URL.
const (
	// OAuthPrefix is where each server's authorization endpoints live:
	// /oauth/<server>/authorize, /token, /register, /revoke, /jwks, /consent.
	OAuthPrefix = "/oauth/"
	// CallbackPath is the gateway's one redirect URI at every downstream
	// authorization server.
	CallbackPath = "/oauth/callback"

	wellKnownResource   = "/.well-known/oauth-protected-resource"
	wellKnownAuthServer = "/.well-known/oauth-authorization-server"
	wellKnownOpenID     = "/.well-known/openid-configuration"
)

// Gateway is one auth boundary as the edge serves it: its downstream
// client, its durable state and its signing keys, and the clients and
// client hosts of its config. It is built whole once the gateway's state
// is loaded, and not changed after.
type Gateway struct {
	Name       string
	Scopes     scopes.Set // the full set its servers may request
	Downstream *downstream.Client
	Ledger     *grants.Ledger
	Broker     *grants.Broker
	Keys       *accesstoken.Keyset
	Verifier   *accesstoken.Verifier

	// Clients registered in the config, by client ID.
	Clients map[string]*grants.Client
	// Machines are the clients of Clients that may use the client
	// credentials grant, by client ID.
	Machines map[string]*MachineClient
	// EnterpriseIdPs are the identity providers whose ID-JAGs the
	// gateway's servers redeem (the enterprise-managed authorization
	// extension), by issuer.
	EnterpriseIdPs map[string]*EnterpriseIdP

	// MetadataDocuments fetches client ID metadata documents.
	MetadataDocuments *MetadataDocumentFetcher

	// TrustedClientHosts are the hosts (lower case, no port) whose client ID
	// metadata documents the operator vouches for: their consent page
	// lacks the warning that the application is not verified.
	TrustedClientHosts []string

	// ScopeDescriptions say in words what each scope allows, for the
	// consent and connected-apps pages; a scope without one is shown by
	// its name alone.
	ScopeDescriptions map[string]string
}

// clientHost returns the host of a metadata-document client ID, as the
// consent page shows it (lower case, with any port), and whether the
// operator trusts its host name.
func (g *Gateway) clientHost(clientID string) (host string, trusted bool) {
	u, err := url.Parse(clientID)
	if err != nil {
		return clientID, false
	}
	return strings.ToLower(u.Host), slices.Contains(g.TrustedClientHosts, strings.ToLower(u.Hostname()))
}

// Server is one MCP server at a path of the site.
type Server struct {
	Name     string
	Path     string      // e.g. "/support"
	Resource string      // canonical resource URI: public URL + Path
	Issuer   string      // public URL + /oauth/ + Name
	Rule     scopes.Rule // what it offers and how requests are resolved
	// Gateway returns the gateway the server is attached to. The edge
	// calls it only while serving a request, which its caller lets
	// through once the gateway is loaded: it may return nil before.
	Gateway func() *Gateway
	// Narrowing asks for its downstream token narrowed to the scopes each
	// request's access token was granted; nil hands it the grant's full
	// token.
	Narrowing *grants.Narrowing
	// Calls, when set, gives single tools, resources and prompts scopes of
	// their own: every request's JSON-RPC messages are read and checked
	// against it before the upstream sees them. Nil reads no body.
	Calls *mcpcalls.Policy

	challenge string // the WWW-Authenticate value of a plain 401
}

// Options are the edge-wide settings.
type Options struct {
	// PublicURL is the origin MCP clients reach the site at; every issuer,
	// resource and redirect URI is built from it, never from the Host header.
	PublicURL string

	AccessTokenTTL   time.Duration // default 1h
	RefreshTokenTTL  time.Duration // default 30 days
	RefreshGrace     time.Duration // default 30s
	CodeTTL          time.Duration // default 1m
	AuthorizationTTL time.Duration // default 10m

	// ProductName, when set, names the site in the titles of its pages
	// (consent, connected apps, errors).
	ProductName string

	// Limits are the rate limits; the zero value limits nothing.
	Limits Limits
	// ClientIP is the address a request came from, for the rate limits.
	// Default: the host of RemoteAddr. Caddy passes its client IP, which
	// honours the server's trusted_proxies.
	ClientIP func(*http.Request) string

	// Counter receives the outcomes, for metrics; nil counts nothing.
	Counter Counter

	Logger      *zap.Logger
	AuditLogger *zap.Logger // security decisions; default Logger.Named("audit")
	Now         func() time.Time
}

// Edge serves the OAuth endpoints of every server and authorizes MCP calls.
type Edge struct {
	opts     Options
	secure   bool // served over https: __Host- cookies and Secure flags
	servers  []*Server
	byName   map[string]*Server
	byPath   map[string]*Server
	depth    int // the most segments a server path has
	log      *zap.Logger
	auditLog *zap.Logger
	limits   limiters
}

// New builds the edge. Servers must already be validated (unique names,
// non-overlapping paths) and attached to their gateways.
func New(opts Options, servers []*Server) *Edge {
	opts.PublicURL = strings.TrimSuffix(opts.PublicURL, "/")
	setDefault(&opts.AccessTokenTTL, time.Hour)
	setDefault(&opts.RefreshTokenTTL, 30*24*time.Hour)
	setDefault(&opts.RefreshGrace, 30*time.Second)
	setDefault(&opts.CodeTTL, time.Minute)
	setDefault(&opts.AuthorizationTTL, 10*time.Minute)
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Edge{
		opts:     opts,
		secure:   strings.HasPrefix(opts.PublicURL, "https://"),
		servers:  servers,
		byName:   make(map[string]*Server, len(servers)),
		byPath:   make(map[string]*Server, len(servers)),
		log:      opts.Logger,
		auditLog: opts.AuditLogger,
		limits:   newLimiters(opts.Limits, opts.Now),
	}
	if e.auditLog == nil {
		e.auditLog = opts.Logger.Named("audit")
	}
	for _, s := range servers {
		s.Resource = opts.PublicURL + s.Path
		s.Issuer = opts.PublicURL + OAuthPrefix + s.Name
		s.challenge = `Bearer resource_metadata="` + e.resourceMetadataURL(s) + `", scope="` + s.Rule.Offered.String() + `"`
		e.byName[s.Name] = s
		e.byPath[s.Path] = s
		e.depth = max(e.depth, strings.Count(s.Path, "/"))
	}
	return e
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Servers returns the servers of the edge.
func (e *Edge) Servers() []*Server { return e.servers }

func (e *Edge) resourceMetadataURL(s *Server) string {
	return e.opts.PublicURL + wellKnownResource + s.Path
}

// ServerAt returns the server whose path prefix covers path, if any.
//
// It runs on every request of the site. Server paths are whole segments and
// never overlap, so it looks up each leading run of segments of path, at
// most as many as the deepest server path has: the cost depends on that
// depth, not on the number of servers.
func (e *Edge) ServerAt(path string) *Server {
	end := 0
	for range e.depth {
		if end >= len(path) || path[end] != '/' {
			return nil
		}
		next := strings.IndexByte(path[end+1:], '/')
		if next < 0 {
			end = len(path)
		} else {
			end += 1 + next
		}
		if s := e.byPath[path[:end]]; s != nil {
			return s
		}
	}
	return nil
}

// Owns reports whether path belongs to the edge's OAuth and metadata
// surface (whether or not it names a known server).
func (e *Edge) Owns(path string) bool {
	return strings.HasPrefix(path, OAuthPrefix) || strings.HasPrefix(path, "/.well-known/oauth-") ||
		strings.HasPrefix(path, wellKnownOpenID)
}

// ServeOAuth serves the request if it is for one of the edge's OAuth or
// metadata endpoints and reports whether it did.
func (e *Edge) ServeOAuth(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	switch {
	case p == CallbackPath:
		e.serveCallback(w, r)
	case p == AccountPath:
		e.serveAccount(w, r)
	case strings.HasPrefix(p, wellKnownResource):
		return e.serveResourceMetadata(w, r, strings.TrimPrefix(p, wellKnownResource)) || passMetadata(w, r)
	case strings.HasPrefix(p, wellKnownAuthServer):
		return e.serveAuthServerMetadata(w, r, strings.TrimPrefix(p, wellKnownAuthServer)) || passMetadata(w, r)
	case strings.HasPrefix(p, wellKnownOpenID):
		return e.serveAuthServerMetadata(w, r, strings.TrimPrefix(p, wellKnownOpenID)) || passMetadata(w, r)
	case strings.HasPrefix(p, OAuthPrefix):
		name, endpoint, _ := strings.Cut(strings.TrimPrefix(p, OAuthPrefix), "/")
		s := e.byName[name]
		if s == nil {
			return false
		}
		switch endpoint {
		case "authorize":
			e.serveAuthorize(w, r, s)
		case "consent":
			e.serveConsent(w, r, s)
		case "token":
			e.serveToken(w, r, s)
		case "register":
			e.serveRegister(w, r, s)
		case "revoke":
			e.serveRevoke(w, r, s)
		case "jwks":
			e.serveJWKS(w, r, s)
		case ".well-known/openid-configuration", ".well-known/oauth-authorization-server":
			// Path-appended discovery, which some clients still try.
			return e.serveAuthServerMetadata(w, r, OAuthPrefix+name)
		default:
			return false
		}
	default:
		return false
	}
	return true
}

// serverForIssuerPath maps "/oauth/<name>" to its server.
func (e *Edge) serverForIssuerPath(p string) *Server {
	if !strings.HasPrefix(p, OAuthPrefix) {
		return nil
	}
	return e.byName[strings.TrimPrefix(p, OAuthPrefix)]
}

// url joins the public URL with a path and query.
func (e *Edge) url(path string, q url.Values) string {
	if len(q) == 0 {
		return e.opts.PublicURL + path
	}
	return e.opts.PublicURL + path + "?" + q.Encode()
}
