package authserver

// Outcome is something the edge counts: a step of the authorization flow,
// a token request's result, a proxied request's verdict. Operators see them
// as metrics.
type Outcome uint8

// The outcomes, per server.
const (
	AuthorizationStarted   Outcome = iota // a valid request reached consent (or a remembered consent)
	AuthorizationCompleted                // the downstream login ended and the client got a code
	AuthorizationDenied                   // the user refused consent
	AuthorizationRefused                  // the request was invalid, or the login failed

	TokenIssuedCode     // a code was exchanged for tokens
	TokenIssuedRefresh  // a refresh token was exchanged
	TokenRefusedCode    // a code exchange was refused
	TokenRefusedRefresh // a refresh was refused (including reuse)
	// TokenIssuedClientCredentials is a machine client's token issued by
	// the client credentials grant.
	TokenIssuedClientCredentials
	TokenRefusedClientCredentials // a client credentials request was refused
	// TokenIssuedJWTBearer is a token issued for an enterprise identity
	// provider's ID-JAG.
	TokenIssuedJWTBearer
	TokenRefusedJWTBearer // an ID-JAG was refused
	TokenRefusedOther     // a token request without a usable grant type or client

	RequestAllowed       // a proxied MCP request went on to the upstream
	RequestUnauthorized  // 401: no token, or an invalid one, or an ended grant
	RequestForbidden     // 403: the token's scopes do not fit the server
	RequestUnavailable   // 503: the downstream server could not refresh
	RequestUpstreamError // the upstream failed before answering (502)
	RequestInvalid       // 400 or 413: a body the server's call scopes could not be checked against, or a path below the server that is not clean
	// RequestUnknownSession is an allowed request refused on the proxy
	// path for its session ID: not issued to its user and client at this
	// server (404), or more than one (400).
	RequestUnknownSession

	RateLimited // a request refused by a rate limit

	NumOutcomes // the number of outcomes; not an outcome
)

// Counter receives the edge's outcomes. Count runs on every proxied MCP
// request, so it must be cheap, and it must be safe for concurrent use.
type Counter interface {
	Count(s *Server, o Outcome)
}

// count reports an outcome to the configured Counter, if any.
func (e *Edge) count(s *Server, o Outcome) {
	if e.opts.Counter != nil {
		e.opts.Counter.Count(s, o)
	}
}
