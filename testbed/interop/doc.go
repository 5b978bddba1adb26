// Package interop holds the tests that put real MCP clients in front of the
// gateway: the official TypeScript SDK with its own OAuth client, the MCP
// conformance suite (its authorization-server and server scenarios), scripted
// clients with the quirks real clients have, and headless Chromium on the
// consent and connected-apps pages.
//
// The Go tests start the gateway the way the demo does (a real OpenID
// provider, the MCP servers of internal/testenv and Caddy in the test
// process) and run the Node.js programs of this folder against it. The
// Node.js packages are pinned in package.json and package-lock.json; install
// them, from the repository root, with
//
//	npm ci --prefix testbed/interop
//
// and Chromium from Debian's package chromium. .ci/run does both.
package interop
