// Command demo runs the whole gateway on this machine: a real OpenID
// provider as the downstream authorization server, two MCP servers
// (support-assistant and ops-console) built with the official Go SDK, and
// Caddy with the mcp_gateway handler configured by Caddyfile.example. Every
// part listens on 127.0.0.1. Run it from the repository root, where
// Caddyfile.example is:
//
//	go run ./testbed/cmd/demo [-listen 127.0.0.1:8080]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address the gateway listens on")
	providerAddr := flag.String("provider", "127.0.0.1:9000", "address of the demo identity provider")
	caddyfile := flag.String("config", "Caddyfile.example", "the Caddyfile to run")
	storage := flag.String("storage", filepath.Join(os.TempDir(), "mcp-gateway-demo"), "directory of the gateway's state")
	flag.Parse()
	if err := run(*listen, *providerAddr, *caddyfile, *storage); err != nil {
		log.Fatal(err)
	}
}

func run(listen, providerAddr, caddyfilePath, storage string) error {
	public := "http://" + listen
	provider, err := testenv.StartProvider(testenv.ProviderConfig{
		Addr:         providerAddr,
		RedirectURIs: []string{public + "/oauth/callback"},
	})
	if err != nil {
		return fmt.Errorf("starting the demo identity provider: %w", err)
	}
	defer provider.Close()
	support, err := testenv.StartMCPServer(testenv.MCPServerConfig{Name: testenv.SupportAssistant})
	if err != nil {
		return err
	}
	defer support.Close()
	ops, err := testenv.StartMCPServer(testenv.MCPServerConfig{Name: testenv.OpsConsole})
	if err != nil {
		return err
	}
	defer ops.Close()

	// Caddyfile.example reads these; a real deployment sets them itself.
	for k, v := range map[string]string{
		"MCP_GATEWAY_SITE":       public,
		"MCP_GATEWAY_PUBLIC_URL": public,
		"MCP_GATEWAY_ADMIN":      "127.0.0.1:2019",
		"ACME_ISSUER":            provider.Issuer(),
		"ACME_CLIENT_ID":         testenv.DefaultClientID,
		"ACME_CLIENT_SECRET":     testenv.DefaultClientSecret,
		"SUPPORT_UPSTREAM":       hostOf(support.URL()),
		"OPS_UPSTREAM":           hostOf(ops.URL()),
	} {
		os.Setenv(k, v)
	}
	src, err := os.ReadFile(caddyfilePath)
	if err != nil {
		return fmt.Errorf("reading %s (run the demo from the repository root): %w", caddyfilePath, err)
	}
	// Keep the demo's state in its own folder, and its config out of
	// Caddy's autosave: add both to the Caddyfile's global options block.
	src = bytes.Replace(src, []byte("{\n"), []byte("{\n\tstorage file_system "+storage+"\n\tpersist_config off\n"), 1)
	if err := testenv.RunCaddyfile(src); err != nil {
		return fmt.Errorf("starting Caddy: %w", err)
	}
	defer testenv.StopCaddy()

	fmt.Printf(`
caddy-mcp-gateway demo is running.

  MCP servers (one shared gateway "acme"):
    support-assistant  %[1]s/support   scopes: tickets.read accounts.read
    ops-console        %[1]s/ops       scopes: tickets.write admin.read

  Tools with scopes of their own (Caddyfile.example): list_tickets needs
  tickets.read, restart_service admin.read and tickets.write. A client
  authorized for less does not see them, and calling one answers 403 with
  the scopes to authorize for.

  Identity provider:   %[2]s   (user "demo", password "demo", prefilled)

Connect a client:
  MCP Inspector:  npx @modelcontextprotocol/inspector
                  Transport "Streamable HTTP", URL %[1]s/support, then "Connect".
  Claude Code:    claude mcp add --transport http support %[1]s/support
  VS Code:        add {"servers":{"support":{"type":"http","url":"%[1]s/support"}}} to .vscode/mcp.json
  Cursor:         add {"mcpServers":{"support":{"url":"%[1]s/support"}}} to ~/.cursor/mcp.json

Approve the consent page, sign in as the demo user, and call whoami: it shows
the provider's token reached the MCP server, not the gateway's. Ctrl-C stops.
`, public, provider.Issuer())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Println("\nstopping")
	return nil
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	return u.Host
}
