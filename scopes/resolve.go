package scopes

// Rule resolves the scopes a client requests against what one MCP server
// offers. The zero Rule offers nothing and so refuses every request.
type Rule struct {
	// Offered is the server's subset of its gateway's scopes. The caller
	// defaults it to the gateway's full set when the server declares none.
	Offered Set

	// Strict makes a request for any scope outside Offered an error.
	// Otherwise such scopes are narrowed away, which RFC 6749 §3.3 allows
	// and which keeps clients working that request an authorization
	// server's whole scopes_supported rather than the server's own list.
	Strict bool

	// Ignore lists tokens dropped from every request before resolution,
	// typically "openid offline_access": they concern the gateway's own
	// session with the client, not the server's API. Ignore applies to
	// requests only; tokens in Offered are granted even if listed here.
	Ignore Set
}

// Resolve returns the scopes to grant for a client's requested scopes.
//
// Tokens in r.Ignore are dropped first. A request left empty gets the
// fallback: all of r.Offered, because the official MCP SDKs and many clients
// send no scope at all. Any other request is narrowed to the requested
// scopes that r.Offered holds (the token response then tells the client
// what it got); with r.Strict, a request for any scope outside r.Offered is
// refused instead. A result with no scopes is refused too.
//
// Every error is an [*Error].
func (r Rule) Resolve(requested Set) (Set, error) {
	asked := requested.Minus(r.Ignore)
	if asked.IsEmpty() {
		if r.Offered.IsEmpty() {
			return Set{}, r.refuse(requested, asked)
		}
		return r.Offered, nil
	}
	if r.Strict {
		if out := asked.Minus(r.Offered); !out.IsEmpty() {
			return Set{}, r.refuse(requested, out)
		}
		return asked, nil
	}
	granted := asked.Intersect(r.Offered)
	if granted.IsEmpty() {
		return Set{}, r.refuse(requested, asked)
	}
	return granted, nil
}

// refuse builds the error for a request whose rejected scopes are refused.
func (r Rule) refuse(requested, rejected Set) *Error {
	var desc string
	switch {
	case r.Offered.IsEmpty() && rejected.IsEmpty():
		// A configuration problem, not the client's; say so plainly.
		desc = "this server offers no scopes, so none can be granted; its gateway configuration must give it at least one scope"
	case r.Offered.IsEmpty():
		desc = "this server offers no scopes, so '" + rejected.String() +
			"' cannot be granted; its gateway configuration must give it at least one scope"
	case rejected.Len() == 1 && r.Strict:
		desc = "scope '" + rejected.String() + "' is not offered by this server, which offers '" + r.Offered.String() +
			"'; request only offered scopes, or omit scope to receive all of them"
	case r.Strict:
		desc = "scopes '" + rejected.String() + "' are not offered by this server, which offers '" + r.Offered.String() +
			"'; request only offered scopes, or omit scope to receive all of them"
	default:
		desc = "none of the requested scopes '" + rejected.String() + "' is offered by this server, which offers '" + r.Offered.String() +
			"'; request some of them, or omit scope to receive all of them"
	}
	return &Error{Requested: requested, Offered: r.Offered, Rejected: rejected, Description: desc}
}

// Error is a scope resolution error. Its OAuth error code is always
// "invalid_scope" (RFC 6749 §4.1.2.1 and §5.2).
//
// The Description uses only characters allowed in an OAuth
// error_description, so it can be sent to the client as is.
type Error struct {
	Requested Set // the scopes the client requested, as it sent them
	Offered   Set // the scopes the server offers
	Rejected  Set // the requested scopes that were refused

	// Description says what was asked, what is offered and what to do.
	Description string
}

// Error returns e.Description.
func (e *Error) Error() string { return e.Description }

// OAuthCode returns "invalid_scope", the OAuth error code for e.
func (e *Error) OAuthCode() string { return "invalid_scope" }
