package authserver

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/mcpcalls"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// Access is what an authorized MCP request carries on to the upstream.
type Access struct {
	Server *Server
	Claims *accesstoken.Claims
	// DownstreamToken is the user's brokered downstream access token that
	// replaces the client's token.
	DownstreamToken string
	// Lists, when set, are list requests whose results must be filtered
	// for the token's scopes (see Server.Calls) with Lists.Filter.
	Lists *mcpcalls.Lists
}

// Authorize checks the bearer token of a request to server s. On success it
// returns the access to forward and true; otherwise it has written the
// refusal (401 with the challenge, 403 insufficient_scope, 400 or 413 for
// a body the server's call scopes cannot be checked against, or 503 when
// the downstream server cannot refresh the user's token right now) and
// returns false.
//
// It runs on every proxied MCP request. A warm request costs a hash and two
// map lookups, with no storage read: the verified token and the decrypted
// downstream token are both cached in memory. The Access is returned by
// value so that it costs no allocation.
func (e *Edge) Authorize(w http.ResponseWriter, r *http.Request, s *Server) (Access, bool) {
	if allowCORS(w, r, "GET, POST, DELETE, OPTIONS") {
		return Access{}, false
	}
	raw, ok := bearerToken(r)
	if !ok {
		// Only counted, not audited: every client's first request is one.
		e.count(s, RequestUnauthorized)
		e.challenge(w, s, "", "")
		return Access{}, false
	}
	g := s.Gateway()
	claims, err := g.Verifier.Verify(raw)
	if err != nil {
		e.refuseRequest(s, "", "", RequestUnauthorized, err.Error())
		e.challenge(w, s, "invalid_token", tokenErrorDescription(err))
		return Access{}, false
	}
	if claims.Audience != s.Resource || claims.Issuer != s.Issuer {
		e.refuseRequest(s, claims.ClientID, claims.Subject, RequestUnauthorized, "token issued for another resource")
		e.challenge(w, s, "invalid_token", "the access token was issued for another resource; authorize for "+s.Resource)
		return Access{}, false
	}
	// The server may have been narrowed by a reload since the token was
	// issued: at least one of its scopes must still be offered.
	if !hasOfferedScope(claims.Scope, s) {
		e.refuseRequest(s, claims.ClientID, claims.Subject, RequestForbidden, "insufficient scope")
		e.insufficientScope(w, s, s.Rule.Offered, "none of the token's scopes is offered by server "+s.Name+"; authorize again")
		return Access{}, false
	}
	var lists *mcpcalls.Lists
	if s.Calls != nil {
		if lists, ok = e.checkCalls(w, r, s, claims); !ok {
			return Access{}, false
		}
	}
	var tok *oauth2.Token
	if claims.GrantType == "" || claims.GrantType == GrantJWTBearer {
		// A user's token: the user's grant, however the token was
		// obtained.
		tok, err = g.Broker.TokenFor(r.Context(), claims.Subject, claims.Scope, s.Narrowing)
	} else {
		tok, err = e.machineToken(r.Context(), s, claims)
	}
	switch {
	case err == nil:
	case errors.Is(err, errNotMachine):
		e.refuseRequest(s, claims.ClientID, claims.Subject, RequestUnauthorized, err.Error())
		e.challenge(w, s, "invalid_token", "the client may no longer use the client credentials grant at this gateway")
		return Access{}, false
	case errors.Is(err, grants.ErrGrantDead), errors.Is(err, grants.ErrNotFound):
		e.refuseRequest(s, claims.ClientID, claims.Subject, RequestUnauthorized, "downstream grant ended")
		e.challenge(w, s, "invalid_token", "the user's sign-in at the identity provider has ended; authorize again")
		return Access{}, false
	case errors.Is(err, grants.ErrCannotNarrow):
		e.refuseUnnarrowed(w, s, claims, err)
		return Access{}, false
	default:
		e.refuseRequest(s, claims.ClientID, claims.Subject, RequestUnavailable, "downstream refresh failed")
		e.log.Warn("downstream token unavailable", zap.String("gateway", g.Name), zap.String("server", s.Name), zap.Error(err))
		writeOAuthError(w, errServer("the identity provider cannot refresh the user's access right now; retry shortly"))
		return Access{}, false
	}
	e.count(s, RequestAllowed)
	return Access{Server: s, Claims: claims, DownstreamToken: tok.AccessToken, Lists: lists}, true
}

// refuseUnnarrowed answers a request of a server whose downstream tokens
// the provider will not narrow, under fallback refuse: 503 until the
// gateway asks the provider again, which is when a retry can succeed. The
// Narrowing's Warn has logged why, once.
func (e *Edge) refuseUnnarrowed(w http.ResponseWriter, s *Server, claims *accesstoken.Claims, err error) {
	e.refuseRequest(s, claims.ClientID, claims.Subject, RequestUnavailable, "downstream cannot narrow")
	retryAt := e.opts.Now().Add(5 * time.Second) // only a CannotNarrowError says when
	if cannot, ok := errors.AsType[*grants.CannotNarrowError](err); ok {
		retryAt = cannot.Until
	}
	writeOAuthError(w, &oauthError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", RetryAfter: retrySeconds(retryAt.Sub(e.opts.Now())),
		Description: "the identity provider does not issue tokens limited to server " + s.Name + "'s scopes granted to this client, and this server refuses the user's full token; the gateway asks the provider again at " + retryAt.UTC().Format(time.RFC3339)})
}

// insufficientScope answers 403 insufficient_scope with the scopes to
// authorize for (RFC 6750 §3.1, the MCP step-up).
func (e *Edge) insufficientScope(w http.ResponseWriter, s *Server, want scopes.Set, desc string) {
	desc = describe(desc)
	w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+want.String()+`", resource_metadata="`+e.resourceMetadataURL(s)+`", error_description="`+desc+`"`)
	writeJSON(w, http.StatusForbidden, &oauthError{Code: "insufficient_scope", Description: desc})
}

// Refused records a request to server s that the proxy refused itself
// (a path below the server that is not clean, a session ID not issued to
// the token's user and client): counted as o and audited as the edge's
// own refusals are. clientID and user are empty before the token is read.
func (e *Edge) Refused(s *Server, clientID, user string, o Outcome, reason string) {
	e.refuseRequest(s, clientID, user, o, reason)
}

// refuseRequest counts a refused MCP request and records why on the audit
// log.
func (e *Edge) refuseRequest(s *Server, clientID, user string, o Outcome, reason string) {
	e.count(s, o)
	e.audit("request refused", s, clientID, user, "", zap.String("reason", reason))
}

// challenge answers 401 with the RFC 9728 / RFC 6750 challenge that tells
// MCP clients where to start authorization.
func (e *Edge) challenge(w http.ResponseWriter, s *Server, code, desc string) {
	h := w.Header()
	if code == "" {
		h.Set("WWW-Authenticate", s.challenge)
		writeJSON(w, http.StatusUnauthorized, &oauthError{Code: "invalid_token", Description: "this MCP server requires authorization; see the WWW-Authenticate header"})
		return
	}
	desc = describe(desc)
	h.Set("WWW-Authenticate", `Bearer error="`+code+`", error_description="`+desc+`", `+strings.TrimPrefix(s.challenge, "Bearer "))
	writeJSON(w, http.StatusUnauthorized, &oauthError{Code: code, Description: desc})
}

func bearerToken(r *http.Request) (string, bool) {
	// The key is already canonical: indexing skips canonicalizing it on
	// every request, which Values would do.
	h := r.Header["Authorization"]
	if len(h) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func hasOfferedScope(scope string, s *Server) bool {
	for scope != "" {
		var tok string
		tok, scope, _ = strings.Cut(scope, " ")
		if s.Rule.Offered.Contains(tok) {
			return true
		}
	}
	return false
}

func tokenErrorDescription(err error) string {
	var ve *accesstoken.VerifyError
	if errors.As(err, &ve) {
		return ve.Error()
	}
	return "the access token is invalid"
}
