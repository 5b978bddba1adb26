package mcpcalls

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"slices"
	"strconv"
)

// maxJSONResponse bounds a JSON reply that Filter holds whole to rewrite
// it; a list result beyond it is not passed on.
const maxJSONResponse = 16 << 20

// Filter is an http.ResponseWriter that passes an upstream's reply on with
// the results of list requests cut down to what the token may use. A JSON
// reply (application/json) is held until the upstream is done, then
// rewritten; a Server-Sent Events stream (text/event-stream) is passed on
// event by event, each event as soon as it is complete, and Flush flushes
// what has passed. Any other reply passes unchanged.
//
// A reply it cannot read (a content encoding, a JSON reply over 16 MiB or
// cut short) is replaced by a 502: passing it on unread could show what the
// token may not see. Call Finish once the upstream is done.
type Filter struct {
	w     http.ResponseWriter
	lists *Lists

	mode    filterMode
	status  int
	pending []byte // JSON: the whole reply so far; SSE: the unfinished event
	err     error
}

type filterMode uint8

const (
	modeUnset filterMode = iota
	modePass
	modeJSON
	modeSSE
	modeRefuse
)

// Filter wraps w so that the list results of l's requests are filtered.
func (l *Lists) Filter(w http.ResponseWriter) *Filter {
	return &Filter{w: w, lists: l}
}

// Header returns the header map that the reply's headers go in.
func (f *Filter) Header() http.Header { return f.w.Header() }

// WriteHeader decides from the reply's headers how it is filtered.
func (f *Filter) WriteHeader(status int) {
	if f.mode != modeUnset {
		return
	}
	if status < 200 {
		f.w.WriteHeader(status) // 103 Early Hints and the like
		return
	}
	f.status = status
	h := f.w.Header()
	media, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	switch {
	case media != "application/json" && media != "text/event-stream":
		f.mode = modePass
		f.w.WriteHeader(status)
		return
	case h.Get("Content-Encoding") != "" && h.Get("Content-Encoding") != "identity":
		f.mode = modeRefuse
		return
	case media == "application/json":
		f.mode = modeJSON
	default:
		f.mode = modeSSE
		h.Del("Content-Length")
		f.w.WriteHeader(status)
	}
}

// Write passes b on, holds it, or cuts it into events, by the reply's kind.
func (f *Filter) Write(b []byte) (int, error) {
	if f.mode == modeUnset {
		f.WriteHeader(http.StatusOK)
	}
	switch f.mode {
	case modePass:
		return f.w.Write(b)
	case modeJSON:
		if len(f.pending)+len(b) > maxJSONResponse {
			f.mode, f.pending = modeRefuse, nil
			return len(b), nil
		}
		f.pending = append(f.pending, b...)
	case modeSSE:
		f.pending = append(f.pending, b...)
		if err := f.events(); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// Flush flushes what has passed on: a JSON reply is flushed only whole, by
// Finish, and an SSE event only once it is complete.
func (f *Filter) Flush() {
	if f.mode == modePass || f.mode == modeSSE {
		// Through a ResponseController: the writers that Caddy wraps a
		// response in reach the connection's Flush by Unwrap.
		_ = http.NewResponseController(f.w).Flush()
	}
}

// Finish writes what the filter still holds: the rewritten JSON reply, or
// the 502 of a reply it could not read. It returns the first error met
// writing to the client.
func (f *Filter) Finish() error {
	if f.mode == modeJSON && len(bytes.TrimSpace(f.pending)) > 0 && !json.Valid(f.pending) {
		// Cut short, or not JSON at all: passing it on could show part of
		// a list unfiltered.
		f.mode = modeRefuse
	}
	switch f.mode {
	case modeJSON:
		out := f.rewriteBody(f.pending)
		h := f.w.Header()
		h.Set("Content-Length", strconv.Itoa(len(out)))
		f.w.WriteHeader(f.status)
		if _, err := f.w.Write(out); err != nil {
			return err
		}
	case modeSSE:
		// An event the stream ended in the middle of is dropped, as SSE
		// clients drop it (it was never dispatched).
		f.pending = nil
	case modeRefuse:
		h := f.w.Header()
		for k := range h {
			delete(h, k)
		}
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w := f.w
		f.mode = modePass
		w.WriteHeader(http.StatusBadGateway)
		_, err := w.Write([]byte(`{"error":"upstream_unreadable","error_description":"the MCP server's reply to a list request was encoded or too large for the gateway to filter; ask the server for an unencoded reply"}`))
		return err
	}
	f.mode = modePass
	return f.err
}

// events writes every complete event held, rewritten where it answers a
// list request, and keeps the unfinished rest.
func (f *Filter) events() error {
	for len(f.pending) > 0 {
		n := eventEnd(f.pending)
		if n < 0 {
			return nil
		}
		event := f.pending[:n]
		if _, err := f.w.Write(f.rewriteEvent(event)); err != nil {
			f.err = err
			return err
		}
		f.pending = f.pending[n:]
	}
	f.pending = nil
	return nil
}

// eventEnd returns the length of the first complete event of b, through
// the blank line that ends it, or -1. Lines end in CRLF, LF or CR (the SSE
// grammar); a CR at the end of b may be the start of a CRLF, so it waits.
func eventEnd(b []byte) int {
	blank := true // at the start of a line with nothing on it yet
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\r':
			if i+1 == len(b) {
				return -1
			}
			if b[i+1] == '\n' {
				i++
			}
			fallthrough
		case '\n':
			if blank {
				return i + 1
			}
			blank = true
		default:
			blank = false
		}
	}
	return -1
}

// rewriteEvent returns the event with its data rewritten if the data is a
// reply to a list request, else the event unchanged.
func (f *Filter) rewriteEvent(event []byte) []byte {
	var data []byte
	var other [][]byte // the lines that are not data, with their endings
	for rest := event; len(rest) > 0; {
		line, next := cutLine(rest)
		content := bytes.TrimRight(line, "\r\n")
		if value, ok := bytes.CutPrefix(content, []byte("data")); ok && (len(value) == 0 || value[0] == ':') {
			value = bytes.TrimPrefix(bytes.TrimPrefix(value, []byte(":")), []byte(" "))
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, value...)
		} else if len(content) > 0 {
			other = append(other, line)
		}
		rest = next
	}
	if data == nil {
		return event
	}
	out, changed := f.rewriteMessages(data)
	if !changed {
		return event
	}
	var b bytes.Buffer
	for _, l := range other {
		b.Write(l)
		if !bytes.HasSuffix(l, []byte("\n")) && !bytes.HasSuffix(l, []byte("\r")) {
			b.WriteByte('\n')
		}
	}
	b.WriteString("data: ")
	b.Write(out)
	b.WriteString("\n\n")
	return b.Bytes()
}

// cutLine returns the first line of b with its ending, and the rest.
func cutLine(b []byte) (line, rest []byte) {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\n':
			return b[:i+1], b[i+1:]
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				return b[:i+2], b[i+2:]
			}
			return b[:i+1], b[i+1:]
		}
	}
	return b, nil
}

// rewriteBody returns a JSON reply with its list results filtered.
func (f *Filter) rewriteBody(body []byte) []byte {
	out, _ := f.rewriteMessages(body)
	return out
}

// rewriteMessages filters the list results in one JSON-RPC message or a
// batch of them, and reports whether it changed anything. What it cannot
// read as JSON-RPC it leaves alone: no client can read it either.
func (f *Filter) rewriteMessages(data []byte) ([]byte, bool) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return data, false
	}
	if trimmed[0] != '[' {
		return f.rewriteMessage(data)
	}
	var batch []json.RawMessage
	if json.Unmarshal(trimmed, &batch) != nil {
		return data, false
	}
	changed := false
	for i, m := range batch {
		if out, ok := f.rewriteMessage(m); ok {
			batch[i], changed = out, true
		}
	}
	if !changed {
		return data, false
	}
	return marshal(batch), true
}

// rewriteMessage filters the result of one response to a list request.
func (f *Filter) rewriteMessage(data []byte) ([]byte, bool) {
	var msg map[string]json.RawMessage
	if json.Unmarshal(data, &msg) != nil || msg["result"] == nil || msg["method"] != nil {
		return data, false
	}
	var result map[string]json.RawMessage
	if json.Unmarshal(msg["result"], &result) != nil {
		return data, false
	}
	method, known := f.lists.methodOf(msg["id"])
	if !known {
		method = f.lists.shape(result)
	}
	i := slices.IndexFunc(listKinds[:], func(k listKind) bool { return k.method == method })
	if i < 0 {
		return data, false
	}
	member, key := listKinds[i].member, listKinds[i].key
	var entries []json.RawMessage
	if json.Unmarshal(result[member], &entries) != nil {
		return data, false
	}
	kept := entries[:0:0]
	for _, e := range entries {
		var fields map[string]json.RawMessage
		var name string
		// An entry without a readable name cannot be judged, so it is
		// left out; no client could use it anyway.
		if json.Unmarshal(e, &fields) != nil || json.Unmarshal(fields[key], &name) != nil {
			continue
		}
		if f.lists.policy.visible(method, name, f.lists.granted) {
			kept = append(kept, e)
		}
	}
	if len(kept) == len(entries) {
		return data, false
	}
	if kept == nil {
		kept = []json.RawMessage{}
	}
	result[member] = marshal(kept)
	msg["result"] = marshal(result)
	return marshal(msg), true
}

// listKind is a list method whose results a Filter rewrites: the result
// member that holds the entries, and the entry member that names each.
type listKind struct{ method, member, key string }

var listKinds = [...]listKind{
	{MethodListTools, "tools", "name"},
	{MethodListResources, "resources", "uri"},
	{MethodListResourceTemplates, "resourceTemplates", "uriTemplate"},
	{MethodListPrompts, "prompts", "name"},
}

// shape returns the list method whose result result looks like, among
// those the policy filters, or "".
func (l *Lists) shape(result map[string]json.RawMessage) string {
	for _, m := range listKinds {
		if raw := bytes.TrimSpace(result[m.member]); len(raw) > 0 && raw[0] == '[' && l.policy.filters(m.method) {
			return m.method
		}
	}
	return ""
}

// marshal encodes v, which holds only raw JSON, on one line and without
// escaping HTML characters that the upstream did not escape.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
