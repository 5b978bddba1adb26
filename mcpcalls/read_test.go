package mcpcalls

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func post(body string, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func TestReadMessages(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []Message
	}{
		{"tool call", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"restart_service","arguments":{"service":"billing"}}}`,
			[]Message{{Method: MethodCallTool, Name: "restart_service", ID: []byte("7")}}},
		{"params before method", `{"params":{"arguments":{"name":"decoy"},"name":"restart_service"},"method":"tools/call","id":"a","jsonrpc":"2.0"}`,
			[]Message{{Method: MethodCallTool, Name: "restart_service", ID: []byte(`"a"`)}}},
		{"escaped method and name", `{"jsonrpc":"2.0","id":1,"\u006dethod":"tools\/call","params":{"n\u0061me":"restart\u005fservice"}}`,
			[]Message{{Method: MethodCallTool, Name: "restart_service", ID: []byte("1")}}},
		{"resource read", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///secret/plan.txt"}}`,
			[]Message{{Method: MethodReadResource, Name: "file:///secret/plan.txt", ID: []byte("1")}}},
		{"prompt", `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"incident_report"}}`,
			[]Message{{Method: MethodGetPrompt, Name: "incident_report", ID: []byte("1")}}},
		{"list", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
			[]Message{{Method: MethodListTools, ID: []byte("2")}}},
		{"completion of a prompt", `{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"argument":{"name":"service","value":"bi"},"ref":{"name":"incident_report","type":"ref/prompt"}}}`,
			[]Message{{Method: MethodComplete, Ref: RefPrompt, Name: "incident_report", ID: []byte("4")}}},
		{"completion of a resource template", `{"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///ops/secrets/{name}"},"argument":{"name":"name","value":""}}}`,
			[]Message{{Method: MethodComplete, Ref: RefResource, Name: "file:///ops/secrets/{name}", ID: []byte("5")}}},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			[]Message{{Method: "notifications/initialized"}}},
		{"response", `{"jsonrpc":"2.0","id":3,"result":{"method":"tools/call"}}`,
			[]Message{{ID: []byte("3")}}},
		{"error response with a null id", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`,
			[]Message{{}}},
		{"integer ids to the ends of int64", `[{"jsonrpc":"2.0","id":9223372036854775807,"method":"ping"},{"jsonrpc":"2.0","id":-9223372036854775808,"method":"ping"},` +
			`{"jsonrpc":"2.0","id":0,"method":"ping"},{"jsonrpc":"2.0","id":-17,"method":"ping"},{"jsonrpc":"2.0","id":"1.0","method":"ping"}]`,
			[]Message{{Method: "ping", ID: []byte("9223372036854775807")}, {Method: "ping", ID: []byte("-9223372036854775808")},
				{Method: "ping", ID: []byte("0")}, {Method: "ping", ID: []byte("-17")}, {Method: "ping", ID: []byte(`"1.0"`)}}},
		{"responses may share ids with requests", `[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
			[]Message{{ID: []byte("1")}, {Method: "ping", ID: []byte("1")}}},
		{"subscriptions/listen", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true,"resourceSubscriptions":["file:///a", "file:\/\/\/b"]}}}`,
			[]Message{{Method: MethodListen, Subscriptions: []string{"file:///a", "file:///b"}, ID: []byte("1")}}},
		{"subscriptions/listen to no resource", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true,"resourceSubscriptions":null}}}`,
			[]Message{{Method: MethodListen, ID: []byte("1")}}},
		{"subscriptions/listen without notifications", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{}}`,
			[]Message{{Method: MethodListen, ID: []byte("1")}}},
		{"unknown method naming a tool", `{"jsonrpc":"2.0","id":1,"method":"tools/execute","params":{"name":"restart_service"}}`,
			[]Message{{Method: "tools/execute", Unjudged: true, ID: []byte("1")}}},
		{"unknown method naming a resource in another case", `{"jsonrpc":"2.0","id":1,"method":"resources/fetch","params":{"URI":"file:///secret"}}`,
			[]Message{{Method: "resources/fetch", Unjudged: true, ID: []byte("1")}}},
		{"unknown method with a ref", `{"jsonrpc":"2.0","method":"notifications/prompts/used","params":{"ref":{"type":"ref/prompt","name":"incident_report"}}}`,
			[]Message{{Method: "notifications/prompts/used", Unjudged: true}}},
		{"unknown method with a template", `{"jsonrpc":"2.0","id":1,"method":"resources/expand","params":{"urit\u0065mplate":"file:///{x}"}}`,
			[]Message{{Method: "resources/expand", Unjudged: true, ID: []byte("1")}}},
		{"unknown method with positional params", `{"jsonrpc":"2.0","id":1,"method":"tools/execute","params":["restart_service"]}`,
			[]Message{{Method: "tools/execute", Unjudged: true, ID: []byte("1")}}},
		{"unknown method naming nothing", `{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t1","_meta":{"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}}}}`,
			[]Message{{Method: "tasks/get", ID: []byte("1")}}},
		{"unknown method with empty positional params", `{"jsonrpc":"2.0","id":1,"method":"acme/status","params":[]}`,
			[]Message{{Method: "acme/status", ID: []byte("1")}}},
		{"resources/unsubscribe", `{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":"file:///secret"}}`,
			[]Message{{Method: MethodUnsubscribeResource, ID: []byte("1")}}},
		{"batch", " [ {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"whoami\"}} ,\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"} ] ",
			[]Message{{Method: MethodCallTool, Name: "whoami", ID: []byte("1")}, {Method: MethodListTools, ID: []byte("2")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(tc.body)
			got, err := Read(r, MaxBodyBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d messages, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i].Method != tc.want[i].Method || got[i].Name != tc.want[i].Name || got[i].Ref != tc.want[i].Ref || !bytes.Equal(got[i].ID, tc.want[i].ID) ||
					!slices.Equal(got[i].Subscriptions, tc.want[i].Subscriptions) || got[i].Unjudged != tc.want[i].Unjudged {
					t.Errorf("message %d = %+v (id %s), want %+v (id %s)", i, got[i], got[i].ID, tc.want[i], tc.want[i].ID)
				}
			}
			// The upstream reads the body the client sent, byte for byte.
			rest, _ := io.ReadAll(r.Body)
			if string(rest) != tc.body || r.ContentLength != int64(len(tc.body)) {
				t.Errorf("the body handed on is %q (length %d), want the original", rest, r.ContentLength)
			}
		})
	}
}

func TestReadRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		header     []string
		code       int
	}{
		{"not JSON", `{"jsonrpc":"2.0","method":"tools/call",`, nil, CodeParseError},
		{"trailing data", `{"jsonrpc":"2.0","method":"ping"} {"method":"tools/call"}`, nil, CodeParseError},
		{"empty body", ``, nil, CodeParseError},
		{"not an object", `"tools/call"`, nil, CodeInvalidRequest},
		{"empty batch", `[]`, nil, CodeInvalidRequest},
		{"batch of non-objects", `[1]`, nil, CodeInvalidRequest},
		{"method twice", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}`, nil, CodeInvalidRequest},
		{"method in another case", `{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"x"}}`, nil, CodeInvalidRequest},
		{"params with a long s", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"},"param\u017f":{"name":"x"}}`, nil, CodeInvalidRequest},
		{"name twice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name":"restart_service"}}`, nil, CodeInvalidRequest},
		{"name in another case", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"restart_service"}}`, nil, CodeInvalidRequest},
		{"name not a string", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["restart_service"]}}`, nil, CodeInvalidParams},
		{"no params", `{"jsonrpc":"2.0","id":1,"method":"prompts/get"}`, nil, CodeInvalidParams},
		{"uri missing", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}`, nil, CodeInvalidParams},
		{"method not a string", `{"jsonrpc":"2.0","id":1,"method":1}`, nil, CodeInvalidRequest},
		{"completion without a ref", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"argument":{"name":"x","value":""}}}`, nil, CodeInvalidParams},
		{"completion ref not an object", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":"ref/prompt"}}`, nil, CodeInvalidParams},
		{"completion of another kind", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"incident_report"}}}`, nil, CodeInvalidParams},
		{"completion ref without a type", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"name":"incident_report"}}}`, nil, CodeInvalidParams},
		{"completion prompt without a name", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","uri":"x"}}}`, nil, CodeInvalidParams},
		{"completion ref name twice", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","name":"incident_report"}}}`, nil, CodeInvalidRequest},
		{"completion ref type in another case", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"Type":"ref/tool","type":"ref/prompt","name":"incident_report"}}}`, nil, CodeInvalidRequest},
		{"Mcp-Method disagrees", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"restart_service"}}`,
			[]string{"Mcp-Method", "tools/list"}, CodeHeaderMismatch},
		{"Mcp-Name disagrees", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"restart_service"}}`,
			[]string{"Mcp-Method", "tools/call", "Mcp-Name", "whoami"}, CodeHeaderMismatch},
		{"Mcp-Name in base64 disagrees", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"restart_service"}}`,
			[]string{"Mcp-Name", "=?base64?d2hvYW1p?="}, CodeHeaderMismatch},
		{"Mcp-Name bad base64", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"restart_service"}}`,
			[]string{"Mcp-Name", "=?base64?***?="}, CodeHeaderMismatch},
		// Ids that decoders read as numbers other than the text says, or
		// that are neither strings nor integers.
		{"id with a fraction", `{"jsonrpc":"2.0","id":1.0,"method":"tools/list"}`, nil, CodeInvalidRequest},
		{"id with an exponent", `[{"jsonrpc":"2.0","id":"p","method":"ping"},{"jsonrpc":"2.0","id":1e0,"method":"tools/list"}]`, nil, CodeInvalidRequest},
		{"id with a signed exponent", `{"jsonrpc":"2.0","id":10E-1,"method":"tools/list"}`, nil, CodeInvalidRequest},
		{"id minus zero", `{"jsonrpc":"2.0","id":-0,"method":"tools/list"}`, nil, CodeInvalidRequest},
		{"id not an integer", `{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}`, nil, CodeInvalidRequest},
		{"id over int64", `{"jsonrpc":"2.0","id":9223372036854775808,"method":"tools/list"}`, nil, CodeInvalidRequest},
		{"id under int64", `{"jsonrpc":"2.0","id":-9223372036854775809,"method":"tools/list"}`, nil, CodeInvalidRequest},
		{"id with twenty digits", `{"jsonrpc":"2.0","id":10000000000000000000,"method":"tools/list"}`, nil, CodeInvalidRequest},
		{"id null on a request", `{"jsonrpc":"2.0","id":null,"method":"tools/list"}`, nil, CodeInvalidRequest},
		{"id a boolean", `{"jsonrpc":"2.0","id":true,"method":"tools/list"}`, nil, CodeInvalidRequest},
		{"id an object", `{"jsonrpc":"2.0","id":{"n":1},"method":"tools/list"}`, nil, CodeInvalidRequest},
		{"id an array", `{"jsonrpc":"2.0","id":[1],"method":"tools/list"}`, nil, CodeInvalidRequest},
		{"duplicate ids", `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":1,"method":"prompts/list"}]`, nil, CodeInvalidRequest},
		{"duplicate ids escaped", `[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":"\u0061","method":"tools/list"}]`, nil, CodeInvalidRequest},
		{"duplicate ids string and integer", `[{"jsonrpc":"2.0","id":"7","method":"prompts/list"},{"jsonrpc":"2.0","id":7,"method":"tools/list"}]`, nil, CodeInvalidRequest},
		{"duplicate ids of notifications and requests", `[{"jsonrpc":"2.0","id":3,"method":"notifications/initialized"},{"jsonrpc":"2.0","id":3,"method":"tools/list"}]`, nil, CodeInvalidRequest},
		// subscriptions/listen subscribes to its resourceSubscriptions.
		{"listen without params", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen"}`, nil, CodeInvalidParams},
		{"listen notifications not an object", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":["file:///a"]}}`, nil, CodeInvalidParams},
		{"listen subscriptions not an array", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":"file:///a"}}}`, nil, CodeInvalidParams},
		{"listen subscription not a string", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["file:///a",{"uri":"file:///b"}]}}}`, nil, CodeInvalidParams},
		{"listen subscriptions twice", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["file:///a"],"resourceSubscriptions":["file:///b"]}}}`, nil, CodeInvalidRequest},
		{"listen subscriptions in another case", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"ResourceSubscriptions":["file:///b"]}}}`, nil, CodeInvalidRequest},
		{"listen notifications in another case", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"Notifications":{"resourceSubscriptions":["file:///b"]}}}`, nil, CodeInvalidRequest},
		{"Mcp-Method twice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}`,
			[]string{"Mcp-Method", "tools/call", "Mcp-Method", "tools/call"}, CodeHeaderMismatch},
		{"Mcp-Method on a response", `{"jsonrpc":"2.0","id":1,"result":{}}`, []string{"Mcp-Method", "tools/call"}, CodeHeaderMismatch},
		{"Mcp-Method against a batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}},{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"x"}}]`,
			[]string{"Mcp-Method", "tools/call"}, CodeHeaderMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(post(tc.body, tc.header...), MaxBodyBytes)
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("Read accepted it (err %v)", err)
			}
			if me.Status != http.StatusBadRequest || me.Code != tc.code || me.Message == "" {
				t.Errorf("got status %d code %d %q, want 400 and code %d", me.Status, me.Code, me.Message, tc.code)
			}
		})
	}
}

func TestReadHeadersThatAgree(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		header     []string
	}{
		{"plain", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"restart_service"}}`,
			[]string{"Mcp-Method", "tools/call", "Mcp-Name", "restart_service"}},
		{"base64 name", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///Grüße.txt"}}`,
			[]string{"Mcp-Method", "resources/read", "Mcp-Name", "=?base64?ZmlsZTovLy9HcsO8w59lLnR4dA==?="}},
		{"name on a method that names nothing", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
			[]string{"Mcp-Method", "tools/list", "Mcp-Name", "whatever"}},
		{"only Mcp-Method", `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			[]string{"Mcp-Method", "notifications/initialized"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Read(post(tc.body, tc.header...), MaxBodyBytes); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReadLimit(t *testing.T) {
	const limit = 64
	msg := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	exact := msg + strings.Repeat(" ", limit-len(msg))
	if _, err := Read(post(exact), limit); err != nil {
		t.Fatalf("a body of exactly the limit was refused: %v", err)
	}
	over := exact + " "
	for name, r := range map[string]*http.Request{
		"with Content-Length": post(over),
		"chunked": func() *http.Request {
			r := post(over)
			r.ContentLength = -1
			r.Body = io.NopCloser(strings.NewReader(over)) // no length known
			return r
		}(),
		"under Caddy's request_body limit": func() *http.Request {
			r := post(exact)
			r.ContentLength = -1
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(exact)), 10)
			return r
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Read(r, limit)
			var me *Error
			if !errors.As(err, &me) || me.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("got %v, want a 413", err)
			}
		})
	}
	// A body announced over the limit is refused before any of it is read.
	r := post(over)
	body := &countingReader{r: strings.NewReader(over)}
	r.Body = io.NopCloser(body)
	if _, err := Read(r, limit); err == nil || body.n != 0 {
		t.Errorf("an announced oversized body: err %v after reading %d bytes", err, body.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestReadDeclaredLengthReservesLittle: a body that declares a large
// length but sends little gets a buffer sized by what arrives, so that
// requests trickling bytes cannot each reserve the whole limit.
func TestReadDeclaredLengthReservesLittle(t *testing.T) {
	const limit = 64 << 20
	buf, err := readAtMost(strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), limit-1, limit)
	if err != nil {
		t.Fatal(err)
	}
	if cap(buf) > initialBuffer {
		t.Errorf("a %d-byte body declared as %d bytes got a %d-byte buffer, want at most %d", len(buf), limit-1, cap(buf), initialBuffer)
	}
	// A body larger than the first buffer still reads whole.
	big := strings.Repeat("x", 3*initialBuffer)
	if buf, err = readAtMost(strings.NewReader(big), int64(len(big)), limit); err != nil || string(buf) != big {
		t.Errorf("a %d-byte body read as %d bytes (%v)", len(big), len(buf), err)
	}
}
