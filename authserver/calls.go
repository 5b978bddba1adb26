package authserver

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/mcpcalls"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// checkCalls reads the JSON-RPC messages of a request to a server with call
// scopes and refuses it unless the token covers every tool, resource and
// prompt it uses. It returns the request's list requests whose results
// must be filtered, and whether the request may go on; when it may not, it
// has written the refusal.
//
// The body is always read, even when Mcp-Method and Mcp-Name headers say
// what it holds: the upstream acts on the body, and an upstream that does
// not compare the two would run what the body says.
func (e *Edge) checkCalls(w http.ResponseWriter, r *http.Request, s *Server, claims *accesstoken.Claims) (*mcpcalls.Lists, bool) {
	switch r.Method {
	case http.MethodGet:
		// A GET opens the server's event stream. It carries no request, but
		// a client resuming a stream may be replayed earlier replies from
		// the upstream's store, unfiltered: list results on it are filtered
		// by their shape.
		granted, _ := scopes.Parse(claims.Scope)
		return s.Calls.Replays(granted), true
	case http.MethodHead, http.MethodDelete:
		// No JSON-RPC in these: a DELETE ends a session.
		return nil, true
	}
	msgs, err := mcpcalls.Read(r, s.Calls.BodyLimit())
	if err != nil {
		var me *mcpcalls.Error
		if !errors.As(err, &me) {
			me = &mcpcalls.Error{Status: http.StatusBadRequest, Code: mcpcalls.CodeInvalidRequest, Message: err.Error()}
		}
		e.refuseRequest(s, claims.ClientID, claims.Subject, RequestInvalid, me.Message)
		writeRPCError(w, me)
		return nil, false
	}
	if me := s.Calls.Unjudged(msgs); me != nil {
		e.refuseRequest(s, claims.ClientID, claims.Subject, RequestForbidden, me.Message)
		writeRPCError(w, me)
		return nil, false
	}
	if !s.Calls.Concerns(msgs) {
		return nil, true // the common case: a call of a tool without scopes of its own
	}
	// The token was verified, so its scope parses; a scope the server no
	// longer offers is simply never needed.
	granted, _ := scopes.Parse(claims.Scope)
	missing, what := s.Calls.Missing(msgs, granted)
	if what == "" {
		return s.Calls.Lists(msgs, granted), true
	}
	// The scopes to ask for: what the token holds of the server's, plus
	// what is missing, so that authorizing again loses nothing (the MCP
	// authorization spec's step-up). Every needed scope is one the server
	// offers: the config is checked for that.
	want := granted.Intersect(s.Rule.Offered).Union(missing)
	e.refuseRequest(s, claims.ClientID, claims.Subject, RequestForbidden, "insufficient scope for "+what+": missing "+missing.String())
	e.insufficientScope(w, s, want, what+" needs scope "+missing.String()+"; authorize again with scope "+want.String())
	return nil, false
}

// rpcError is a JSON-RPC error response.
type rpcError struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcErrorObject  `json:"error"`
}

type rpcErrorObject struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// writeRPCError answers a request the gateway could not check with a
// JSON-RPC error, which an MCP client reports as the failed call.
func writeRPCError(w http.ResponseWriter, me *mcpcalls.Error) {
	id := me.ID
	if id == nil {
		id = json.RawMessage("null")
	}
	writeJSON(w, me.Status, &rpcError{JSONRPC: "2.0", ID: id, Error: rpcErrorObject{Code: me.Code, Message: me.Message}})
}
