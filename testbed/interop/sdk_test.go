package interop_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// sdkSteps are the steps sdk-client.mjs must report; a script that stopped
// early or skipped one fails the test.
var sdkSteps = []string{
	"an unauthenticated request gets 401 with the resource metadata URL",
	"support-assistant: discovery, registration, PKCE authorization, token exchange",
	"support-assistant: tools/list",
	"support-assistant: tools/call whoami gets the provider's token upstream, never the gateway's",
	"support-assistant: tools/call list_tickets",
	"support-assistant: stream_progress streams each progress notification before the result",
	"support-assistant: a held stream delivers every notification while the call is still open",
	"ops-console: a second server in the same browser session",
	"the two servers' tokens are not interchangeable",
	"an expired access token is refreshed by the SDK on the 401 and the call goes through",
	"two concurrent refreshes with the same refresh token both succeed (grace window)",
	"revocation ends the grant; the SDK then asks for a new authorization",
}

// TestTypeScriptSDKClient runs the official TypeScript SDK's client, with
// the SDK's own OAuth client, through the whole life of a grant on both
// servers: discovery from the 401, registration, PKCE authorization, token
// exchange, tools on both servers, streaming, a refresh when the access
// token expires, racing refreshes and revocation.
func TestTypeScriptSDKClient(t *testing.T) {
	requireModule(t, "@modelcontextprotocol/sdk")
	// A short access token lifetime: the refresh step waits for it to pass.
	g := startGateway(t, gatewayOptions{handler: "access_token_lifetime 3s"})
	out := runNode(t, 2*time.Minute, nil, "sdk-client.mjs", g.public, "3")

	var summary struct{ Passed []string }
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "SUMMARY "); ok {
			if err := json.Unmarshal([]byte(rest), &summary); err != nil {
				t.Fatalf("summary line %q: %v", rest, err)
			}
		}
	}
	for _, s := range sdkSteps {
		if !slices.Contains(summary.Passed, s) {
			t.Errorf("sdk-client.mjs did not pass %q\n%s", s, out)
		}
	}
	if len(summary.Passed) != len(sdkSteps) {
		t.Errorf("sdk-client.mjs passed %d steps, the test knows %d", len(summary.Passed), len(sdkSteps))
	}
	t.Logf("TypeScript SDK client:\n%s", out)

	// Only the gateway's client ID ever reached the provider.
	if ids := g.provider.ClientIDs(); !slices.Equal(slices.Compact(slices.Sorted(slices.Values(ids))), []string{testenv.DefaultClientID}) {
		t.Errorf("the provider saw client IDs %v", ids)
	}
}
