// Package e2e holds the end-to-end tests of the gateway: each starts the
// real mcp_gateway module inside real Caddy in the test process, in front
// of the real OpenID provider and MCP servers of internal/testenv, and
// drives it over HTTP the way clients and browsers do. The attack suite
// (attacks*_test.go) is here, one subtest per attack of SECURITY.md.
//
// The helpers the tests share (startEnv, register, login, callTool,
// challengeOf, ...) are in gateway_test.go.
package e2e
