package e2e_test

import (
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestAttacksNarrowing: the downstream token an upstream receives carries
// the scopes the user granted the calling client for that server, not
// every scope the server offers. A tool without a call scope of its own
// must not act, at the upstream, with a scope the client was never given.
func TestAttacksNarrowing(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})
	// support-assistant offers the gateway's whole set: before, such a
	// server got the full downstream token whatever its client was granted.
	e.load("tickets.read tickets.write accounts.read admin.read")
	login := []string{"openid", "offline_access"}
	reader := e.register(t, "support-assistant").login(t, "support-assistant", "tickets.read")

	t.Run("client granted part of a server's scopes", func(t *testing.T) {
		_, info, _ := e.upstreamSees(t, "/support", reader.AccessToken)
		if !sameScopes(info.Scopes, append(login, "tickets.read")...) {
			t.Fatalf("a client granted tickets.read made the upstream receive a token for %v, want tickets.read and the login scopes", info.Scopes)
		}
	})

	t.Run("client granted part of a server's subset", func(t *testing.T) {
		e.load("tickets.read accounts.read")
		t.Cleanup(func() { e.load("tickets.read tickets.write accounts.read admin.read") })
		_, info, _ := e.upstreamSees(t, "/support", reader.AccessToken)
		if !sameScopes(info.Scopes, append(login, "tickets.read")...) {
			t.Fatalf("the server offers tickets.read accounts.read, its client was granted tickets.read, and the upstream received a token for %v", info.Scopes)
		}
	})

	t.Run("step-up grant does not widen the narrower one", func(t *testing.T) {
		_, before, first := e.upstreamSees(t, "/support", reader.AccessToken)
		// The same user authorizes another client for more: a new
		// downstream sign-in, and a grant of its own.
		writer := e.register(t, "support-assistant").login(t, "support-assistant", "tickets.read tickets.write")
		_, wide, _ := e.upstreamSees(t, "/support", writer.AccessToken)
		if wide.Subject != before.Subject || !sameScopes(wide.Scopes, append(login, "tickets.read", "tickets.write")...) {
			t.Errorf("the step-up grant's upstream received a token of %q for %v, want %q's for tickets.read tickets.write and the login scopes", wide.Subject, wide.Scopes, before.Subject)
		}
		_, narrow, again := e.upstreamSees(t, "/support", reader.AccessToken)
		if !sameScopes(narrow.Scopes, append(login, "tickets.read")...) {
			t.Errorf("after the same user's step-up, the first client's upstream received a token for %v, want tickets.read and the login scopes", narrow.Scopes)
		}
		// The new sign-in replaced the grant that narrowed the first token.
		if again == first {
			t.Error("the first client's upstream still received the token narrowed from the replaced sign-in")
		}
		// Each grant's narrowed token is kept: no narrowing again.
		refreshes := e.provider.RefreshCount()
		for _, tok := range []string{reader.AccessToken, writer.AccessToken, reader.AccessToken} {
			e.upstreamSees(t, "/support", tok)
		}
		if n := e.provider.RefreshCount() - refreshes; n != 0 {
			t.Errorf("alternating two clients' calls cost %d refreshes, want none: each scope set's token is kept", n)
		}
	})

	t.Run("client granted the whole set", func(t *testing.T) {
		// Nothing to narrow: the grant's full token serves, with no
		// refresh at the provider.
		all := e.register(t, "support-assistant").login(t, "support-assistant", "tickets.read tickets.write accounts.read admin.read")
		refreshes := e.provider.RefreshCount()
		_, info, _ := e.upstreamSees(t, "/support", all.AccessToken)
		if !sameScopes(info.Scopes, append(login, "tickets.read", "tickets.write", "accounts.read", "admin.read")...) || e.provider.RefreshCount() != refreshes {
			t.Errorf("a client granted every scope: the upstream got %v after %d refreshes, want the full token after none", info.Scopes, e.provider.RefreshCount()-refreshes)
		}
	})
}
