package e2e_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestReloadMidFlow reloads the config through the admin API, with a
// Caddyfile as `caddy reload` sends it, while an SSE stream is open and an
// authorization waits on its consent page: the stream finishes, the
// authorization completes, and the earlier tokens keep working.
func TestReloadMidFlow(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	c := e.register(t, "support-assistant")
	tok := c.login(t, "support-assistant", "")

	waiting := e.register(t, "support-assistant")
	verifier, challenge := testenv.PKCE()
	form := waiting.begin(t, "support-assistant", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}).Form("consent")
	if form == nil {
		t.Fatal("no consent page")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := e.startProgressCall(t, ctx, &bearerTransport{token: tok.AccessToken}, map[string]any{"count": 4, "interval_ms": 400})
	call.next(t, ctx)

	// The same servers with the scope subset written in another order: a
	// new config for Caddy, the same gateway for its users.
	e.reload("accounts.read tickets.read", "text/caddyfile")

	// The three notifications after the reload, and the result.
	if values, err := call.finish(t, ctx, 3); err != nil || len(values) != 3 {
		t.Fatalf("across the reload the streamed call got %v and ended with %v, want 3 more notifications and its result", values, err)
	}

	// The authorization that waited on its consent page completes.
	page := mustAnswer(t, waiting, mustSubmit(t, waiting, form), true)
	code := page.URL.Query().Get("code")
	if code == "" {
		t.Fatalf("the pending authorization did not complete after the reload: %s", page.URL)
	}
	if got := waiting.redeem(t, "support-assistant", code, verifier); got.Status != http.StatusOK {
		t.Fatalf("redeeming after the reload: %d %s", got.Status, got.Description)
	}
	if status, _ := challengeOf(t, e.public+"/support", tok.AccessToken); status != http.StatusOK {
		t.Errorf("a token from before the reload: %d", status)
	}
	ref := c.refresh(t, "support-assistant", tok.RefreshToken)
	if ref.Status != http.StatusOK {
		t.Errorf("refresh after the reload: %d %s", ref.Status, ref.Description)
	}
}

func mustSubmit(t *testing.T, c *client, form *testenv.Form) *testenv.Page {
	t.Helper()
	page, err := c.Browser.Submit(form, "decision=approve", nil)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// TestStorageOutage freezes the Redis server behind Caddy's storage: the
// gateway answers 503 instead of issuing what it could not record, and
// recovers, with nothing lost, when storage returns.
func TestStorageOutage(t *testing.T) {
	redis, storage := startRedis(t)
	e := startEnv(t, testenv.ProviderConfig{}, withStorage(storage))
	c := e.register(t, "support-assistant")
	tok := c.login(t, "support-assistant", "")

	if err := redis.Pause(); err != nil {
		t.Fatal(err)
	}
	ref := c.refresh(t, "support-assistant", tok.RefreshToken)
	if ref.Status != http.StatusServiceUnavailable || ref.AccessToken != "" || ref.Error == "" {
		t.Errorf("refresh during the outage: %d %q (token issued: %v)", ref.Status, ref.Error, ref.AccessToken != "")
	}
	page := c.begin(t, "support-assistant", url.Values{"code_challenge": {pkceChallenge(t)}, "code_challenge_method": {"S256"}})
	if page.Status != http.StatusServiceUnavailable {
		t.Errorf("authorize during the outage: %d", page.Status)
	}
	if err := redis.Resume(); err != nil {
		t.Fatal(err)
	}

	ref = c.refresh(t, "support-assistant", tok.RefreshToken)
	if ref.Status != http.StatusOK {
		t.Fatalf("refresh after the outage: %d %s", ref.Status, ref.Description)
	}
	if status, _ := challengeOf(t, e.public+"/support", ref.AccessToken); status != http.StatusOK {
		t.Errorf("a token issued after the outage: %d", status)
	}
}
