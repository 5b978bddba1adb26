package mcpcalls

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"ping"}`,
			[]Message{{Method: "ping"}}},
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
				if got[i].Method != tc.want[i].Method || got[i].Name != tc.want[i].Name || got[i].Ref != tc.want[i].Ref || !bytes.Equal(got[i].ID, tc.want[i].ID) {
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
