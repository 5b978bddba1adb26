package caddymodule_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/internal/testenv"
)

// TestNoSecretsInLogs runs a whole flow with every log at DEBUG level into a
// file and searches it for each secret the flow handled.
func TestNoSecretsInLogs(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	e := startEnv(t, testenv.ProviderConfig{}, withGlobal("log {\n\t\toutput file "+logFile+"\n\t\tlevel DEBUG\n\t}"))
	c := e.register(t, "support-assistant")
	code, verifier := c.code(t, "support-assistant", nil)
	tok := c.redeem(t, "support-assistant", code, verifier)
	if tok.status != http.StatusOK {
		t.Fatalf("token: %d %s", tok.status, tok.Description)
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
