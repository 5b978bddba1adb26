package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/certmagic"
	"github.com/spf13/cobra"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// The commands' tests run Caddy with a gateway whose provider and MCP
// server do not exist: the admin API's gateway listing, grants, clients and
// keys never contact them. The grants and clients are seeded into the
// gateway's storage as the gateway itself stores them.

// commandSite is one site of commandCaddyfile: a gateway acme with a
// server.
const commandSite = `
http://%[1]s {
	mcp_gateway {
		public_url http://%[1]s
		gateway acme {
			authorization_server http://127.0.0.1:9/provider
			client_id mcp-gateway
			client_secret not-used-here
			scopes tickets.read tickets.write
		}
		server support-assistant /support {
			gateway acme
			scopes tickets.read
			reverse_proxy 127.0.0.1:9
		}
	}
}
`

// commandCaddy is Caddy running in this process for the commands.
type commandCaddy struct {
	admin, storage, caddyfile string
	sites                     []string // host:port of each site
}

// startCommandCaddy runs a config with the admin endpoint at admin (a
// free port if empty) and sites sites, each on a free port.
func startCommandCaddy(t *testing.T, sites int, admin string) *commandCaddy {
	t.Helper()
	if admin == "" {
		admin = freeAddr(t)
	}
	c := &commandCaddy{admin: admin, storage: t.TempDir()}
	config := fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n\tstorage file_system %s\n}\n", c.admin, c.storage)
	for range sites {
		site := freeAddr(t)
		c.sites = append(c.sites, site)
		config += fmt.Sprintf(commandSite, site)
	}
	c.caddyfile = filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(c.caddyfile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(config), map[string]any{"filename": c.caddyfile})
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(adapted, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return c
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// mcpGateway runs `caddy mcp-gateway args...` as registered with Caddy's
// command line, and returns what it printed.
func mcpGateway(t *testing.T, args ...string) (string, error) {
	t.Helper()
	registered, ok := caddycmd.Commands()["mcp-gateway"]
	if !ok {
		t.Fatal("no mcp-gateway command is registered")
	}
	cmd := &cobra.Command{Use: registered.Name, SilenceUsage: true, SilenceErrors: true}
	registered.CobraFunc(cmd)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

// mustRun is mcpGateway, failing the test on an error.
func (c *commandCaddy) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := mcpGateway(t, append(args, "--address", c.admin)...)
	if err != nil {
		t.Fatalf("caddy mcp-gateway %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// mustJSON runs a command with --json and decodes what it printed.
func (c *commandCaddy) mustJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := c.mustRun(t, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("caddy mcp-gateway %s --json printed what is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// wantError runs a command that must fail with an error containing want.
func (c *commandCaddy) wantError(t *testing.T, want string, args ...string) {
	t.Helper()
	out, err := mcpGateway(t, append(args, "--address", c.admin)...)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("caddy mcp-gateway %s: %v (printed %q), want an error with %q", strings.Join(args, " "), err, out, want)
	}
}

// wantTable checks a table's header and that each row holds its cells in
// order, aligned under the header.
func wantTable(t *testing.T, out string, header []string, rows ...[]string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(rows)+1 {
		t.Fatalf("a table of %d rows, want %d:\n%s", len(lines)-1, len(rows), out)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != strings.Join(header, " ") {
		t.Fatalf("header %q, want %q:\n%s", lines[0], header, out)
	}
	for i, row := range rows {
		at := 0
		for _, cell := range row {
			j := strings.Index(lines[i+1][at:], cell)
			if j < 0 {
				t.Fatalf("row %d lacks %q after column %d:\n%s", i+1, cell, at, out)
			}
			at += j + len(cell)
		}
	}
	// Aligned: the second column starts at the same place on every line.
	second := regexp.MustCompile(`^\S*\s+`)
	width := len(second.FindString(lines[0]))
	for _, line := range lines[1:] {
		if w := len(second.FindString(line)); w != width && !strings.HasPrefix(line, " ") {
			t.Fatalf("the columns are not aligned:\n%s", out)
		}
	}
}

type gatewayListing []struct {
	Name          string
	QualifiedName string `json:"qualified_name"`
	Storage       string
	Servers       []struct{ Name, Path string }
}

type keyListing struct {
	Kid  string
	Keys []struct {
		Kid       string
		Signing   bool
		RetiresAt time.Time `json:"retires_at"`
	}
}

type grantListing struct {
	Grants []struct {
		ID, User, Server string
		ClientID         string `json:"client_id"`
		Revoked          bool
	}
	Next string
}

// TestCommand runs every command of `caddy mcp-gateway` against a running
// Caddy: tables and JSON, the gateway's keys rotated, grants listed page by
// page and revoked, clients listed and deleted, and the errors of an
// unknown gateway, grant or client.
func TestCommand(t *testing.T) {
	c := startCommandCaddy(t, 1, "")
	public := "http://" + c.sites[0]
	ctx := context.Background()

	// The signing keys; listing them opens the gateway's storage.
	var keys keyListing
	c.mustJSON(t, &keys, "keys", "list", "acme")
	if len(keys.Keys) != 1 || !keys.Keys[0].Signing || keys.Keys[0].Kid == "" {
		t.Fatalf("keys: %+v", keys)
	}
	before := keys.Keys[0].Kid
	wantTable(t, c.mustRun(t, "keys", "list", "acme"), []string{"KID", "CREATED", "RETIRES", "SIGNING"}, []string{before, "-", "yes"})

	var gateways gatewayListing
	c.mustJSON(t, &gateways, "gateways")
	if len(gateways) != 1 || gateways[0].Name != "acme" || gateways[0].Storage == "" || len(gateways[0].Servers) != 1 {
		t.Fatalf("gateways: %+v", gateways)
	}
	wantTable(t, c.mustRun(t, "gateways"), []string{"GATEWAY", "PUBLIC", "URL", "SERVER", "PATH", "SCOPES"},
		[]string{"acme", public, "support-assistant", "/support", "tickets.read"})

	// The admin endpoint from the config file, as `caddy reload` finds it.
	out, err := mcpGateway(t, "gateways", "--config", c.caddyfile)
	if err != nil || !strings.Contains(out, "support-assistant") {
		t.Fatalf("gateways --config %s: %v\n%s", c.caddyfile, err, out)
	}

	// Seed what users and clients leave in the gateway's storage.
	storage := &certmagic.FileStorage{Path: c.storage}
	prefix := gateways[0].Storage
	key, err := store.LoadOrCreateKey(ctx, storage, prefix+"/encryption_key")
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	ledger := grants.NewLedger(storage, prefix, sealer, nil)
	for _, client := range []*grants.Client{
		{ID: "client-a", Name: "Claude", RedirectURIs: []string{"http://127.0.0.1:33418/callback"}},
		// A name chosen to break the table and colour the terminal.
		{ID: "client-b", Name: "evil\tname\x1b[31m\nsecond line", RedirectURIs: []string{"https://b.example/cb"}},
	} {
		client.TokenEndpointAuthMethod, client.Source, client.CreatedAt = "none", grants.SourceRegistered, time.Now()
		if err := ledger.SaveClient(ctx, client); err != nil {
			t.Fatal(err)
		}
	}
	seeded := map[string]string{} // user/client → grant ID
	for _, g := range []struct{ user, client string }{{"alice", "client-a"}, {"alice", "client-b"}, {"bob", "client-a"}} {
		f := &grants.Family{User: g.user, ClientID: g.client, Server: "support-assistant", Scopes: "tickets.read", ExpiresAt: time.Now().Add(24 * time.Hour)}
		if _, err := ledger.StartFamily(ctx, f); err != nil {
			t.Fatal(err)
		}
		if err := ledger.SaveConsent(ctx, &grants.Consent{User: g.user, ClientID: g.client, Server: "support-assistant", Scopes: "tickets.read"}); err != nil {
			t.Fatal(err)
		}
		seeded[g.user+"/"+g.client] = f.ID
	}

	t.Run("keys rotate", func(t *testing.T) {
		out := c.mustRun(t, "keys", "rotate", "acme")
		var after keyListing
		c.mustJSON(t, &after, "keys", "list", "acme")
		if len(after.Keys) != 2 || !after.Keys[0].Signing || after.Keys[0].Kid == before || after.Keys[1].Kid != before ||
			after.Keys[1].Signing || after.Keys[1].RetiresAt.IsZero() {
			t.Fatalf("keys after the rotation: %+v", after)
		}
		if !strings.HasPrefix(out, "Signing with the new key "+after.Keys[0].Kid+";") {
			t.Fatalf("keys rotate printed %q", out)
		}
		wantTable(t, strings.SplitN(out, "\n", 2)[1], []string{"KID", "CREATED", "RETIRES", "SIGNING"},
			[]string{after.Keys[0].Kid, "-", "yes"}, []string{before, "Z", "Z", "-"})
		// The gateway publishes and signs with the new key.
		resp, err := http.Get(public + "/oauth/support-assistant/jwks")
		if err != nil {
			t.Fatal(err)
		}
		jwks, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(jwks), after.Keys[0].Kid) {
			t.Fatalf("the JWKS lacks the new key: %s", jwks)
		}
		var rotated keyListing
		c.mustJSON(t, &rotated, "keys", "rotate", "acme")
		if rotated.Kid == "" || rotated.Kid == after.Keys[0].Kid || rotated.Keys[0].Kid != rotated.Kid {
			t.Fatalf("keys rotate --json: %+v", rotated)
		}
	})

	t.Run("grants list", func(t *testing.T) {
		header := []string{"GRANT", "USER", "CLIENT", "SERVER", "SCOPES", "CREATED", "LAST", "USED", "EXPIRES"}
		var alice grantListing
		c.mustJSON(t, &alice, "grants", "list", "--user", "alice")
		if len(alice.Grants) != 2 {
			t.Fatalf("alice's grants: %+v", alice)
		}
		var rows [][]string
		for _, g := range alice.Grants {
			if g.ID != seeded["alice/"+g.ClientID] {
				t.Fatalf("alice's grants: %+v", alice)
			}
			rows = append(rows, []string{g.ID, "alice", g.ClientID, "support-assistant", "tickets.read", "Z", "Z", "Z"})
		}
		wantTable(t, c.mustRun(t, "grants", "list", "--user", "alice"), header, rows...)

		var all grantListing
		c.mustJSON(t, &all, "grants", "list")
		if len(all.Grants) != 3 || all.Next != "" {
			t.Fatalf("all grants: %+v", all)
		}
		var first, rest grantListing
		c.mustJSON(t, &first, "grants", "list", "--limit", "2")
		if len(first.Grants) != 2 || first.Next == "" {
			t.Fatalf("--limit 2: %+v", first)
		}
		c.mustJSON(t, &rest, "grants", "list", "--after", first.Next)
		if len(rest.Grants) != 1 || rest.Next != "" || rest.Grants[0].ID == first.Grants[0].ID || rest.Grants[0].ID == first.Grants[1].ID {
			t.Fatalf("--after %s: %+v", first.Next, rest)
		}
		if out := c.mustRun(t, "grants", "list", "--limit", "1"); !strings.Contains(out, "More grants follow") {
			t.Fatalf("a listing cut by --limit does not say so:\n%s", out)
		}
		if out := c.mustRun(t, "grants", "list", "--user", "carol"); out != "No grants.\n" {
			t.Fatalf("no grants: %q", out)
		}
	})

	t.Run("grants revoke", func(t *testing.T) {
		id := seeded["alice/client-a"]
		out := c.mustRun(t, "grants", "revoke", id)
		if out != "Revoked 1 grant and forgot 1 consent.\n  "+id+"\n" {
			t.Fatalf("grants revoke %s printed %q", id, out)
		}
		var answer struct {
			Revoked           []string
			ConsentsForgotten int `json:"consents_forgotten"`
		}
		c.mustJSON(t, &answer, "grants", "revoke", "--user", "bob")
		if len(answer.Revoked) != 1 || answer.Revoked[0] != seeded["bob/client-a"] || answer.ConsentsForgotten != 1 {
			t.Fatalf("grants revoke --user bob --json: %+v", answer)
		}
		var live grantListing
		c.mustJSON(t, &live, "grants", "list")
		if len(live.Grants) != 1 || live.Grants[0].ID != seeded["alice/client-b"] {
			t.Fatalf("the live grants after two revocations: %+v", live)
		}
		wantTable(t, c.mustRun(t, "grants", "list", "--revoked", "--client", "client-a"),
			[]string{"GRANT", "USER", "CLIENT", "SERVER", "SCOPES", "CREATED", "LAST", "USED", "EXPIRES", "REVOKED"},
			[]string{"client-a", "revoked by an operator"}, []string{"client-a", "revoked by an operator"})

		c.wantError(t, `no grant "no-such-grant"`, "grants", "revoke", "no-such-grant")
		c.wantError(t, "name the grants to revoke", "grants", "revoke")
		c.wantError(t, "name the grants to revoke", "grants", "revoke", id, "--user", "alice")
	})

	t.Run("clients", func(t *testing.T) {
		out := c.mustRun(t, "clients", "list")
		if strings.Contains(out, "\x1b") || strings.Count(out, "\n") != 3 {
			t.Fatalf("a client's name broke the table:\n%q", out)
		}
		wantTable(t, out, []string{"CLIENT", "NAME", "AUTH", "METHOD", "CREATED", "REDIRECT", "URIS"},
			[]string{"client-a", "Claude", "none", "Z", "http://127.0.0.1:33418/callback"},
			[]string{"client-b", "evil\uFFFDname\uFFFD[31m\uFFFDsecond line", "none", "Z", "https://b.example/cb"})
		var listed struct {
			Clients []struct {
				ID   string `json:"client_id"`
				Name string `json:"client_name"`
			}
		}
		c.mustJSON(t, &listed, "clients", "list")
		if len(listed.Clients) != 2 || listed.Clients[1].Name != "evil\tname\x1b[31m\nsecond line" {
			t.Fatalf("clients list --json: %+v", listed)
		}

		out = c.mustRun(t, "clients", "delete", "client-b")
		if out != "Deleted client client-b and revoked its 1 grant.\n  "+seeded["alice/client-b"]+"\n" {
			t.Fatalf("clients delete printed %q", out)
		}
		if out := c.mustRun(t, "clients", "list"); !strings.Contains(out, "client-a") || strings.Contains(out, "client-b") {
			t.Fatalf("clients after the deletion:\n%s", out)
		}
		if out := c.mustRun(t, "grants", "list"); out != "No grants.\n" {
			t.Fatalf("grants after the deletion:\n%s", out)
		}
		c.wantError(t, `no registered client "client-b"`, "clients", "delete", "client-b")
	})

	t.Run("unknown gateway", func(t *testing.T) {
		const want = `no gateway "nope" is running in this config`
		c.wantError(t, want, "keys", "list", "nope")
		c.wantError(t, want, "keys", "rotate", "nope")
		c.wantError(t, want, "grants", "list", "--gateway", "nope")
		c.wantError(t, want, "grants", "revoke", "--gateway", "nope", "--user", "alice")
		c.wantError(t, want, "clients", "list", "--gateway", "nope")
		c.wantError(t, want, "clients", "delete", "--gateway", "nope", "client-a")
	})
}

// TestCommandUnreachable names an admin endpoint that nothing listens on.
func TestCommandUnreachable(t *testing.T) {
	addr := freeAddr(t)
	for _, args := range [][]string{{"gateways"}, {"grants", "list"}, {"keys", "rotate", "acme"}} {
		_, err := mcpGateway(t, append(args, "--address", addr)...)
		want := "cannot reach Caddy's admin API at " + addr + ": is Caddy running? use --address"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// TestCommandAmbiguousGateway runs two sites, each with a gateway acme: the
// commands ask for --gateway, refuse the plain name with the qualified
// names to choose from, and accept a qualified one.
func TestCommandAmbiguousGateway(t *testing.T) {
	c := startCommandCaddy(t, 2, "")
	one, two := "acme@"+c.sites[0], "acme@"+c.sites[1]
	out := c.mustRun(t, "gateways")
	if !strings.Contains(out, one) || !strings.Contains(out, two) {
		t.Fatalf("the gateways table does not name the two gateways apart:\n%s", out)
	}
	c.wantError(t, "2 gateways are running", "grants", "list")
	for _, args := range [][]string{{"grants", "list", "--gateway", "acme"}, {"keys", "list", "acme"}} {
		_, err := mcpGateway(t, append(args, "--address", c.admin)...)
		if err == nil || !strings.Contains(err.Error(), "ambiguous") || !strings.Contains(err.Error(), one) || !strings.Contains(err.Error(), two) ||
			!strings.Contains(err.Error(), "HTTP 409") {
			t.Errorf("%s: %v, want a 409 naming %s and %s", args, err, one, two)
		}
	}
	if out := c.mustRun(t, "grants", "list", "--gateway", two); out != "No grants.\n" {
		t.Fatalf("grants list --gateway %s: %q", two, out)
	}
}

// TestCommandUnixSocket reaches an admin endpoint on a Unix socket, named
// as in the admin option.
func TestCommandUnixSocket(t *testing.T) {
	c := startCommandCaddy(t, 1, "unix/"+filepath.Join(t.TempDir(), "admin.sock"))
	wantTable(t, c.mustRun(t, "keys", "list", "acme"), []string{"KID", "CREATED", "RETIRES", "SIGNING"}, []string{"-", "yes"})
	// And found in the config file.
	out, err := mcpGateway(t, "gateways", "--config", c.caddyfile)
	if err != nil || !strings.Contains(out, "support-assistant") {
		t.Fatalf("gateways --config %s: %v\n%s", c.caddyfile, err, out)
	}
}
