package e2e_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/gateway"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// childCaddyfileEnv names a Caddyfile the test binary runs instead of its
// tests: a second Caddy process, built from the same code, for the cluster
// tests.
const childCaddyfileEnv = "MCP_GATEWAY_TEST_CHILD_CADDYFILE"

func TestMain(m *testing.M) {
	if path := os.Getenv(childCaddyfileEnv); path != "" {
		os.Exit(runChildCaddy(path))
	}
	// After a config load the old server closes its kept-alive
	// connections, and may still take a new connection while it stops and
	// close it unanswered: a request sent on such a connection fails with
	// EOF or a reset, and Go resends only idempotent ones (MCP calls are
	// POSTs). Closing idle connections after a load is not enough either: a
	// connection still busy then (a session's DELETE, a stream's end) goes
	// back to the pool afterwards. So the tests' requests are sent again in
	// that one case (testenv.ResendAfterReload).
	http.DefaultTransport = testenv.ResendAfterReload(http.DefaultTransport)
	os.Exit(m.Run())
}

func runChildCaddy(path string) int {
	cfg, err := os.ReadFile(path)
	if err == nil {
		err = testenv.RunCaddyfile(cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child caddy:", err)
		return 1
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	<-stop
	_ = testenv.StopCaddy()
	return 0
}

// startChildCaddy runs caddyfile in a second process and waits until it
// serves probe.
func startChildCaddy(t *testing.T, caddyfile, probe string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childCaddyfileEnv+"="+path)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("second instance's log:\n%s", lastLines(logs.String(), 30))
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case err := <-exited:
			t.Fatalf("the second instance exited: %v\n%s", err, lastLines(logs.String(), 30))
		default:
		}
		if resp, err := http.Get(probe); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second instance did not come up\n%s", lastLines(logs.String(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := bytes.Split([]byte(s), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// TestRestartKeepsState stops Caddy and starts it again on the same
// storage: tokens issued before still verify, MCP sessions go on, refresh
// works, and the client is still registered.
func TestRestartKeepsState(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	c := e.register(t, "support-assistant")
	tok := c.login(t, "support-assistant", "")
	session := e.openSession(t, "/support", tok.AccessToken)
	if err := testenv.StopCaddy(); err != nil {
		t.Fatal(err)
	}
	e.load("tickets.read accounts.read")

	if status, _ := challengeOf(t, e.public+"/support", tok.AccessToken); status != http.StatusOK {
		t.Errorf("a token issued before the restart: %d", status)
	}
	// The session ID's MAC is checked with a key derived from the stored
	// sealing key: an MCP session goes on across the restart.
	if status, _, body := e.mcpRequest(t, http.MethodPost, "/support", tok.AccessToken, `{"jsonrpc":"2.0","id":9,"method":"ping"}`,
		http.Header{"Mcp-Session-Id": {session}}); status != http.StatusOK {
		t.Errorf("a session opened before the restart: %d %.200q", status, body)
	}
	ref := c.refresh(t, "support-assistant", tok.RefreshToken)
	if ref.Status != http.StatusOK {
		t.Errorf("refresh after the restart: %d %s", ref.Status, ref.Description)
	}
	// The client registered before the restart authorizes again, and the
	// remembered consent still holds (no consent page).
	page := c.begin(t, "support-assistant", url.Values{"code_challenge": {pkceChallenge(t)}, "code_challenge_method": {"S256"}})
	if page.Form("consent") != nil {
		t.Error("after the restart the consent page asked again")
	}
	if page = mustAnswer(t, c, page, true); page.URL.Query().Get("code") == "" {
		t.Errorf("after the restart the registered client got %s (status %d)", page.URL, page.Status)
	}
}

func pkceChallenge(t *testing.T) string {
	t.Helper()
	_, challenge := testenv.PKCE()
	return challenge
}

// clusterCaddyfile is one instance of a two-instance cluster: both share
// the public URL (a load balancer's) and the storage.
const clusterCaddyfile = `{
	admin %[1]s
	persist_config off
	%[2]s
}

http://%[3]s {
	mcp_gateway {
		public_url %[4]s
		refresh_grace 1s
		gateway acme {
			authorization_server %[5]s
			client_id mcp-gateway
			client_secret demo-secret
			resource https://api.example.com
			scopes tickets.read tickets.write accounts.read admin.read
		}
		server support-assistant /support {
			scopes tickets.read accounts.read
			reverse_proxy %[6]s
		}
	}
}
`

// TestTwoInstancesShareState runs two Caddy processes on one storage (the
// file system, then Redis): a code is single use across both, tokens and
// refresh families work on either, and a reused refresh token is refused
// by both.
func TestTwoInstancesShareState(t *testing.T) {
	t.Run("file storage", func(t *testing.T) {
		testTwoInstances(t, "storage file_system "+t.TempDir())
	})
	t.Run("redis storage", func(t *testing.T) {
		_, storage := startRedis(t)
		testTwoInstances(t, storage)
	})
}

// startRedis starts a redis-server for the test and returns it with the
// storage directive that points Caddy at it.
func startRedis(t *testing.T) (*testenv.RedisServer, string) {
	t.Helper()
	redis, err := testenv.StartRedis()
	if errors.Is(err, testenv.ErrNoRedis) {
		t.Fatal("redis-server is not installed: apt-get install redis-server (bash .ci/run installs it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { redis.Close() })
	return redis, "storage mcp_gateway_test_redis {\n\t\taddress " + redis.Addr + "\n\t}"
}

// cluster is two Caddy instances of one gateway on one storage, behind
// one public URL: A runs in this process, B in a child process.
type cluster struct {
	public         string // the load balancer's URL: A's
	a, b           string // each instance's own URL
	adminA, adminB string // each instance's admin address
	provider       *testenv.Provider
}

// startCluster starts the downstream provider, the support-assistant MCP
// server and both instances, all stopped when the test ends.
func startCluster(t *testing.T, storage string, providerCfg testenv.ProviderConfig) *cluster {
	t.Helper()
	addrA, _ := testenv.FreeAddr()
	addrB, _ := testenv.FreeAddr()
	cl := &cluster{public: "http://" + addrA, a: "http://" + addrA, b: "http://" + addrB}
	providerCfg.Addr = "127.0.0.1:0"
	providerCfg.RedirectURIs = []string{cl.public + "/oauth/callback"}
	var err error
	if cl.provider, err = testenv.StartProvider(providerCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.provider.Close() })
	upstream, err := testenv.StartMCPServer(testenv.MCPServerConfig{Name: "support-assistant"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { upstream.Close() })
	// Chosen last: a port freed by FreeAddr can be handed to the servers
	// started since, which listen on any free port.
	cl.adminA, _ = testenv.FreeAddr()
	cl.adminB, _ = testenv.FreeAddr()
	config := func(admin, addr string) string {
		return fmt.Sprintf(clusterCaddyfile, admin, storage, addr, cl.public, cl.provider.Issuer(), testenv.HostOf(upstream.URL()))
	}
	if err := testenv.RunCaddyfile([]byte(config(cl.adminA, addrA))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testenv.StopCaddy() })
	startChildCaddy(t, config(cl.adminB, addrB), cl.b+"/.well-known/oauth-protected-resource/support")
	return cl
}

func testTwoInstances(t *testing.T, storage string) {
	// Downstream tokens live 4s, so the broker refreshes them after 2s.
	cl := startCluster(t, storage, testenv.ProviderConfig{AccessTokenTTL: 4 * time.Second})
	provider, public := cl.provider, cl.public
	addrA, addrB := testenv.HostOf(cl.a), testenv.HostOf(cl.b)

	// A client registered through B is known to A, which the browser uses.
	e := &env{t: t, public: "http://" + addrB}
	c := e.register(t, "support-assistant")
	onA, onB := c.on(public), c.on("http://"+addrB)

	// A code issued by A is redeemed on B once, and then refused on A.
	code, verifier := onA.code(t, "support-assistant", nil)
	tok := onB.redeem(t, "support-assistant", code, verifier)
	if tok.Status != http.StatusOK {
		t.Fatalf("redeeming A's code on B: %d %s", tok.Status, tok.Description)
	}
	wantTokenError(t, onA.redeem(t, "support-assistant", code, verifier), http.StatusBadRequest, "invalid_grant")

	// A token issued by A works on both instances.
	fresh := onA.login(t, "support-assistant", "")
	for _, addr := range []string{addrA, addrB} {
		if status, _ := challengeOf(t, "http://"+addr+"/support", fresh.AccessToken); status != http.StatusOK {
			t.Errorf("a token from A on %s: %d", addr, status)
		}
	}

	// A family started on A refreshes on B; the old refresh token is then
	// refused on both once the grace window has passed.
	refresh := func(on *client, token string) tokens {
		return on.refresh(t, "support-assistant", token)
	}
	next := refresh(onB, fresh.RefreshToken)
	if next.Status != http.StatusOK {
		t.Fatalf("refreshing A's family on B: %d %s", next.Status, next.Description)
	}
	if status, _ := challengeOf(t, "http://"+addrB+"/support", next.AccessToken); status != http.StatusOK {
		t.Fatalf("B's fresh access token on B: %d", status)
	}
	time.Sleep(1200 * time.Millisecond)
	wantTokenError(t, refresh(onA, fresh.RefreshToken), http.StatusBadRequest, "invalid_grant")
	wantTokenError(t, refresh(onB, next.RefreshToken), http.StatusBadRequest, "invalid_grant")

	// The reuse was detected on A; B, which verified the family's access
	// token before and holds it in its cache, refuses it once it has read
	// A's revocation (it polls every few seconds).
	waitUntil(t, 3*gateway.PollInterval, "B refuses an access token of a family A revoked", func() error {
		if status, _ := challengeOf(t, "http://"+addrB+"/support", next.AccessToken); status != http.StatusUnauthorized {
			return fmt.Errorf("B answers %d", status)
		}
		return nil
	})

	// Calls on both instances at once, when the user's downstream token is
	// due, cause one downstream refresh between them: the storage lock
	// serialises the instances, and the one that waited finds the token
	// already refreshed.
	again := onA.login(t, "support-assistant", "")
	time.Sleep(2500 * time.Millisecond)
	before := provider.RefreshCount()
	var wg sync.WaitGroup
	for i := range 16 {
		addr := []string{addrA, addrB}[i%2]
		wg.Go(func() {
			if status, _ := challengeOf(t, "http://"+addr+"/support", again.AccessToken); status != http.StatusOK {
				t.Errorf("a call on %s across the downstream expiry: %d", addr, status)
			}
		})
	}
	wg.Wait()
	if n := provider.RefreshCount() - before; n != 1 {
		t.Errorf("16 calls on two instances caused %d downstream refreshes, want 1", n)
	}
}
