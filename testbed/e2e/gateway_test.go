package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// env is one running gateway with its real parts: the OIDC provider, both
// MCP servers, and Caddy in this process.
type env struct {
	t        *testing.T
	public   string
	admin    string
	provider *testenv.Provider
	support  *testenv.MCPServer
	ops      *testenv.MCPServer
	storage  string

	// globalExtra, handlerExtra and gatewayExtra are Caddyfile lines added
	// to the global options, the mcp_gateway block and gateway acme's block.
	globalExtra, handlerExtra, gatewayExtra string
	// storageLine replaces the file_system storage directive.
	storageLine string
	// edit, if set, rewrites the whole Caddyfile before each load.
	edit func(e *env, caddyfile string) string
	// supportConfig configures the support-assistant MCP server.
	supportConfig testenv.MCPServerConfig
}

// envOption adjusts an env before its first config load.
type envOption func(*env)

// withLines adds Caddyfile lines to the mcp_gateway block and to gateway
// acme's block.
func withLines(handler, gateway string) envOption {
	return func(e *env) { e.handlerExtra, e.gatewayExtra = handler, gateway }
}

// withStorage replaces the storage directive of the global options.
func withStorage(line string) envOption {
	return func(e *env) { e.storageLine = line }
}

// withEdit rewrites the Caddyfile before each load, for a gateway block
// that differs in more than added lines.
func withEdit(edit func(e *env, caddyfile string) string) envOption {
	return func(e *env) { e.edit = edit }
}

// withGlobal adds Caddyfile lines to the global options.
func withGlobal(lines string) envOption {
	return func(e *env) { e.globalExtra = lines }
}

const gatewayCaddyfile = `{
	admin %[1]s
	persist_config off
	%[2]s
	%[10]s
}

%[3]s {
	mcp_gateway {
		public_url %[3]s
		%[8]s
		gateway acme {
			authorization_server %[4]s
			client_id mcp-gateway
			client_secret {env.MCP_GATEWAY_TEST_SECRET}
			resource https://api.example.com
			scopes tickets.read tickets.write accounts.read admin.read
			identity claim sub
			%[9]s
		}
		server support-assistant /support {
			gateway acme
			scopes %[5]s
			reverse_proxy %[6]s {
				header_up X-Mcp-User {http.auth.user.id}
				header_up X-Mcp-Scopes {http.mcp_gateway.scopes}
			}
		}
		server ops-console /ops {
			gateway acme
			scopes tickets.write admin.read
			reverse_proxy %[7]s
		}
	}
	respond "next handler" 200
}
`

func startEnv(t *testing.T, providerCfg testenv.ProviderConfig, opts ...envOption) *env {
	t.Helper()
	addr, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, public: "http://" + addr, storage: t.TempDir()}
	for _, opt := range opts {
		opt(e)
	}
	if providerCfg.Addr == "" {
		providerCfg.Addr = "127.0.0.1:0"
	}
	providerCfg.RedirectURIs = []string{e.public + "/oauth/callback"}
	if e.provider, err = testenv.StartProvider(providerCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.provider.Close() })
	e.supportConfig.Name = "support-assistant"
	if e.support, err = testenv.StartMCPServer(e.supportConfig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.support.Close() })
	if e.ops, err = testenv.StartMCPServer(testenv.MCPServerConfig{Name: "ops-console"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ops.Close() })
	t.Setenv("MCP_GATEWAY_TEST_SECRET", testenv.DefaultClientSecret)
	// Chosen last: a port freed by FreeAddr can be handed to the servers
	// started since, which listen on any free port.
	if e.admin, err = testenv.FreeAddr(); err != nil {
		t.Fatal(err)
	}
	e.load("tickets.read accounts.read")
	t.Cleanup(func() { _ = testenv.StopCaddy() })
	return e
}

func (e *env) caddyfile(supportScopes string) string {
	storage := "storage file_system " + e.storage
	if e.storageLine != "" {
		storage = e.storageLine
	}
	out := fmt.Sprintf(gatewayCaddyfile, e.admin, storage, e.public, e.provider.Issuer(), supportScopes,
		testenv.HostOf(e.support.URL()), testenv.HostOf(e.ops.URL()), e.handlerExtra, e.gatewayExtra, e.globalExtra)
	if e.edit != nil {
		out = e.edit(e, out)
	}
	return out
}

func (e *env) load(supportScopes string) {
	e.t.Helper()
	if err := testenv.RunCaddyfile([]byte(e.caddyfile(supportScopes))); err != nil {
		e.t.Fatalf("loading the gateway config: %v", err)
	}
	e.waitServing()
}

// reload posts the config with supportScopes to the admin API's /load, as
// `caddy reload` does (contentType text/caddyfile) or as a JSON client does
// (application/json), and returns once the new config serves.
func (e *env) reload(supportScopes, contentType string) {
	e.t.Helper()
	body := e.caddyfile(supportScopes)
	if contentType == "application/json" {
		cfg, err := testenv.AdaptCaddyfile([]byte(body))
		if err != nil {
			e.t.Fatal(err)
		}
		body = string(cfg)
	}
	resp, err := http.Post("http://"+e.admin+"/load", contentType, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("/load: %d %s", resp.StatusCode, answer)
	}
	e.waitServing()
}

// waitServing returns once the site answers on a new connection, and
// leaves no kept-alive connection behind: right after a config load the
// old config's server closes the connections it kept alive (a request
// sent on one as it closes fails, and Go's client sends only idempotent
// requests again), and one it accepted in the moment both configs were
// listening may be closed unanswered as it shuts down. So every request
// after a load, MCP POSTs included, goes out on a new connection, as a
// client connecting afresh would.
func (e *env) waitServing() {
	e.t.Helper()
	testenv.ForgetConnections()
	defer testenv.ForgetConnections()
	probe := e.public + "/.well-known/oauth-authorization-server/oauth/support-assistant"
	waitUntil(e.t, 10*time.Second, "the site answers after the config load", func() error {
		req, err := http.NewRequest(http.MethodGet, probe, nil)
		if err != nil {
			return err
		}
		req.Close = true // not kept alive: it may be the old server's
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answers %d", probe, resp.StatusCode)
		}
		return nil
	})
}

// waitUntil returns once check reports nil, checking every 50 ms, and
// fails t with check's last report when that takes longer than timeout:
// for what other instances, a config load or background work make true,
// without guessing how long they take.
func waitUntil(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v until %s: %v", timeout, what, err)
		}
	}
}

// clientRedirect is the tests' client's redirect URI. Nothing listens
// there: the browser stops at it and the code is read from the URL.
const clientRedirect = "http://127.0.0.1:33418/callback"

// client is the scripted MCP client of testenv with helpers that fail the
// test instead of returning errors.
type client struct{ *testenv.OAuthClient }

type tokens = testenv.Tokens

func (e *env) register(t *testing.T, server string) *client {
	t.Helper()
	c, err := testenv.RegisterClient(nil, e.public, server, map[string]any{
		"redirect_uris": []string{clientRedirect}, "client_name": "Test <Client>", "token_endpoint_auth_method": "none",
	})
	if err != nil {
		t.Fatal(err)
	}
	c.State = "st-123"
	return &client{c}
}

// client returns the client id of the gateway, not registered by the
// test (a metadata document's URL, a client of the config, a forged ID).
func (e *env) client(id string) *client {
	c := testenv.NewOAuthClient(e.public, id, clientRedirect)
	c.State = "st-123"
	return &client{c}
}

// on returns the same client, with the same browser, talking to the
// instance at public: a gateway of a cluster.
func (c *client) on(public string) *client {
	copied := *c.OAuthClient
	copied.Public = public
	return &client{&copied}
}

// authorize runs the browser part of the flow and returns the final redirect
// to the client. approve chooses the consent answer.
func (c *client) authorize(t *testing.T, server string, params url.Values, approve bool) *url.URL {
	t.Helper()
	back, err := c.Authorize(server, params, approve)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// answered fails t when the token endpoint could not be asked, and checks
// that its answer may not be cached.
func answered(t *testing.T, tok tokens, err error) tokens {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("token response Cache-Control = %q, want no-store", got)
	}
	return tok
}

func (c *client) token(t *testing.T, server string, form url.Values) tokens {
	t.Helper()
	tok, err := c.Token(server, form)
	return answered(t, tok, err)
}

// refresh redeems a refresh token at a server's token endpoint.
func (c *client) refresh(t *testing.T, server, refreshToken string) tokens {
	t.Helper()
	tok, err := c.Refresh(server, refreshToken)
	return answered(t, tok, err)
}

// login runs the whole flow for one server and returns its tokens.
func (c *client) login(t *testing.T, server, scope string) tokens {
	t.Helper()
	params := url.Values{}
	if scope != "" {
		params.Set("scope", scope)
	}
	tok, err := c.Login(server, params)
	answered(t, tok, err)
	if tok.RefreshToken == "" {
		t.Fatalf("the code exchange at %s answered no refresh token", server)
	}
	return tok
}

// callTool connects the official go-sdk client through the gateway with a
// bearer token and calls a tool.
func (e *env) callTool(t *testing.T, path, bearer, tool string, args any) (*mcp.CallToolResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	httpClient := &http.Client{Transport: &bearerTransport{token: bearer}}
	cl := mcp.NewClient(&mcp.Implementation{Name: "gateway-test", Version: "1"}, nil)
	session, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.public + path, HTTPClient: httpClient}, nil)
	if err != nil {
		return nil, err
	}
	defer session.Close()
	return session.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
}

type bearerTransport struct{ token string }

func (b *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func whoami(t *testing.T, res *mcp.CallToolResult) testenv.WhoAmI {
	t.Helper()
	var who testenv.WhoAmI
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, &who); err != nil {
		t.Fatalf("whoami result: %v", err)
	}
	return who
}

func TestServerPathsRequireAuthorization(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	for _, tc := range []struct{ path, scope string }{
		{"/support", "accounts.read tickets.read"},
		{"/ops/mcp", "admin.read tickets.write"},
	} {
		resp, err := http.Post(e.public+tc.path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s without token: status %d, want 401", tc.path, resp.StatusCode)
		}
		server := strings.SplitN(strings.TrimPrefix(tc.path, "/"), "/", 2)[0]
		want := `Bearer resource_metadata="` + e.public + `/.well-known/oauth-protected-resource/` + server + `", scope="` + tc.scope + `"`
		if got := resp.Header.Get("WWW-Authenticate"); got != want {
			t.Errorf("%s challenge\n got %s\nwant %s", tc.path, got, want)
		}
	}
	resp, err := http.Get(e.public + "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "next handler" {
		t.Errorf("a path outside the gateway got %q, want the next handler's answer", body)
	}
}

func TestSeedFlowBothServers(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	c := e.register(t, "support-assistant")

	support := c.login(t, "support-assistant", "tickets.read accounts.read")
	if support.Scope != "accounts.read tickets.read" {
		t.Errorf("support-assistant scope = %q", support.Scope)
	}
	ops := c.login(t, "ops-console", "tickets.write admin.read")
	if ops.Scope != "admin.read tickets.write" {
		t.Errorf("ops-console scope = %q", ops.Scope)
	}
	// A request outside the server's subset is narrowed, an empty one gets
	// the fallback.
	if got := c.login(t, "support-assistant", "admin.read tickets.read").Scope; got != "tickets.read" {
		t.Errorf("narrowed scope = %q, want tickets.read", got)
	}
	if got := c.login(t, "ops-console", "").Scope; got != "admin.read tickets.write" {
		t.Errorf("fallback scope = %q, want the server's subset", got)
	}
	if ids := slices.Compact(slices.Sorted(slices.Values(e.provider.ClientIDs()))); len(ids) != 1 || ids[0] != testenv.DefaultClientID {
		t.Errorf("the downstream provider saw client IDs %v, want only the gateway's", ids)
	}

	// The token swap: the upstream sees the provider's token, never the
	// gateway's.
	res, err := e.callTool(t, "/support", support.AccessToken, "whoami", map[string]any{})
	if err != nil {
		t.Fatalf("calling whoami through the gateway: %v", err)
	}
	who := whoami(t, res)
	if who.Server != "support-assistant" {
		t.Errorf("whoami answered from %q", who.Server)
	}
	// Headers built from the gateway's placeholders reach the upstream.
	if who.XHeaders["X-Mcp-User"] != testenv.DefaultUser().Subject || who.XHeaders["X-Mcp-Scopes"] != "accounts.read tickets.read" {
		t.Errorf("placeholder headers at the upstream: %v", who.XHeaders)
	}
	downstreamToken := strings.TrimPrefix(who.Authorization, "Bearer ")
	if downstreamToken == support.AccessToken || strings.Contains(who.Authorization, support.AccessToken) {
		t.Fatal("the gateway's own token reached the upstream")
	}
	info, ok := e.provider.TokenInfo(downstreamToken)
	if !ok {
		t.Fatalf("the upstream got %q, which the provider did not issue", who.Authorization)
	}
	if info.Subject != testenv.DefaultUser().Subject || !slices.Contains(info.Audience, "https://api.example.com") {
		t.Errorf("downstream token info = %+v", info)
	}

	// Tokens are bound to their server.
	if _, err := e.callTool(t, "/ops", support.AccessToken, "whoami", map[string]any{}); err == nil {
		t.Error("a support-assistant token was accepted by ops-console")
	}
	res, err = e.callTool(t, "/ops", ops.AccessToken, "whoami", map[string]any{})
	if err != nil {
		t.Fatalf("ops-console whoami: %v", err)
	}
	if who := whoami(t, res); who.Server != "ops-console" {
		t.Errorf("ops whoami answered from %q", who.Server)
	}
}

// progressCall is a stream_progress call through the gateway, made by the
// official Go SDK client.
type progressCall struct {
	progress chan float64 // each progress notification's value, as handled
	done     chan error   // the call's end: nil, or why it failed
}

// startProgressCall connects to the support server through transport and
// starts a stream_progress call with args. The call and its session end
// with ctx or the test.
func (e *env) startProgressCall(t *testing.T, ctx context.Context, transport http.RoundTripper, args map[string]any) *progressCall {
	t.Helper()
	pc := &progressCall{progress: make(chan float64, 128), done: make(chan error, 1)}
	cl := mcp.NewClient(&mcp.Implementation{Name: "progress-test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			pc.progress <- req.Params.Progress
		},
	})
	session, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.public + "/support", HTTPClient: &http.Client{Transport: transport}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { session.Close() })
	params := &mcp.CallToolParams{Name: "stream_progress", Arguments: args}
	params.SetProgressToken("p1")
	go func() {
		res, err := session.CallTool(ctx, params)
		if err == nil && res.IsError {
			err = fmt.Errorf("the tool answered an error: %v", res.Content)
		}
		pc.done <- err
	}()
	return pc
}

// next returns the next progress value, or fails t when the call ends or
// ctx does first.
func (pc *progressCall) next(t *testing.T, ctx context.Context) float64 {
	t.Helper()
	select {
	case v := <-pc.progress:
		return v
	case err := <-pc.done:
		pc.done <- err
		t.Fatalf("the call ended (%v) while a progress notification was awaited", err)
	case <-ctx.Done():
		t.Fatal("timed out waiting for a progress notification")
	}
	return 0
}

// finish waits for the call's end and for its first n progress
// notifications in all (the client may handle the last ones after the
// result), and returns the values received since the call began, less
// those taken with next before.
func (pc *progressCall) finish(t *testing.T, ctx context.Context, n int) ([]float64, error) {
	t.Helper()
	var (
		values []float64
		err    error
		ended  bool
	)
	for !ended || len(values) < n {
		select {
		case v := <-pc.progress:
			values = append(values, v)
		case err = <-pc.done:
			ended = true
		case <-ctx.Done():
			t.Fatalf("timed out: the call ended %v, with %d of %d progress notifications", ended, len(values), n)
		}
	}
	return values, err
}

// TestStreamingThroughGateway: progress notifications reach the client
// while the call is still running (held open by the server), which proves
// without timing that nothing on the way buffers the SSE stream.
func TestStreamingThroughGateway(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	c := e.register(t, "support-assistant")
	tok := c.login(t, "support-assistant", "")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call := e.startProgressCall(t, ctx, &bearerTransport{token: tok.AccessToken}, map[string]any{"count": 3, "interval_ms": 50, "hold": true})
	for want := 1.0; want <= 3; want++ {
		if got := call.next(t, ctx); got != want {
			t.Fatalf("progress %v, want %v", got, want)
		}
	}
}

// TestStreamResumesThroughGateway breaks a call's SSE stream midway and
// checks that the official Go SDK client resumes it through the gateway:
// the upstream receives the GET with Last-Event-ID, and the client gets
// every progress notification exactly once, then the result.
func TestStreamResumesThroughGateway(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{}, func(e *env) { e.supportConfig.Resumable = true })
	c := e.register(t, "support-assistant")
	tok := c.login(t, "support-assistant", "")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cutter := &cuttingTransport{bearer: tok.AccessToken, method: "tools/call", afterEvents: 2}
	call := e.startProgressCall(t, ctx, cutter, map[string]any{"count": 5, "interval_ms": 300})
	got, err := call.finish(t, ctx, 5)
	if err != nil {
		t.Fatalf("the call failed after its stream was cut: %v", err)
	}
	if !cutter.cut.Load() {
		t.Fatal("the stream was never cut: the test proved nothing")
	}
	if resumed := e.support.ResumedFrom(); len(resumed) == 0 {
		t.Fatal("no GET with Last-Event-ID reached the upstream: the gateway did not pass the resumption on")
	}
	if want := []float64{1, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("progress notifications %v, want %v: resumption lost or repeated events", got, want)
	}
}

// cuttingTransport sends each request with a bearer token, and breaks the
// response stream of the first request whose body is a method call once
// it has delivered afterEvents progress notifications, as a dropped
// connection would: the client sees an unexpected EOF, the server a closed
// connection.
type cuttingTransport struct {
	bearer      string
	method      string
	afterEvents int
	armed, cut  atomic.Bool
}

func (c *cuttingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+c.bearer)
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || !bytes.Contains(body, []byte(`"method":"`+c.method+`"`)) || !c.armed.CompareAndSwap(false, true) {
		return resp, err
	}
	resp.Body = &cutBody{ReadCloser: resp.Body, after: c.afterEvents, cut: &c.cut}
	return resp, nil
}

type cutBody struct {
	io.ReadCloser
	after, seen int
	cut         *atomic.Bool
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.seen >= b.after {
		b.ReadCloser.Close()
		b.cut.Store(true)
		return 0, io.ErrUnexpectedEOF
	}
	n, err := b.ReadCloser.Read(p)
	b.seen += bytes.Count(p[:n], []byte("notifications/progress"))
	return n, err
}

func TestReloadKeepsTokensAndAppliesNewScopes(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	c := e.register(t, "support-assistant")
	tok := c.login(t, "support-assistant", "")

	// POST a changed config to the admin API's /load.
	e.reload("tickets.read", "application/json")
	var prm struct {
		ScopesSupported []string `json:"scopes_supported"`
	}
	if _, err := testenv.GetJSON(e.public+"/.well-known/oauth-protected-resource/support", "", &prm); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(prm.ScopesSupported, []string{"tickets.read"}) {
		t.Errorf("after the reload the metadata offers %v, want [tickets.read]", prm.ScopesSupported)
	}
	// The token issued before the reload still works (same keys, same grant).
	if _, err := e.callTool(t, "/support", tok.AccessToken, "whoami", map[string]any{}); err != nil {
		t.Errorf("a token issued before the reload was refused: %v", err)
	}
	// And the refresh narrows to what the server offers now.
	ref := c.refresh(t, "support-assistant", tok.RefreshToken)
	if ref.Status != http.StatusOK || ref.Scope != "tickets.read" {
		t.Errorf("refresh after reload: %d %q %s", ref.Status, ref.Scope, ref.Description)
	}
}
