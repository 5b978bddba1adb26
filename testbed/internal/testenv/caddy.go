package testenv

import (
	"fmt"
	"net"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	// The Caddyfile adapter and the standard modules (reverse_proxy, the
	// file storage) that the gateway's configs use.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-mcp-gateway/caddy-mcp-gateway/caddymodule"
)

// AdaptCaddyfile turns a Caddyfile into Caddy's JSON config, as
// `caddy adapt` does.
func AdaptCaddyfile(caddyfile []byte) ([]byte, error) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		return nil, fmt.Errorf("the caddyfile adapter is not registered")
	}
	cfg, _, err := adapter.Adapt(caddyfile, map[string]any{"filename": "Caddyfile"})
	return cfg, err
}

// RunCaddyfile adapts a Caddyfile and runs it in this process, replacing any
// config already running (like the admin API's /load).
func RunCaddyfile(caddyfile []byte) error {
	cfg, err := AdaptCaddyfile(caddyfile)
	if err != nil {
		return err
	}
	if err := caddy.Load(cfg, true); err != nil {
		return err
	}
	ForgetConnections()
	return nil
}

// ForgetConnections closes the idle kept-alive connections of this
// process's default HTTP transport (which Browser and the tests' clients
// use). After a config load, a request on such a connection would still be
// served by the old config's server, or meet that server closing the
// connection under it; a new connection reaches the new config, as a
// client that connects afresh would.
func ForgetConnections() {
	if t, ok := http.DefaultTransport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// StopCaddy stops the config running in this process.
func StopCaddy() error {
	return caddy.Stop()
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago, for servers that must be told their address before they start.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
