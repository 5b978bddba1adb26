package testenv

import (
	"fmt"
	"net"

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
	return caddy.Load(cfg, true)
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
