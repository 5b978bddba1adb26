package caddymodule

import "github.com/caddy-mcp-gateway/caddy-mcp-gateway/gateway"

// PollInterval is how often an instance reads the revocations and signing
// keys other instances wrote, for the tests that wait on it.
const PollInterval = gateway.PollInterval
