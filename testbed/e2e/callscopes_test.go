package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/net/html"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// callScopesEnv is the gateway with four more servers in front of real
// ops-console MCP servers (official Go SDK), each offering tickets.read
// and admin.read and keeping restart_service for admin.read: ops-step
// answers with SSE streams, ops-json with JSON (and reads bodies up to
// 64 KiB, and lets the method tools/execute pass unchecked), ops-all shows every
// tool in its lists, and ops-files (SSE) also keeps the incident_report
// prompt and the resources under file:///ops/secrets/ for admin.read.
type callScopesEnv struct {
	*env
	sse, json *testenv.MCPServer
}

func startCallScopesEnv(t *testing.T) *callScopesEnv {
	t.Helper()
	sse, err := testenv.StartMCPServer(testenv.MCPServerConfig{Name: testenv.OpsConsole})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sse.Close() })
	jsonServer, err := testenv.StartMCPServer(testenv.MCPServerConfig{Name: testenv.OpsConsole, JSONResponse: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jsonServer.Close() })
	server := func(name, upstream, extra string) string {
		return fmt.Sprintf(`server %s /%s {
			gateway acme
			scopes tickets.read admin.read
			tool restart_service admin.read
			%s
			reverse_proxy %s
		}
		`, name, name, extra, testenv.HostOf(upstream))
	}
	lines := server("ops-step", sse.URL(), "") + server("ops-json", jsonServer.URL(), "max_call_body 64KiB\n\t\t\tunchecked_methods tools/execute") + server("ops-all", sse.URL(), "filter_lists off") +
		server("ops-files", sse.URL(), "prompt incident_report admin.read\n\t\t\tresource file:///ops/secrets/ admin.read")
	e := startEnv(t, testenv.ProviderConfig{}, withLines(lines, ""))
	return &callScopesEnv{env: e, sse: sse, json: jsonServer}
}

// recordingTransport adds a bearer token and notes the Content-Type of the
// reply to each MCP method.
type recordingTransport struct {
	token string

	mu      sync.Mutex
	replies map[string]string // method → Content-Type
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if rt.token != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+rt.token)
	}
	var msg struct {
		Method string `json:"method"`
	}
	if r.GetBody != nil {
		if body, err := r.GetBody(); err == nil {
			_ = json.NewDecoder(body).Decode(&msg)
			body.Close()
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && msg.Method != "" {
		rt.mu.Lock()
		if rt.replies == nil {
			rt.replies = map[string]string{}
		}
		rt.replies[msg.Method] = resp.Header.Get("Content-Type")
		rt.mu.Unlock()
	}
	return resp, err
}

func (rt *recordingTransport) reply(method string) string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.replies[method]
}

// connect opens an official SDK client session through the gateway.
func connect(t *testing.T, endpoint string, rt *recordingTransport) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := mcp.NewClient(&mcp.Implementation{Name: "call-scopes-test", Version: "1"}, nil)
	session, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Transport: rt}}, nil)
	if err != nil {
		t.Fatalf("connecting to %s: %v", endpoint, err)
	}
	t.Cleanup(func() { session.Close() })
	return session
}

func sessionTools(t *testing.T, s *mcp.ClientSession) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// consentScopes reads the consent page's lists of new and already allowed
// scopes.
func consentScopes(t *testing.T, page *testenv.Page) (newScopes, granted []string) {
	doc, err := html.Parse(strings.NewReader(page.Body))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *html.Node, list *[]string)
	walk = func(n *html.Node, list *[]string) {
		if n.Type == html.ElementNode && list == nil {
			for _, a := range n.Attr {
				if a.Key == "id" && a.Val == "new-scopes" {
					list = &newScopes
				}
				if a.Key == "id" && a.Val == "granted-scopes" {
					list = &granted
				}
			}
		}
		if n.Type == html.ElementNode && n.Data == "code" && list != nil && n.FirstChild != nil {
			*list = append(*list, n.FirstChild.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, list)
		}
	}
	walk(doc, nil)
	return newScopes, granted
}

// TestStepUpForAPrivilegedTool lets the official Go SDK client, holding a
// token for tickets.read, meet a tool kept for admin.read: it does not see
// the tool, is refused when it calls it by name with the step-up
// challenge, authorizes again for the wider scope (the consent page shows
// only admin.read as new) and the call succeeds.
func TestStepUpForAPrivilegedTool(t *testing.T) {
	e := startCallScopesEnv(t)
	const redirect = "http://127.0.0.1:33421/callback"
	browser := testenv.NewBrowser()
	browser.StopAt(func(u *url.URL) bool { return u.Host == "127.0.0.1:33421" })
	type round struct{ asked, newScopes, granted []string }
	var rounds []round
	fetcher := func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		u, _ := url.Parse(args.URL)
		page, err := browser.Get(args.URL)
		if err != nil {
			return nil, err
		}
		newScopes, granted := consentScopes(t, page)
		rounds = append(rounds, round{strings.Fields(u.Query().Get("scope")), newScopes, granted})
		if page, err = testenv.PassConsentAndLogin(browser, page, true); err != nil {
			return nil, err
		}
		q := page.URL.Query()
		if page.URL.Host != "127.0.0.1:33421" || q.Get("error") != "" {
			return nil, fmt.Errorf("the flow ended at %s (status %d)", page.URL, page.Status)
		}
		return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
	}
	// The client registers once and keeps its client ID, as desktop
	// clients do: the gateway remembers consent per client.
	reg, err := oauthex.RegisterClient(context.Background(), e.public+"/oauth/ops-step/register", &oauthex.ClientRegistrationMetadata{
		RedirectURIs:            []string{redirect},
		ClientName:              "step-up client",
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: "none",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := true
	handler, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		PreregisteredClient:      &oauthex.ClientCredentials{ClientID: reg.ClientID},
		RedirectURL:              redirect,
		AuthorizationCodeFetcher: fetcher,
		// The first authorization asks for tickets.read alone; later ones
		// ask for what the gateway's challenge names.
		ScopeFilter: func(discovered []string) []string {
			if first {
				first = false
				return []string{"tickets.read"}
			}
			return discovered
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := mcp.NewClient(&mcp.Implementation{Name: "step-up-test", Version: "1"}, nil)
	session, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.public + "/ops-step", OAuthHandler: handler}, nil)
	if err != nil {
		t.Fatalf("the SDK client could not connect: %v", err)
	}
	defer session.Close()
	if len(rounds) != 1 || !slices.Equal(rounds[0].asked, []string{"tickets.read"}) {
		t.Fatalf("first authorization: %+v", rounds)
	}

	if got := sessionTools(t, session); !slices.Equal(got, []string{"stream_progress", "whoami"}) {
		t.Errorf("a tickets.read token lists %v, want the tools without restart_service", got)
	}

	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "restart_service", Arguments: map[string]any{"service": "billing"}})
	if err != nil {
		t.Fatalf("calling restart_service after step-up: %v", err)
	}
	if len(rounds) != 2 {
		t.Fatalf("the 403 led to %d authorizations in all, want a second one", len(rounds))
	}
	stepUp := rounds[1]
	slices.Sort(stepUp.asked)
	if !slices.Equal(stepUp.asked, []string{"admin.read", "tickets.read"}) {
		t.Errorf("the step-up asked for %v, want the challenge's admin.read tickets.read", stepUp.asked)
	}
	if !slices.Equal(stepUp.newScopes, []string{"admin.read"}) || !slices.Equal(stepUp.granted, []string{"tickets.read"}) {
		t.Errorf("the step-up consent page shows %v as new and %v as already allowed, want [admin.read] and [tickets.read]", stepUp.newScopes, stepUp.granted)
	}
	if text, ok := res.Content[0].(*mcp.TextContent); !ok || text.Text != "service billing restarted" || res.IsError {
		t.Errorf("restart_service answered %+v", res.Content)
	}
	if got := sessionTools(t, session); !slices.Equal(got, []string{"restart_service", "stream_progress", "whoami"}) {
		t.Errorf("after the step-up the client lists %v", got)
	}
	// The first consent page, for a client never approved, listed its
	// scope without an "already allowed" part.
	if !slices.Equal(rounds[0].newScopes, []string{"tickets.read"}) || rounds[0].granted != nil {
		t.Errorf("the first consent page shows %v and %v", rounds[0].newScopes, rounds[0].granted)
	}
}

// post sends one raw MCP request through the gateway.
func (e *callScopesEnv) post(t *testing.T, path, token, body string, header ...string) (*http.Response, string) {
	t.Helper()
	resp, b, err := testenv.PostMCP(e.public+path, token, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func callBody(id int, tool string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{"service":"billing"}}}`, id, tool)
}

// wantStepUp checks a 403 with the step-up challenge for admin.read.
func wantStepUp(t *testing.T, e *callScopesEnv, resp *http.Response, body string) {
	t.Helper()
	challenge := resp.Header.Get("WWW-Authenticate")
	prefix := `Bearer error="insufficient_scope", scope="admin.read tickets.read", resource_metadata="` + e.public + `/.well-known/oauth-protected-resource/ops-step", error_description="`
	if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(challenge, prefix) {
		t.Fatalf("got %d with challenge\n %s\nwant 403 and\n %s...", resp.StatusCode, challenge, prefix)
	}
	var oerr struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal([]byte(body), &oerr); err != nil || oerr.Error != "insufficient_scope" || !strings.Contains(oerr.Description, "restart_service") {
		t.Errorf("403 body %s", body)
	}
}

// TestCallScopesRefuseBeforeTheUpstream sends raw requests with a
// tickets.read token: a forbidden call, alone or in a batch, a body whose
// Mcp-Method or Mcp-Name header disagrees, and a body over 1 MiB are all
// answered by the gateway and never reach the upstream.
func TestCallScopesRefuseBeforeTheUpstream(t *testing.T) {
	e := startCallScopesEnv(t)
	c := e.register(t, "ops-step")
	tok := c.login(t, "ops-step", "tickets.read").AccessToken
	admin := c.login(t, "ops-step", "tickets.read admin.read").AccessToken

	seen := e.sse.Requests()
	refused := func(t *testing.T) {
		t.Helper()
		if n := e.sse.Requests() - seen; n != 0 {
			t.Errorf("the upstream saw %d refused request(s)", n)
		}
	}

	t.Run("forbidden call", func(t *testing.T) {
		resp, body := e.post(t, "/ops-step", tok, callBody(1, "restart_service"), "Mcp-Method", "tools/call", "Mcp-Name", "restart_service")
		wantStepUp(t, e, resp, body)
		refused(t)
	})
	t.Run("batch with an allowed and a forbidden call", func(t *testing.T) {
		resp, body := e.post(t, "/ops-step", tok, "["+callBody(1, "whoami")+","+callBody(2, "restart_service")+"]")
		wantStepUp(t, e, resp, body)
		refused(t)
	})
	t.Run("header disagrees with the body", func(t *testing.T) {
		for _, h := range [][]string{
			{"Mcp-Method", "tools/call", "Mcp-Name", "whoami"},
			{"Mcp-Method", "tools/list"},
		} {
			resp, body := e.post(t, "/ops-step", admin, callBody(7, "restart_service"), h...)
			var rpc struct {
				ID    int `json:"id"`
				Error struct {
					Code int `json:"code"`
				} `json:"error"`
			}
			if resp.StatusCode != http.StatusBadRequest || json.Unmarshal([]byte(body), &rpc) != nil || rpc.Error.Code != -32020 || rpc.ID != 7 {
				t.Errorf("%v: got %d %s, want 400 with JSON-RPC error -32020 for id 7", h, resp.StatusCode, body)
			}
		}
		refused(t)
	})
	t.Run("body over 1 MiB", func(t *testing.T) {
		big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{"pad":"` + strings.Repeat("x", 1<<20) + `"}}}`
		resp, _ := e.post(t, "/ops-step", admin, big)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("with Content-Length: %d, want 413", resp.StatusCode)
		}
		// Chunked, without a length to refuse it by.
		req, _ := http.NewRequest(http.MethodPost, e.public+"/ops-step", io.MultiReader(strings.NewReader(big)))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		chunked, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		chunked.Body.Close()
		if chunked.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked: %d, want 413", chunked.StatusCode)
		}
		refused(t)
	})

	t.Run("body over the server's max_call_body", func(t *testing.T) {
		admin := c.login(t, "ops-json", "tickets.read admin.read").AccessToken
		seenJSON := e.json.Requests()
		pad := func(n int) string {
			return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{"pad":"` + strings.Repeat("x", n) + `"}}}`
		}
		if resp, _ := e.post(t, "/ops-json", admin, pad(80<<10)); resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("an 80 KiB body with max_call_body 64KiB: %d, want 413", resp.StatusCode)
		}
		if e.json.Requests() != seenJSON {
			t.Error("the upstream saw the refused body")
		}
		// Within the limit, the upstream answers (here: no session).
		if resp, _ := e.post(t, "/ops-json", admin, pad(60<<10)); resp.StatusCode == http.StatusRequestEntityTooLarge || e.json.Requests() != seenJSON+1 {
			t.Errorf("a 60 KiB body with max_call_body 64KiB: %d, upstream requests %d → %d", resp.StatusCode, seenJSON, e.json.Requests())
		}
	})

	// What may pass, passes: the upstream answers (the SDK server refuses
	// batches in current protocol versions, but it is its answer).
	resp, _ := e.post(t, "/ops-step", tok, "["+callBody(1, "whoami")+","+callBody(2, "stream_progress")+"]")
	if resp.StatusCode == http.StatusForbidden || e.sse.Requests() != seen+1 {
		t.Errorf("a batch of allowed calls: %d, upstream requests %d → %d", resp.StatusCode, seen, e.sse.Requests())
	}
	res, err := e.callTool(t, "/ops-step", admin, "restart_service", map[string]any{"service": "billing"})
	if err != nil || res.IsError {
		t.Errorf("an admin.read token calling restart_service: %v %+v", err, res)
	}
}

// TestListsFilteredForTheToken lists tools with the official SDK client
// on a server answering with SSE streams and on one answering JSON: a
// tickets.read token sees no restart_service on either; an admin.read
// token sees it; and with filter_lists off the list is whole but the call
// is still refused.
func TestListsFilteredForTheToken(t *testing.T) {
	e := startCallScopesEnv(t)
	c := e.register(t, "ops-step")
	for _, tc := range []struct{ server, contentType string }{
		{"ops-step", "text/event-stream"},
		{"ops-json", "application/json"},
	} {
		t.Run(tc.server, func(t *testing.T) {
			tok := c.login(t, tc.server, "tickets.read").AccessToken
			rt := &recordingTransport{token: tok}
			if got := sessionTools(t, connect(t, e.public+"/"+tc.server, rt)); !slices.Equal(got, []string{"stream_progress", "whoami"}) {
				t.Errorf("a tickets.read token lists %v", got)
			}
			if got := rt.reply("tools/list"); !strings.HasPrefix(got, tc.contentType) {
				t.Errorf("tools/list was answered as %q, want %s", got, tc.contentType)
			}
			admin := c.login(t, tc.server, "tickets.read admin.read").AccessToken
			if got := sessionTools(t, connect(t, e.public+"/"+tc.server, &recordingTransport{token: admin})); !slices.Equal(got, []string{"restart_service", "stream_progress", "whoami"}) {
				t.Errorf("an admin.read token lists %v", got)
			}
		})
	}

	t.Run("filter_lists off", func(t *testing.T) {
		tok := c.login(t, "ops-all", "tickets.read").AccessToken
		session := connect(t, e.public+"/ops-all", &recordingTransport{token: tok})
		if got := sessionTools(t, session); !slices.Equal(got, []string{"restart_service", "stream_progress", "whoami"}) {
			t.Errorf("with filter_lists off a tickets.read token lists %v", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "restart_service", Arguments: map[string]any{"service": "billing"}}); err == nil || !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("calling a listed tool the token does not cover: %v, want a 403", err)
		}
	})
}

// TestCompletionAndTemplatesScoped: the call scopes of a prompt and of a
// resource prefix also guard completing the prompt's arguments or a
// template's, and resource templates are listed only where the token could
// read what they expand to.
func TestCompletionAndTemplatesScoped(t *testing.T) {
	e := startCallScopesEnv(t)
	c := e.register(t, "ops-files")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	templates := func(s *mcp.ClientSession) []string {
		t.Helper()
		res, err := s.ListResourceTemplates(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, rt := range res.ResourceTemplates {
			names = append(names, rt.Name)
		}
		slices.Sort(names)
		return names
	}
	complete := func(s *mcp.ClientSession, ref *mcp.CompleteReference) ([]string, error) {
		res, err := s.Complete(ctx, &mcp.CompleteParams{Ref: ref, Argument: mcp.CompleteParamsArgument{Name: "service", Value: "s"}})
		if err != nil {
			return nil, err
		}
		return res.Completion.Values, nil
	}
	prompt := &mcp.CompleteReference{Type: "ref/prompt", Name: "incident_report"}
	secret := &mcp.CompleteReference{Type: "ref/resource", URI: "file:///ops/secrets/{name}"}
	logs := &mcp.CompleteReference{Type: "ref/resource", URI: "file:///ops/logs/{day}.log"}

	readerToken := c.login(t, "ops-files", "tickets.read").AccessToken
	reader := connect(t, e.public+"/ops-files", &recordingTransport{token: readerToken})
	if got := templates(reader); !slices.Equal(got, []string{"log"}) {
		t.Errorf("a tickets.read token lists templates %v, want [log]", got)
	}
	if _, err := complete(reader, logs); err != nil {
		t.Errorf("a tickets.read token completing the unguarded template: %v", err)
	}
	// A 403 ends the SDK client's session: one session per refusal.
	for _, ref := range []*mcp.CompleteReference{prompt, secret} {
		s := connect(t, e.public+"/ops-files", &recordingTransport{token: readerToken})
		if _, err := complete(s, ref); err == nil || !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("a tickets.read token completing %s %s%s: %v, want a 403", ref.Type, ref.Name, ref.URI, err)
		}
	}

	admin := connect(t, e.public+"/ops-files", &recordingTransport{token: c.login(t, "ops-files", "tickets.read admin.read").AccessToken})
	if got := templates(admin); !slices.Equal(got, []string{"log", "secret"}) {
		t.Errorf("an admin.read token lists templates %v, want [log secret]", got)
	}
	for _, ref := range []*mcp.CompleteReference{prompt, secret} {
		if got, err := complete(admin, ref); err != nil || !slices.Equal(got, []string{"search", "sessions"}) {
			t.Errorf("an admin.read token completing %s %s%s: %v %v, want [search sessions]", ref.Type, ref.Name, ref.URI, got, err)
		}
	}
}
