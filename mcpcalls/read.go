// Package mcpcalls reads the JSON-RPC messages of MCP requests on their way
// to an upstream, so that a gateway can decide per tool, resource and prompt
// whether a token may use it: it learns the method and the name of each
// message (checking the Mcp-Method and Mcp-Name headers of the streamable
// HTTP transport against the body), says which scopes a message needs under
// a [Policy], and filters the results of tools/list, resources/list,
// resources/templates/list and prompts/list, as JSON or as a Server-Sent
// Events stream, so that a client sees only what its token may use.
//
// The package has no Caddy dependency and keeps no global state.
package mcpcalls

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxBodyBytes is the largest request body Read accepts by default: MCP
// requests are small, and the body is held in memory until the upstream has
// read it.
const MaxBodyBytes = 1 << 20

// initialBuffer bounds the buffer Read sizes from a declared length before
// any byte arrives.
const initialBuffer = 64 << 10

// The MCP methods that name a tool, a resource or a prompt, and the list
// methods whose results Filter rewrites.
const (
	MethodCallTool              = "tools/call"
	MethodGetPrompt             = "prompts/get"
	MethodReadResource          = "resources/read"
	MethodSubscribeResource     = "resources/subscribe"
	MethodUnsubscribeResource   = "resources/unsubscribe"
	MethodListen                = "subscriptions/listen"
	MethodComplete              = "completion/complete"
	MethodListTools             = "tools/list"
	MethodListResources         = "resources/list"
	MethodListResourceTemplates = "resources/templates/list"
	MethodListPrompts           = "prompts/list"
)

// The kinds of reference a completion/complete request completes the
// arguments of (Message.Ref).
const (
	RefPrompt   = "ref/prompt"
	RefResource = "ref/resource"
)

// JSON-RPC error codes of the refusals (JSON-RPC 2.0 §5.1; -32020 is the
// header mismatch code of the MCP streamable HTTP transport).
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeHeaderMismatch = -32020
)

// Message is what the gateway learns of one JSON-RPC message of a request.
type Message struct {
	// Method is the method of a request or notification, "" for a response
	// (a client answering a server's request).
	Method string
	// Name is the tool or prompt name (params.name) or the resource URI
	// (params.uri) of the methods that name one: tools/call, prompts/get,
	// resources/read and resources/subscribe; for completion/complete, the
	// prompt name or resource URI template of params.ref. It is "" for
	// other methods.
	Name string
	// Ref is the type of a completion/complete request's params.ref:
	// RefPrompt or RefResource.
	Ref string
	// Subscriptions are the resource URIs a subscriptions/listen request
	// subscribes to (params.notifications.resourceSubscriptions), as
	// resources/subscribe does one at a time.
	Subscriptions []string
	// Unjudged is set on a message whose method is none of MCP's that name
	// a tool, resource or prompt while its params look as if they named
	// one: they have a member name, uri, uriTemplate or ref (in any case),
	// or are not an object. No rule can say what such a message needs
	// (see Policy.Unjudged).
	Unjudged bool
	// ID is the raw JSON id of a request, nil for a notification. In a
	// request it is a string or an integer (see Parse).
	ID json.RawMessage
}

// Error is a request that is not passed on because the gateway cannot tell
// what it calls. It is answered with Status and a JSON-RPC error (Code,
// Message) for the request ID.
type Error struct {
	Status  int             // 400, or 413 for a body over the limit
	Code    int             // JSON-RPC error code
	Message string          // what is wrong and what to do
	ID      json.RawMessage // the id of the request it concerns, if known
}

func (e *Error) Error() string { return e.Message }

func invalid(code int, id json.RawMessage, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Message: msg, ID: id}
}

// Read reads the JSON-RPC messages of r's body, of at most limit bytes,
// checks them against the Mcp-Method and Mcp-Name headers, and puts the body
// back, byte for byte, for the upstream to read.
//
// Every error is an [*Error]. A body over limit is refused without reading
// more than limit+1 bytes of it. Anything the gateway could read otherwise
// than the upstream does is refused too: invalid JSON, a member named twice,
// a member whose name differs from method, params, id, name or uri only in
// case (which case-insensitive decoders would take for it), a tool or
// prompt name or resource URI that is not a string, a completion/complete
// whose ref is not a prompt or a resource (the only kinds MCP defines) with
// a string name or uri, and the request ids that Parse refuses.
func Read(r *http.Request, limit int64) ([]Message, error) {
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	var buf []byte
	if r.Body != nil && r.Body != http.NoBody {
		var err error
		if buf, err = readAtMost(r.Body, r.ContentLength, limit); err != nil {
			return nil, err
		}
	}
	b := new(body)
	b.Reset(buf)
	r.Body = b
	r.ContentLength = int64(len(buf))
	r.GetBody = nil
	msgs, err := Parse(buf)
	if err != nil {
		return nil, err
	}
	if err := checkHeaders(r.Header, msgs); err != nil {
		return nil, err
	}
	return msgs, nil
}

// body is the read body handed on to the upstream.
type body struct{ bytes.Reader }

func (*body) Close() error { return nil }

func tooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeInvalidRequest,
		Message: "the request body is larger than " + strconv.FormatInt(limit, 10) + " bytes, more than an MCP request needs; send smaller requests"}
}

// readAtMost reads all of r, failing once it has more than limit bytes.
// A known length sizes the buffer at once, up to initialBuffer, so that a
// usual body is read in one piece; a larger one grows the buffer as its
// bytes arrive, so that a declared length alone reserves little memory.
func readAtMost(r io.Reader, length, limit int64) ([]byte, error) {
	size := int64(512)
	if length >= 0 {
		size = length + 1 // room to see the end without growing
	}
	buf := make([]byte, 0, min(size, limit+1, initialBuffer))
	lr := &io.LimitedReader{R: r, N: limit + 1}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, tooLarge(min(limit, mbe.Limit))
			}
			return nil, invalid(CodeParseError, nil, "the request body could not be read: "+err.Error())
		}
	}
	if int64(len(buf)) > limit {
		return nil, tooLarge(limit)
	}
	return buf, nil
}

// Parse reads the JSON-RPC messages of a request body: one message, or a
// batch (a non-empty array of them). Its errors are those of [Read].
//
// A request's id must be a string or an integer from -2^63 to 2^63-1 in
// plain digits, as MCP has it, and no two requests of a batch may share
// one: an upstream that reads numbers as floats answers 1.0 or 1e0 as 1,
// and one that pairs two requests with one id answers either, so the
// gateway could not tell which reply is the result of which request (and
// whether it must be filtered). A string and an integer count as the same
// id when their text is, for servers that convert one to the other.
func Parse(data []byte) ([]Message, error) {
	// JSON is UTF-8 (RFC 8259 §8.1); decoders differ on what else means,
	// some replacing bad bytes, some keeping them.
	if !utf8.Valid(data) || !json.Valid(data) {
		return nil, invalid(CodeParseError, nil, "the request body is not valid UTF-8 JSON; send one JSON-RPC message")
	}
	s := scanner{b: data}
	s.space()
	if s.peek() != '[' {
		m, err := s.message()
		if err != nil {
			return nil, err
		}
		return []Message{m}, nil
	}
	s.i++
	var msgs []Message
	for {
		s.space()
		if s.peek() == ']' {
			break
		}
		m, err := s.message()
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
		s.space()
		if s.peek() == ',' {
			s.i++
		}
	}
	if len(msgs) == 0 {
		return nil, invalid(CodeInvalidRequest, nil, "the request is an empty batch; send at least one JSON-RPC message")
	}
	if err := uniqueIDs(msgs); err != nil {
		return nil, err
	}
	return msgs, nil
}

// uniqueIDs refuses a batch in which two requests have the same id.
func uniqueIDs(msgs []Message) error {
	seen := make(map[string]struct{}, len(msgs))
	for _, m := range msgs {
		if m.Method == "" || m.ID == nil {
			continue // responses answer the server's requests: their ids are the server's
		}
		id := canonicalID(m.ID)
		if _, dup := seen[id]; dup {
			return invalid(CodeInvalidRequest, nil, "two requests of the batch have the id "+quoteShort(id)+"; give each request of a batch an id of its own")
		}
		seen[id] = struct{}{}
	}
	return nil
}

// canonicalID is the id of a request, which Parse has checked, in a form
// that compares equal however its JSON was written and whether it is a
// string or an integer: the text of a string, the digits of an integer.
func canonicalID(raw json.RawMessage) string {
	if len(raw) > 0 && raw[0] == '"' {
		return string(text(raw))
	}
	return string(raw)
}

// validID reports whether the raw id of a request is a string or an integer
// in the int64 range written as digits alone: no fraction, exponent or
// minus zero, which decoders read as numbers other than the text says.
func validID(raw []byte) bool {
	if len(raw) > 0 && raw[0] == '"' {
		return true
	}
	digits, negative := bytes.CutPrefix(raw, []byte("-"))
	if len(digits) == 0 || len(digits) > 19 {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	switch {
	case digits[0] == '0':
		return len(digits) == 1 && !negative // json.Valid refused other leading zeros
	case len(digits) < 19:
		return true
	case negative:
		return string(digits) <= "9223372036854775808"
	}
	return string(digits) <= "9223372036854775807"
}

// quoteShort quotes a value the client sent for an error message, cut to
// a length that keeps errors and logs small.
func quoteShort(s string) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}

// scanner walks JSON that json.Valid accepted, so it checks no syntax.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str skips the string at s.i and returns it with its quotes.
func (s *scanner) str() []byte {
	start := s.i
	s.i++
	for s.b[s.i] != '"' {
		if s.b[s.i] == '\\' {
			s.i++
		}
		s.i++
	}
	s.i++
	return s.b[start:s.i]
}

// value skips the value at s.i and returns it.
func (s *scanner) value() []byte {
	start := s.i
	switch s.peek() {
	case '"':
		s.str()
	case '{', '[':
		depth := 0
		for {
			c := s.b[s.i]
			if c == '"' {
				s.str()
				continue
			}
			s.i++
			switch c {
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return s.b[start:s.i]
				}
			}
		}
	default: // number, true, false, null
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.b[start:s.i]
			}
			s.i++
		}
	}
	return s.b[start:s.i]
}

// elements calls visit with each value of the array at s.i, and leaves s.i
// after it. visit may stop the walk with an error.
func (s *scanner) elements(visit func(value []byte) error) error {
	s.i++ // [
	for {
		s.space()
		if s.peek() == ']' {
			s.i++
			return nil
		}
		if err := visit(s.value()); err != nil {
			return err
		}
		s.space()
		if s.peek() == ',' {
			s.i++
		}
	}
}

// members calls visit with each key and value of the object at s.i, and
// leaves s.i after it. visit may stop the walk with an error.
func (s *scanner) members(visit func(key, value []byte) error) error {
	s.i++ // {
	for {
		s.space()
		if s.peek() == '}' {
			s.i++
			return nil
		}
		key := text(s.str())
		s.space()
		s.i++ // :
		s.space()
		if err := visit(key, s.value()); err != nil {
			return err
		}
		s.space()
		if s.peek() == ',' {
			s.i++
		}
	}
}

// text returns the text of a JSON string given with its quotes, which
// json.Valid has accepted. Without escapes it is a slice of q.
func text(q []byte) []byte {
	if bytes.IndexByte(q, '\\') < 0 {
		return q[1 : len(q)-1]
	}
	var out string
	_ = json.Unmarshal(q, &out)
	return []byte(out)
}

// field records a member that the gateway reads, refusing it twice or in
// another case: decoders differ on which of two members wins, and some
// match member names without regard to case (encoding/json does, and folds
// U+017F to s and U+212A to k as well, which bytes.EqualFold does too).
func field(key []byte, want string, seen *bool, where string) (bool, error) {
	if string(key) == want {
		if *seen {
			return false, invalid(CodeInvalidRequest, nil, where+` has two "`+want+`" members; send it once`)
		}
		*seen = true
		return true, nil
	}
	if bytes.EqualFold(key, []byte(want)) {
		return false, invalid(CodeInvalidRequest, nil, where+" has a member "+strconv.Quote(string(key))+`, which some decoders read as "`+want+`"; name it "`+want+`" exactly`)
	}
	return false, nil
}

// message reads one JSON-RPC message at s.i.
func (s *scanner) message() (Message, error) {
	if s.peek() != '{' {
		return Message{}, invalid(CodeInvalidRequest, nil, "a JSON-RPC message must be a JSON object")
	}
	var m Message
	var method, params []byte
	var seenMethod, seenParams, seenID bool
	err := s.members(func(key, value []byte) error {
		if ok, err := field(key, "method", &seenMethod, "the message"); ok || err != nil {
			method = value
			return err
		}
		if ok, err := field(key, "params", &seenParams, "the message"); ok || err != nil {
			params = value
			return err
		}
		if ok, err := field(key, "id", &seenID, "the message"); ok || err != nil {
			m.ID = value
			return err
		}
		return nil
	})
	if err != nil {
		return Message{}, err
	}
	if method == nil {
		if string(m.ID) == "null" {
			m.ID = nil
		}
		return m, nil // a response
	}
	if m.ID != nil && !validID(m.ID) {
		return Message{}, invalid(CodeInvalidRequest, nil, "the id of a request must be a string or an integer from -2^63 to 2^63-1 written in digits alone, not "+
			"a fraction, an exponent, -0 or null (a notification has no id); the gateway must be able to tell its reply by the id")
	}
	if method[0] != '"' || len(method) == 2 {
		return Message{}, invalid(CodeInvalidRequest, m.ID, "the method must be a non-empty string")
	}
	m.Method = intern(text(method))
	switch m.Method {
	case MethodComplete:
		err := m.readRef(params)
		return m, err
	case MethodListen:
		err := m.readSubscriptions(params)
		return m, err
	}
	name := nameMember(m.Method)
	if name == "" {
		if m.Method != MethodUnsubscribeResource {
			m.Unjudged = namesSomething(params)
		}
		return m, nil
	}
	value, err := member(params, name, m.ID, "the params of "+m.Method)
	if err != nil {
		return Message{}, err
	}
	if value == nil || value[0] != '"' {
		return Message{}, invalid(CodeInvalidParams, m.ID, "the "+name+" in the params of "+m.Method+" must be a string")
	}
	m.Name = string(text(value))
	return m, nil
}

// readRef reads what a completion/complete request completes the
// arguments of: params.ref, {"type": "ref/prompt", "name": ...} or
// {"type": "ref/resource", "uri": ...}. A reference of another type is
// refused: MCP defines no other, and an upstream that looked a prompt up
// by its name without checking the type would let one pass unjudged.
func (m *Message) readRef(params []byte) error {
	ref, err := member(params, "ref", m.ID, "the params of "+m.Method)
	if err != nil {
		return err
	}
	if ref == nil || ref[0] != '{' {
		return invalid(CodeInvalidParams, m.ID, m.Method+" needs params with a ref object")
	}
	typ, err := member(ref, "type", m.ID, "the ref of "+m.Method)
	if err != nil {
		return err
	}
	if typ == nil || typ[0] != '"' {
		return invalid(CodeInvalidParams, m.ID, "the type in the ref of "+m.Method+" must be a string")
	}
	var name string
	switch m.Ref = string(text(typ)); m.Ref {
	case RefPrompt:
		name = "name"
	case RefResource:
		name = "uri"
	default:
		return invalid(CodeInvalidParams, m.ID, "the ref of "+m.Method+" must be of type "+RefPrompt+" or "+RefResource+", not "+strconv.Quote(m.Ref))
	}
	value, err := member(ref, name, m.ID, "the ref of "+m.Method)
	if err != nil {
		return err
	}
	if value == nil || value[0] != '"' {
		return invalid(CodeInvalidParams, m.ID, "the "+name+" in a "+m.Ref+" of "+m.Method+" must be a string")
	}
	m.Name = string(text(value))
	return nil
}

// readSubscriptions reads the resource URIs a subscriptions/listen request
// subscribes to: params.notifications.resourceSubscriptions, an array of
// strings. Absent or null, there are none.
func (m *Message) readSubscriptions(params []byte) error {
	where := "the params of " + m.Method
	notifications, err := member(params, "notifications", m.ID, where)
	if err != nil || isNull(notifications) {
		return err
	}
	uris, err := member(notifications, "resourceSubscriptions", m.ID, "the notifications in "+where)
	if err != nil || isNull(uris) {
		return err
	}
	bad := invalid(CodeInvalidParams, m.ID, "the resourceSubscriptions of "+m.Method+" must be an array of resource URIs (strings)")
	if uris[0] != '[' {
		return bad
	}
	s := scanner{b: uris}
	return s.elements(func(v []byte) error {
		if v[0] != '"' {
			return bad
		}
		m.Subscriptions = append(m.Subscriptions, string(text(v)))
		return nil
	})
}

func isNull(v []byte) bool { return v == nil || string(v) == "null" }

// namesSomething reports whether the params of a method that MCP does not
// define as naming a tool, resource or prompt look as if they named one:
// an object with a member whose name is, in any case, one of those MCP
// names them with, or params that are not an object at all (positional
// params could hold anything). Only the params' own members count: under
// _meta, clientInfo has a name in every request of recent MCP versions.
func namesSomething(params []byte) bool {
	switch {
	case isNull(params) || bytes.Equal(params, []byte("[]")):
		return false
	case params[0] != '{':
		return true
	}
	found := false
	s := scanner{b: params}
	_ = s.members(func(key, _ []byte) error {
		for _, naming := range [...]string{"name", "uri", "uriTemplate", "ref"} {
			if bytes.EqualFold(key, []byte(naming)) {
				found = true
			}
		}
		return nil
	})
	return found
}

// member returns the value of the member key of the JSON object obj (nil
// when obj is not an object or lacks it), refusing it twice or in another
// case (see field). where names obj in errors, which carry id.
func member(obj []byte, key string, id json.RawMessage, where string) ([]byte, error) {
	if len(obj) == 0 || obj[0] != '{' {
		return nil, invalid(CodeInvalidParams, id, where+" must be an object with a "+strconv.Quote(key))
	}
	var value []byte
	var seen bool
	s := scanner{b: obj}
	err := s.members(func(k, v []byte) error {
		ok, err := field(k, key, &seen, where)
		if ok {
			value = v
		}
		return err
	})
	if err != nil {
		err.(*Error).ID = id
		return nil, err
	}
	return value, nil
}

// intern returns the common methods as constants, so reading them
// allocates nothing.
func intern(method []byte) string {
	for _, known := range [...]string{MethodCallTool, MethodGetPrompt, MethodReadResource, MethodSubscribeResource, MethodComplete, MethodListen,
		MethodListTools, MethodListResources, MethodListResourceTemplates, MethodListPrompts, "initialize", "notifications/initialized", "ping"} {
		if string(method) == known {
			return known
		}
	}
	return string(method)
}

// Header names of the MCP streamable HTTP transport that mirror the body.
const (
	HeaderMethod = "Mcp-Method"
	HeaderName   = "Mcp-Name"
)

// checkHeaders refuses Mcp-Method and Mcp-Name headers that disagree with
// the body. The body decides what the upstream does, so a header is never
// believed over it; one that disagrees is refused, as the transport asks,
// so that no intermediary routes or logs the request as something else.
func checkHeaders(h http.Header, msgs []Message) error {
	methods, names := h[HeaderMethod], h[HeaderName]
	if len(methods) == 0 && len(names) == 0 {
		return nil
	}
	if len(methods) > 1 || len(names) > 1 {
		return invalid(CodeHeaderMismatch, nil, "the Mcp-Method and Mcp-Name headers may each be sent once")
	}
	var name string
	if len(names) == 1 {
		var ok bool
		if name, ok = decodeHeaderValue(names[0]); !ok {
			return invalid(CodeHeaderMismatch, nil, "the Mcp-Name header is not valid =?base64?...?= encoding")
		}
	}
	for _, m := range msgs {
		if len(methods) == 1 && methods[0] != m.Method {
			return invalid(CodeHeaderMismatch, m.ID, "the Mcp-Method header "+strconv.Quote(methods[0])+" does not match the body's method "+strconv.Quote(m.Method))
		}
		if len(names) == 1 && names[0] != "" && nameMember(m.Method) != "" && name != m.Name {
			return invalid(CodeHeaderMismatch, m.ID, "the Mcp-Name header "+strconv.Quote(names[0])+" does not match the body's "+strconv.Quote(m.Name))
		}
	}
	return nil
}

// nameMember is the member of method's params that names its tool,
// prompt or resource (the one Mcp-Name mirrors), or "" for a method that
// names none.
func nameMember(method string) string {
	switch method {
	case MethodCallTool, MethodGetPrompt:
		return "name"
	case MethodReadResource, MethodSubscribeResource:
		return "uri"
	}
	return ""
}

// decodeHeaderValue undoes the transport's encoding of header values that
// are not plain ASCII: =?base64?<standard base64 of the UTF-8>?=.
func decodeHeaderValue(v string) (string, bool) {
	inner, ok := strings.CutPrefix(v, "=?base64?")
	if !ok {
		return v, true
	}
	if inner, ok = strings.CutSuffix(inner, "?="); !ok {
		return v, true
	}
	b, err := base64.StdEncoding.DecodeString(inner)
	if err != nil {
		return "", false
	}
	return string(b), true
}
