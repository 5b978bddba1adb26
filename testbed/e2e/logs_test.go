package e2e_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestNoSecretsInLogs runs a whole flow with every log at DEBUG level into a
// file and searches it for each secret the flow handled.
func TestNoSecretsInLogs(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	e := startEnv(t, testenv.ProviderConfig{}, withGlobal("log {\n\t\toutput file "+logFile+"\n\t\tlevel DEBUG\n\t}"))
	c := e.register(t, "support-assistant")
	code, verifier := c.code(t, "support-assistant", nil)
	tok := c.redeem(t, "support-assistant", code, verifier)
	if tok.Status != http.StatusOK {
		t.Fatalf("token: %d %s", tok.Status, tok.Description)
	}
	res, err := e.callTool(t, "/support", tok.AccessToken, "whoami", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	downstream := strings.TrimPrefix(whoami(t, res).Authorization, "Bearer ")
	next := c.refresh(t, "support-assistant", tok.RefreshToken)
	// Refusals are logged too: a replayed code and a token on the wrong server.
	c.redeem(t, "support-assistant", code, verifier)
	challengeOf(t, e.public+"/ops", next.AccessToken)
	if err := testenv.StopCaddy(); err != nil { // flush
		t.Fatal(err)
	}

	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	logs := string(raw)
	if !strings.Contains(logs, `"logger":"http.handlers.mcp_gateway.audit"`) {
		t.Fatalf("the log holds no audit events; was it captured?\n%s", lastLines(logs, 20))
	}
	secrets := map[string]string{
		"authorization code":       code,
		"PKCE verifier":            verifier,
		"access token":             tok.AccessToken,
		"refresh token":            tok.RefreshToken,
		"rotated refresh token":    next.RefreshToken,
		"downstream access token":  downstream,
		"downstream client secret": testenv.DefaultClientSecret,
	}
	for name, secret := range secrets {
		if secret == "" {
			t.Fatalf("the flow produced no %s", name)
		}
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
}

// TestAuditLog routes the audit logger to a file of its own, as an
// operator would, and checks that each security decision of a flow is
// there as one structured event naming the gateway, server and client, and
// the user where one is known.
func TestAuditLog(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	e := startEnv(t, testenv.ProviderConfig{}, withGlobal("log audit {\n\t\toutput file "+auditFile+"\n\t\tinclude http.handlers.mcp_gateway.audit\n\t}"))
	_, challenge := testenv.PKCE()
	withPKCE := url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}

	c := e.register(t, "support-assistant")
	code, verifier := c.code(t, "support-assistant", nil)
	tok := c.redeem(t, "support-assistant", code, verifier)
	next := c.refresh(t, "support-assistant", tok.RefreshToken)
	c.redeem(t, "support-assistant", code, verifier) // replayed
	other := e.register(t, "support-assistant")
	mustAnswer(t, other, other.begin(t, "support-assistant", withPKCE), false)
	wantErrorPage(t, other.begin(t, "support-assistant", url.Values{"redirect_uri": {"https://evil.test/cb"}}), http.StatusBadRequest, "Redirect URI")
	resp, err := http.PostForm(e.public+"/oauth/support-assistant/revoke", url.Values{"token": {next.RefreshToken}, "client_id": {c.ID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := testenv.StopCaddy(); err != nil { // flush
		t.Fatal(err)
	}

	raw, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var event map[string]any
		if err := json.Unmarshal([]byte(line), &event); err != nil {
			t.Fatalf("an audit line is not JSON: %v\n%s", err, line)
		}
		if event["logger"] != "http.handlers.mcp_gateway.audit" {
			t.Errorf("the audit file holds another logger's line: %s", line)
		}
		if event["gateway"] != "acme" || event["server"] != "support-assistant" || event["client_id"] == "" {
			t.Errorf("an audit event lacks its gateway, server or client: %s", line)
		}
		seen[event["msg"].(string)] = event
	}
	for _, want := range []struct {
		msg      string
		withUser bool
	}{
		{"client registered", false},
		{"consent given", false},
		{"grant created", true},
		{"token issued", true},
		{"token refreshed", true},
		{"code replayed, tokens revoked", true},
		{"consent refused", false},
		{"authorization refused", false},
		{"token revoked", false},
	} {
		event, ok := seen[want.msg]
		if !ok {
			t.Errorf("no %q event in the audit log; it has %v", want.msg, slices.Sorted(maps.Keys(seen)))
			continue
		}
		if want.withUser && event["user"] != testenv.DefaultUser().Subject {
			t.Errorf("%q names user %v, want %s", want.msg, event["user"], testenv.DefaultUser().Subject)
		}
	}
	if reason := seen["authorization refused"]["reason"]; reason != "redirect_uri not registered" {
		t.Errorf("the refused authorization's reason is %v", reason)
	}
}
