package mcpcalls

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

const toolsResult = `{"jsonrpc":"2.0","id":1,"result":{"tools":[` +
	`{"name":"whoami","description":"Who <am> I"},` +
	`{"name":"restart_service","description":"Restarts a service."},` +
	`{"name":"stream_progress"}],"nextCursor":"c2"}}`

// listsFor returns the list requests of a request body for a token with
// tickets.read under opsPolicy.
func listsFor(t *testing.T, body string) *Lists {
	t.Helper()
	msgs, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	l := opsPolicy(false).Lists(msgs, scopes.MustParse("tickets.read"))
	if l == nil {
		t.Fatal("no list to filter")
	}
	return l
}

// listNames returns the names of the entries of a list result's member
// (tools, resourceTemplates...) in message.
func listNames(t *testing.T, message, member string) []string {
	t.Helper()
	var msg struct {
		Result map[string]json.RawMessage `json:"result"`
	}
	var entries []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(message), &msg); err != nil {
		t.Fatalf("%v in %s", err, message)
	}
	if err := json.Unmarshal(msg.Result[member], &entries); err != nil {
		t.Fatalf("%s: %v in %s", member, err, message)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	return names
}

// toolNames returns the tools of a tools/list result, checking that the
// rest of the result (its cursor) came through.
func toolNames(t *testing.T, message string) []string {
	t.Helper()
	if !strings.Contains(message, `"nextCursor":"c2"`) {
		t.Errorf("the rest of the result was lost: %s", message)
	}
	return listNames(t, message, "tools")
}

func TestFilterJSON(t *testing.T) {
	l := listsFor(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	w := httptest.NewRecorder()
	f := l.Filter(w)
	f.Header().Set("Content-Type", "application/json")
	f.Header().Set("Content-Length", strconv.Itoa(len(toolsResult)))
	f.WriteHeader(http.StatusOK)
	// The upstream writes in pieces; nothing reaches the client before the
	// whole reply is read.
	for i := 0; i < len(toolsResult); i += 10 {
		_, _ = f.Write([]byte(toolsResult[i:min(i+10, len(toolsResult))]))
		f.Flush()
		if w.Body.Len() != 0 {
			t.Fatal("part of a JSON list result passed before it was filtered")
		}
	}
	if err := f.Finish(); err != nil {
		t.Fatal(err)
	}
	body := w.Body.String()
	if got := strings.Join(toolNames(t, body), " "); got != "whoami stream_progress" {
		t.Errorf("tools after filtering: %s", got)
	}
	if w.Header().Get("Content-Length") != strconv.Itoa(len(body)) || w.Code != http.StatusOK {
		t.Errorf("status %d, Content-Length %s for a body of %d bytes", w.Code, w.Header().Get("Content-Length"), len(body))
	}
	if !strings.Contains(body, "Who <am> I") {
		t.Errorf("the kept entries were changed: %s", body)
	}

	// A token that may use everything gets the upstream's bytes.
	msgs, _ := Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	w = httptest.NewRecorder()
	f = opsPolicy(false).Lists(msgs, scopes.MustParse("admin.read tickets.write")).Filter(w)
	f.Header().Set("Content-Type", "application/json")
	_, _ = f.Write([]byte(toolsResult))
	_ = f.Finish()
	if w.Body.String() != toolsResult {
		t.Errorf("a result with nothing to remove was rewritten: %s", w.Body)
	}
}

func TestFilterJSONBatch(t *testing.T) {
	l := listsFor(t, `[{"jsonrpc":"2.0","id":"call","method":"tools/call","params":{"name":"whoami"}},{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`)
	// The call's result happens to hold a tools member: it is no list
	// result, and stays as it is.
	call := `{"jsonrpc":"2.0","id":"call","result":{"tools":[{"name":"restart_service"}]}}`
	w := httptest.NewRecorder()
	f := l.Filter(w)
	f.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = f.Write([]byte("[" + call + "," + toolsResult + "]"))
	_ = f.Finish()
	var batch []json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &batch); err != nil || len(batch) != 2 {
		t.Fatalf("%v: %s", err, w.Body)
	}
	if string(batch[0]) != call {
		t.Errorf("the call's result was changed: %s", batch[0])
	}
	if got := strings.Join(toolNames(t, string(batch[1])), " "); got != "whoami stream_progress" {
		t.Errorf("tools after filtering: %s", got)
	}
}

func TestFilterSSE(t *testing.T) {
	l := listsFor(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	progress := "event: message\r\nid: 1_0\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\r\n\r\n"
	comment := ": keep-alive\n\n"
	list := "event: message\nid: 1_1\ndata: " + toolsResult + "\n\n"
	w := httptest.NewRecorder()
	f := l.Filter(w)
	f.Header().Set("Content-Type", "text/event-stream")
	f.WriteHeader(http.StatusOK)
	stream := progress + comment + list
	// Byte by byte: events pass as soon as they are complete.
	for i := 0; i < len(stream); i++ {
		_, _ = f.Write([]byte{stream[i]})
		if i == len(progress)-1 && w.Body.String() != progress {
			t.Fatalf("after the first event the client has %q", w.Body)
		}
	}
	if err := f.Finish(); err != nil {
		t.Fatal(err)
	}
	out := w.Body.String()
	if !strings.HasPrefix(out, progress+comment) {
		t.Fatalf("events that answer no list were changed:\n%q", out)
	}
	rewritten := strings.TrimPrefix(out, progress+comment)
	if !strings.HasPrefix(rewritten, "event: message\nid: 1_1\ndata: ") || !strings.HasSuffix(rewritten, "\n\n") {
		t.Fatalf("the list event lost its fields: %q", rewritten)
	}
	data := strings.TrimSuffix(strings.TrimPrefix(rewritten, "event: message\nid: 1_1\ndata: "), "\n\n")
	if got := strings.Join(toolNames(t, data), " "); got != "whoami stream_progress" {
		t.Errorf("tools after filtering: %s", got)
	}
}

func TestFilterSSEMultilineData(t *testing.T) {
	l := listsFor(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	var pretty strings.Builder
	pretty.WriteString("event: message\n")
	for line := range strings.SplitSeq(indent(t, toolsResult), "\n") {
		pretty.WriteString("data:" + line + "\n")
	}
	pretty.WriteString("\n")
	w := httptest.NewRecorder()
	f := l.Filter(w)
	f.Header().Set("Content-Type", "text/event-stream")
	_, _ = f.Write([]byte(pretty.String()))
	_ = f.Finish()
	data, ok := strings.CutPrefix(w.Body.String(), "event: message\ndata: ")
	if !ok {
		t.Fatalf("got %q", w.Body)
	}
	if got := strings.Join(toolNames(t, strings.TrimSpace(data)), " "); got != "whoami stream_progress" {
		t.Errorf("tools after filtering: %s", got)
	}
}

func indent(t *testing.T, s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// wrapped is a ResponseWriter that, like the ones Caddy wraps responses
// in, reaches the connection's Flush only through Unwrap.
type wrapped struct{ http.ResponseWriter }

func (w wrapped) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestFilterSSEStreams runs the filter in a real HTTP server: the client
// must receive each event before the server writes the next, which it
// could not if the filter held the stream or failed to flush it.
func TestFilterSSEStreams(t *testing.T) {
	l := listsFor(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	received := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := l.Filter(wrapped{w})
		defer f.Finish()
		f.Header().Set("Content-Type", "text/event-stream")
		f.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(f, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n")
		f.Flush()
		select {
		case <-received:
		case <-time.After(10 * time.Second):
			return
		}
		_, _ = io.WriteString(f, "event: message\ndata: "+toolsResult+"\n\n")
		f.Flush()
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	var events []string
	for lines.Scan() {
		if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
			events = append(events, data)
			if len(events) == 1 {
				close(received)
			}
		}
	}
	if len(events) != 2 {
		t.Fatalf("the client got %d events (%v): the first was held back", len(events), events)
	}
	if got := strings.Join(toolNames(t, events[1]), " "); got != "whoami stream_progress" {
		t.Errorf("tools after filtering: %s", got)
	}
}

func TestFilterRefusesWhatItCannotRead(t *testing.T) {
	l := listsFor(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	for name, reply := range map[string]func(f *Filter){
		"gzip": func(f *Filter) {
			f.Header().Set("Content-Type", "application/json")
			f.Header().Set("Content-Encoding", "gzip")
			_, _ = f.Write([]byte("\x1f\x8b..."))
		},
		"cut short": func(f *Filter) {
			f.Header().Set("Content-Type", "application/json")
			_, _ = f.Write([]byte(toolsResult[:len(toolsResult)/2]))
		},
		"too large": func(f *Filter) {
			f.Header().Set("Content-Type", "application/json")
			_, _ = f.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[],"pad":"`))
			_, _ = f.Write([]byte(strings.Repeat("x", maxJSONResponse)))
			_, _ = f.Write([]byte(`"}}`))
		},
	} {
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			f := l.Filter(w)
			reply(f)
			_ = f.Finish()
			if w.Code != http.StatusBadGateway || strings.Contains(w.Body.String(), "restart_service") || w.Header().Get("Content-Encoding") != "" {
				t.Errorf("got %d %v %.80s", w.Code, w.Header(), w.Body)
			}
		})
	}

	// A stream that ends in the middle of an event: the event is dropped.
	w := httptest.NewRecorder()
	f := l.Filter(w)
	f.Header().Set("Content-Type", "text/event-stream")
	_, _ = f.Write([]byte("data: " + toolsResult[:60]))
	_ = f.Finish()
	if strings.Contains(w.Body.String(), "restart") {
		t.Errorf("a cut event passed: %q", w.Body)
	}
}

func TestFilterPassesOtherReplies(t *testing.T) {
	l := listsFor(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	w := httptest.NewRecorder()
	f := l.Filter(w)
	f.Header().Set("Content-Type", "text/plain")
	f.WriteHeader(http.StatusAccepted)
	_, _ = f.Write([]byte(toolsResult))
	_ = f.Finish()
	if w.Code != http.StatusAccepted || w.Body.String() != toolsResult {
		t.Errorf("a reply that is neither JSON nor SSE was changed: %d %s", w.Code, w.Body)
	}
}

// TestFilterReplayedStream filters a resumed GET stream, where the
// upstream may replay the reply to an earlier tools/list: it is known by
// its shape, as no request on the stream names its id.
func TestFilterReplayedStream(t *testing.T) {
	l := opsPolicy(false).Replays(scopes.MustParse("tickets.read"))
	notification := "event: message\nid: 9\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"
	callResult := "event: message\nid: 10\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"restart_service\"}]}}\n\n"
	replayed := "event: message\nid: 11\ndata: " + toolsResult + "\n\n"
	w := httptest.NewRecorder()
	f := l.Filter(w)
	f.Header().Set("Content-Type", "text/event-stream")
	_, _ = io.WriteString(f, notification+callResult+replayed)
	_ = f.Finish()
	out := w.Body.String()
	if !strings.HasPrefix(out, notification+callResult) {
		t.Fatalf("events that hold no list result were changed: %q", out)
	}
	data := strings.TrimSuffix(strings.TrimPrefix(out, notification+callResult+"event: message\nid: 11\ndata: "), "\n\n")
	if got := strings.Join(toolNames(t, data), " "); got != "whoami stream_progress" {
		t.Errorf("tools after filtering the replay: %s", got)
	}
	if opsPolicy(true).Replays(scopes.MustParse("tickets.read")) != nil {
		t.Error("with list_all a GET stream is filtered")
	}
}

// TestFilterResourceTemplates filters resources/templates/list by each
// template's literal start, also when a resumed stream replays the result.
func TestFilterResourceTemplates(t *testing.T) {
	const templates = `{"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[` +
		`{"uriTemplate":"file:///ops/secrets/{name}","name":"secret"},` +
		`{"uriTemplate":"file:///ops/logs/{day}.log","name":"log"},` +
		`{"uriTemplate":"{+anything}","name":"any"}]}}`
	for name, l := range map[string]*Lists{
		"reply":  listsFor(t, `{"jsonrpc":"2.0","id":3,"method":"resources/templates/list"}`),
		"replay": opsPolicy(false).Replays(scopes.MustParse("tickets.read")),
	} {
		w := httptest.NewRecorder()
		f := l.Filter(w)
		f.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(f, templates)
		_ = f.Finish()
		// The secret template can only expand under file:///ops/secrets/,
		// which needs admin.read; "{+anything}" may expand anywhere and is
		// judged when a URI is read.
		if got := strings.Join(listNames(t, w.Body.String(), "resourceTemplates"), " "); got != "log any" {
			t.Errorf("%s: templates after filtering: %q, want \"log any\"", name, got)
		}
	}
}

// TestFilterReplyToNoRequest: a reply whose id names no request of the
// batch (an upstream that rewrote a list request's id, say as a float) is
// judged by its shape, while the reply to a known request that is no list
// stays as it is whatever it holds.
func TestFilterReplyToNoRequest(t *testing.T) {
	l := listsFor(t, `[{"jsonrpc":"2.0","id":"call","method":"tools/call","params":{"name":"whoami"}},{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`)
	call := `{"jsonrpc":"2.0","id":"call","result":{"tools":[{"name":"restart_service"}]}}`
	for _, id := range []string{"1.0", "3", `"other"`, "null"} {
		stray := strings.Replace(toolsResult, `"id":1`, `"id":`+id, 1)
		w := httptest.NewRecorder()
		f := l.Filter(w)
		f.Header().Set("Content-Type", "application/json")
		_, _ = f.Write([]byte("[" + call + "," + stray + "]"))
		_ = f.Finish()
		var batch []json.RawMessage
		if err := json.Unmarshal(w.Body.Bytes(), &batch); err != nil || len(batch) != 2 {
			t.Fatalf("id %s: %v: %s", id, err, w.Body)
		}
		if string(batch[0]) != call {
			t.Errorf("id %s: the call's result was changed: %s", id, batch[0])
		}
		if got := strings.Join(toolNames(t, string(batch[1])), " "); got != "whoami stream_progress" {
			t.Errorf("id %s: tools after filtering: %s", id, got)
		}

		// The same on a stream.
		w = httptest.NewRecorder()
		f = l.Filter(w)
		f.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(f, "event: message\ndata: "+stray+"\n\n")
		_ = f.Finish()
		data := strings.TrimSuffix(strings.TrimPrefix(w.Body.String(), "event: message\ndata: "), "\n\n")
		if got := strings.Join(toolNames(t, data), " "); got != "whoami stream_progress" {
			t.Errorf("id %s on a stream: tools after filtering: %s", id, got)
		}
	}
}
