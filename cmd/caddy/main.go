// Command caddy is Caddy with its standard modules and the mcp_gateway
// handler, so the gateway runs with `go run ./cmd/caddy run --config
// Caddyfile` without building a custom binary with xcaddy first.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-mcp-gateway/caddy-mcp-gateway/caddymodule"
)

func main() {
	caddycmd.Main()
}
