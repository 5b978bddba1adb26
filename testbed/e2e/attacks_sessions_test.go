package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// mallory is a second person at the provider: the attacker who holds a
// valid token of her own.
var mallory = testenv.User{Subject: "mallory-id", Username: "mallory", Password: "m4llory-pw", Email: "mallory@example.com", Name: "Mallory"}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// TestAttacksSessions attacks the MCP sessions behind a running gateway:
// a session is bound to the user, client and server it was opened by, so
// another token cannot ride it, resume its streams or end it; and paths
// below a server cannot step outside it.
func TestAttacksSessions(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{Users: []testenv.User{testenv.DefaultUser(), mallory}},
		func(e *env) { e.supportConfig.Resumable = true })
	victim := e.register(t, "support-assistant")
	victimTok := victim.login(t, "support-assistant", "").AccessToken
	victimOps := victim.login(t, "ops-console", "").AccessToken
	// The same person through another client of hers.
	otherClient := e.register(t, "support-assistant").login(t, "support-assistant", "").AccessToken
	attacker := e.register(t, "support-assistant")
	attacker.SignIn = url.Values{"username": {mallory.Username}, "password": {mallory.Password}}
	attackerTok := attacker.login(t, "support-assistant", "").AccessToken
	res, err := e.callTool(t, "/support", attackerTok, "whoami", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if user := whoami(t, res).XHeaders["X-Mcp-User"]; user != mallory.Subject {
		t.Fatalf("the attacker's token is %q's, want %q's: the attacks below would prove nothing", user, mallory.Subject)
	}

	session := e.openSession(t, "/support", victimTok)
	// The upstream's session ID and the MAC after its last dot; the
	// subtests that alter the MAC fail when there is none.
	raw, mac := session, ""
	if i := strings.LastIndexByte(session, '.'); i >= 0 {
		raw, mac = session[:i], session[i+1:]
	}
	needMAC := func(t *testing.T) {
		t.Helper()
		if mac == "" {
			t.Fatalf("the client got the session ID %q, which carries no MAC", session)
		}
	}
	whoCalls := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`

	// refused sends a request that must be answered as for an unknown
	// session (404, a JSON-RPC error) without reaching the upstream.
	refused := func(t *testing.T, upstream *testenv.MCPServer, method, path, token, body string, header http.Header) {
		t.Helper()
		before := upstream.Requests()
		status, h, got := e.mcpRequest(t, method, path, token, body, header)
		if status != http.StatusNotFound || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %s %.200q, want 404 with a JSON-RPC error", method, path, status, h.Get("Content-Type"), got)
		}
		var msg struct {
			JSONRPC string `json:"jsonrpc"`
			Error   struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(got), &msg); err != nil || msg.JSONRPC != "2.0" || msg.Error.Code == 0 || msg.Error.Message == "" {
			t.Errorf("%s %s: body %.200q is not a JSON-RPC error", method, path, got)
		}
		if n := upstream.Requests() - before; n != 0 {
			t.Errorf("%s %s: the upstream saw %d requests", method, path, n)
		}
	}
	withSession := func(ids ...string) http.Header { return http.Header{"Mcp-Session-Id": ids} }

	t.Run("another user's token in a session", func(t *testing.T) {
		refused(t, e.support, http.MethodPost, "/support", attackerTok, whoCalls, withSession(session))
	})
	t.Run("the same user's session through another client", func(t *testing.T) {
		refused(t, e.support, http.MethodPost, "/support", otherClient, whoCalls, withSession(session))
	})
	t.Run("a session carried to another server", func(t *testing.T) {
		refused(t, e.ops, http.MethodPost, "/ops", victimOps, whoCalls, withSession(session))
	})
	t.Run("an altered MAC", func(t *testing.T) {
		needMAC(t)
		flipped := []byte(mac)
		flipped[len(flipped)/2] ^= 'A' ^ 'B'
		refused(t, e.support, http.MethodPost, "/support", victimTok, whoCalls, withSession(raw+"."+string(flipped)))
		refused(t, e.support, http.MethodPost, "/support", victimTok, whoCalls, withSession(raw+"."+strings.ToUpper(mac)))
	})
	t.Run("a truncated MAC", func(t *testing.T) {
		needMAC(t)
		for _, cut := range []string{mac[:len(mac)-1], mac[:len(mac)/2], mac[:1], ""} {
			refused(t, e.support, http.MethodPost, "/support", victimTok, whoCalls, withSession(raw+"."+cut))
		}
	})
	t.Run("a session ID without its MAC", func(t *testing.T) {
		needMAC(t)
		refused(t, e.support, http.MethodPost, "/support", victimTok, whoCalls, withSession(raw))
		refused(t, e.support, http.MethodPost, "/support", attackerTok, whoCalls, withSession(raw))
	})
	t.Run("another session's MAC on the victim's session", func(t *testing.T) {
		needMAC(t)
		own := e.openSession(t, "/support", attackerTok)
		refused(t, e.support, http.MethodPost, "/support", attackerTok, whoCalls, withSession(raw+own[strings.LastIndexByte(own, '.'):]))
	})
	t.Run("two session headers", func(t *testing.T) {
		own := e.openSession(t, "/support", attackerTok)
		for _, ids := range [][]string{{own, session}, {session, own}, {session, session}} {
			before := e.support.Requests()
			status, _, body := e.mcpRequest(t, http.MethodPost, "/support", attackerTok, whoCalls, withSession(ids...))
			if status != http.StatusBadRequest || e.support.Requests() != before {
				t.Errorf("two Mcp-Session-Id headers: %d %.200q, the upstream saw %d requests", status, body, e.support.Requests()-before)
			}
		}
	})
	t.Run("resuming another user's stream", func(t *testing.T) {
		events := e.progressEvents(t, victimTok, session)
		if len(events) == 0 {
			t.Fatal("the call's stream carried no event IDs: nothing to resume")
		}
		resumed := len(e.support.ResumedFrom())
		header := withSession(session)
		header.Set("Last-Event-ID", events[0])
		header.Set("Accept", "text/event-stream")
		refused(t, e.support, http.MethodGet, "/support", attackerTok, "", header)
		if n := len(e.support.ResumedFrom()) - resumed; n != 0 {
			t.Fatalf("the upstream resumed %d streams for the attacker", n)
		}
		// The victim herself resumes it.
		if status, h, body := e.mcpRequest(t, http.MethodGet, "/support", victimTok, "", header); status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("the victim's own resumption: %d %s", status, body)
		}
		if n := len(e.support.ResumedFrom()) - resumed; n != 1 {
			t.Fatalf("the victim's resumption reached the upstream %d times, want 1", n)
		}
	})
	t.Run("ending another user's session", func(t *testing.T) {
		refused(t, e.support, http.MethodDelete, "/support", attackerTok, "", withSession(session))
		if status, _, body := e.mcpRequest(t, http.MethodPost, "/support", victimTok, whoCalls, withSession(session)); status != http.StatusOK {
			t.Fatalf("the victim's session after the attacker's DELETE: %d %s", status, body)
		}
	})
	t.Run("a normal SDK session", func(t *testing.T) {
		e.sdkSession(t, victimTok)
	})

	// Paths below a server.
	t.Run("dot segments and encoded separators below a server", func(t *testing.T) {
		for _, path := range []string{
			"/support/../ops", "/support/%2e%2e/x", "/support/%2E%2e/x", "/support/.%2e", "/support/x/..", "/support/./x", "/support/.",
			"/support/a%2fb", "/support/a%2Fb", "/support%2fx", "/support/a%5cb", "/support/a%5Cb", `/support/a\b`,
			"/support/..;/ops", "/support/..;x=1/ops", "/support/.;/x", "/support/%2e%2e;/ops",
		} {
			before := e.support.Requests() + e.ops.Requests()
			status, h, body := e.mcpRequest(t, http.MethodPost, path, victimTok, initializeBody, nil)
			var oerr struct {
				Error            string `json:"error"`
				ErrorDescription string `json:"error_description"`
			}
			if status != http.StatusBadRequest || !strings.HasPrefix(h.Get("Content-Type"), "application/json") ||
				json.Unmarshal([]byte(body), &oerr) != nil || oerr.Error == "" || oerr.ErrorDescription == "" {
				t.Errorf("%s: %d %s %.200q, want 400 with a JSON error", path, status, h.Get("Content-Type"), body)
			}
			if n := e.support.Requests() + e.ops.Requests() - before; n != 0 {
				t.Errorf("%s: the upstreams saw %d requests", path, n)
			}
		}
	})
	t.Run("the server's own path reaches the upstream as /", func(t *testing.T) {
		for path, want := range map[string]string{"/support": "/", "/support/": "/", "/support/mcp": "/mcp", "/support/...": "/..."} {
			if status, _, body := e.mcpRequest(t, http.MethodPost, path, victimTok, initializeBody, nil); status != http.StatusOK {
				t.Fatalf("%s: %d %s", path, status, body)
			}
			if got := e.support.LastPath(); got != want {
				t.Errorf("%s reached the upstream as %q, want %q", path, got, want)
			}
		}
	})
}

// TestAttacksSessionsHeaderSpellings sends the session ID under another
// spelling of its header, which CGI, WSGI and PHP read as Mcp-Session-Id.
// Caddy drops headers with "_" unless the server's
// expected_underscore_headers admits them, as here, where it drops the
// canonical spelling instead: the victim's upstream session ID under the
// other name would reach such an upstream unchecked. (A gateway of its
// own: one process runs one Caddy config.)
func TestAttacksSessionsHeaderSpellings(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{Users: []testenv.User{testenv.DefaultUser(), mallory}},
		withGlobal("servers {\n\t\texpected_underscore_headers mcp_session_id\n\t}"))
	whoCalls := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`
	victim := e.register(t, "support-assistant")
	victimTok := victim.login(t, "support-assistant", "").AccessToken
	attacker := e.register(t, "support-assistant")
	attacker.SignIn = url.Values{"username": {mallory.Username}, "password": {mallory.Password}}
	attackerTok := attacker.login(t, "support-assistant", "").AccessToken
	status, h, body := e.mcpRequest(t, http.MethodPost, "/support", victimTok, initializeBody, nil)
	session := h.Get("Mcp-Session-Id")
	if status != http.StatusOK || session == "" {
		t.Fatalf("initialize: %d, session %q: %s", status, session, body)
	}
	raw := session[:max(0, strings.LastIndexByte(session, '.'))]
	for _, header := range []http.Header{
		{"Mcp_Session_Id": {raw}},
		{"Mcp_session_id": {session}},
		{"Mcp-Session-Id": {session}, "Mcp_Session_Id": {raw}},
	} {
		before := e.support.Requests()
		status, _, body := e.mcpRequest(t, http.MethodPost, "/support", attackerTok, whoCalls, header)
		if status != http.StatusBadRequest || e.support.Requests() != before {
			t.Errorf("%v: %d %.200q, the upstream saw %d requests; want 400 and none", header, status, body, e.support.Requests()-before)
		}
	}
}

// mcpRequest sends one request to a server path of the gateway as a
// streamable HTTP client does, with a bearer token, the body (if any) and
// the header, and returns the status, the response's header and its body.
// The body of an event stream answering a GET is not read: it stays open.
func (e *env) mcpRequest(t *testing.T, method, path, token, body string, header http.Header) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.public+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if method == http.MethodGet && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp.StatusCode, resp.Header, ""
	}
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(got)
}

// openSession initializes an MCP session at a server path with token, as a
// client would by hand, and returns the session ID the client got.
func (e *env) openSession(t *testing.T, path, token string) string {
	t.Helper()
	status, h, body := e.mcpRequest(t, http.MethodPost, path, token, initializeBody, nil)
	id := h.Get("Mcp-Session-Id")
	if status != http.StatusOK || id == "" {
		t.Fatalf("initialize at %s: %d, session %q: %s", path, status, id, body)
	}
	status, _, body = e.mcpRequest(t, http.MethodPost, path, token, `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		http.Header{"Mcp-Session-Id": {id}})
	if status != http.StatusAccepted {
		t.Fatalf("notifications/initialized at %s: %d %s", path, status, body)
	}
	return id
}

// progressEvents runs a short stream_progress call in session and returns
// the IDs of the events of its stream, which a client resumes from.
func (e *env) progressEvents(t *testing.T, token, session string) []string {
	t.Helper()
	call := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"stream_progress","arguments":{"count":2,"interval_ms":10},"_meta":{"progressToken":"p"}}}`
	status, _, body := e.mcpRequest(t, http.MethodPost, "/support", token, call, http.Header{"Mcp-Session-Id": {session}})
	if status != http.StatusOK {
		t.Fatalf("stream_progress: %d %s", status, body)
	}
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id:"); ok {
			ids = append(ids, strings.TrimSpace(id))
		}
	}
	return ids
}

// exchange is one HTTP request of an SDK client and its answer.
type exchange struct {
	method, session string
	status          int
}

// sessionRecorder is an SDK client's transport that adds a bearer token
// and reports every exchange.
type sessionRecorder struct {
	token     string
	exchanges chan exchange
}

func (s *sessionRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		select {
		case s.exchanges <- exchange{r.Method, r.Header.Get("Mcp-Session-Id"), resp.StatusCode}:
		default:
		}
	}
	return resp, err
}

// awaitExchange returns the SDK client's next exchange of an HTTP method.
func (s *sessionRecorder) awaitExchange(t *testing.T, ctx context.Context, method string) exchange {
	t.Helper()
	for {
		select {
		case x := <-s.exchanges:
			if x.method == method {
				return x
			}
		case <-ctx.Done():
			t.Fatalf("the SDK client sent no %s", method)
		}
	}
}

// sdkSession runs a whole session of the official Go SDK client through
// the gateway: initialize, a tool call, the standalone GET stream and the
// DELETE that ends it. The upstream sees its own session ID throughout.
func (e *env) sdkSession(t *testing.T, token string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec := &sessionRecorder{token: token, exchanges: make(chan exchange, 64)}
	cl := mcp.NewClient(&mcp.Implementation{Name: "session-test", Version: "1"}, nil)
	session, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.public + "/support", HTTPClient: &http.Client{Transport: rec}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	// The upstream receives its own session ID, without what the gateway
	// adds to it.
	if upstreamID := whoami(t, res).SessionID; upstreamID == "" || upstreamID != session.ID() && !strings.HasPrefix(session.ID(), upstreamID+".") {
		t.Errorf("the client holds session %q, the upstream received %q", session.ID(), upstreamID)
	}
	if get := rec.awaitExchange(t, ctx, http.MethodGet); get.status != http.StatusOK || get.session != session.ID() {
		t.Errorf("the standalone GET stream: %d with session %q", get.status, get.session)
	}
	if err := session.Close(); err != nil {
		t.Fatal(err)
	}
	if del := rec.awaitExchange(t, ctx, http.MethodDelete); del.status != http.StatusNoContent {
		t.Errorf("the DELETE that ends the session: %d", del.status)
	}
}
