package authserver

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// oauthError is an OAuth 2.0 error response (RFC 6749 §5.2, RFC 7591 §3.2.2,
// RFC 6750 §3). Descriptions say what went wrong and what to do, and never
// carry a token, code or secret.
type oauthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`

	// RetryAfter is the Retry-After of a 429 or 503, in seconds; default 5.
	RetryAfter int `json:"-"`
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func errInvalidRequest(desc string) *oauthError {
	return &oauthError{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc}
}

func errInvalidGrant(desc string) *oauthError {
	return &oauthError{Status: http.StatusBadRequest, Code: "invalid_grant", Description: desc}
}

func errInvalidClient(desc string) *oauthError {
	return &oauthError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: desc}
}

func errServer(desc string) *oauthError {
	return &oauthError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: desc}
}

// writeJSON writes v with the headers every OAuth JSON response carries.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	e.Description = describe(e.Description)
	if e.Status == http.StatusUnauthorized && e.Code == "invalid_client" {
		w.Header().Set("WWW-Authenticate", `Basic realm="mcp_gateway"`)
	}
	if e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests {
		retry := 5
		if e.RetryAfter > 0 {
			retry = e.RetryAfter
		}
		w.Header().Set("Retry-After", strconv.Itoa(retry))
	}
	writeJSON(w, e.Status, e)
}

// allowCORS lets browser-based MCP clients (MCP Inspector, web apps) call
// the metadata, registration, token and revocation endpoints and read the
// 401 challenge. None of these endpoints rely on cookies, so any origin may
// call them. It answers preflight requests and reports whether it did.
//
// Every proxied MCP request passes here, so the two headers share one
// allocation; each value is capped at its own element, so that appending to
// one header cannot overwrite the other.
func allowCORS(w http.ResponseWriter, r *http.Request, methods string) bool {
	h := w.Header()
	v := []string{"*", "WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version"}
	h["Access-Control-Allow-Origin"] = v[0:1:1]
	h["Access-Control-Expose-Headers"] = v[1:2:2]
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", methods)
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Mcp-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// requireMethod answers 405 unless r uses one of the methods.
func requireMethod(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	allow := strings.Join(methods, ", ")
	w.Header().Set("Allow", allow)
	writeOAuthError(w, &oauthError{Status: http.StatusMethodNotAllowed, Code: "invalid_request", Description: "this endpoint accepts " + allow})
	return false
}

// maxDescription bounds an error_description: enough to say what to do.
const maxDescription = 400

// describe makes text a legal error_description (RFC 6749 §5.2: printable
// ASCII without '"' and '\\'), so that it can also sit inside a quoted
// WWW-Authenticate parameter. Descriptions may quote what a client sent;
// this keeps such echoes from breaking out of the header or the JSON.
func describe(text string) string {
	b := make([]byte, 0, min(len(text), maxDescription))
	for i := 0; i < len(text) && len(b) < maxDescription; i++ {
		switch c := text[i]; {
		case c == '"':
			b = append(b, '\'')
		case c == '\\':
			b = append(b, '/')
		case c < 0x20 || c > 0x7e:
			b = append(b, '?')
		default:
			b = append(b, c)
		}
	}
	return string(b)
}
