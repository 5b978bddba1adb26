package grants_test

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

const callback = "http://127.0.0.1:1/oauth/callback"

// startDownstream starts the test provider and returns it with the
// gateway's downstream client of it, asking for scopes (and resource, if
// not empty). Both end with the test.
func startDownstream(t *testing.T, scopes []string, resource string) (*testenv.Provider, *downstream.Client) {
	t.Helper()
	p, err := testenv.StartProvider(testenv.ProviderConfig{RedirectURIs: []string{callback}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, downstream.New(downstream.Config{
		Issuer:      p.Issuer(),
		ClientID:    testenv.DefaultClientID,
		ClientAuth:  downstream.ClientAuth{Secret: testenv.DefaultClientSecret},
		Resource:    resource,
		Scopes:      scopes,
		LoginScopes: downstream.DefaultLoginScopes(),
		RedirectURL: callback,
	})
}

// sameScopes reports whether got holds the scopes of want, in any order.
func sameScopes(got []string, want string) bool {
	return slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(strings.FieldsSeq(want)))
}

// fixed is a Narrowing's Scopes that asks for scopes whatever was granted.
func fixed(scopes ...string) func(string) []string {
	return func(string) []string { return scopes }
}

// signIn runs a downstream login at the provider through the downstream
// client and returns the grant.
func signIn(t *testing.T, c *downstream.Client) *grants.Grant {
	t.Helper()
	ctx := context.Background()
	verifier := strings.Repeat("v", 50)
	authURL, err := c.AuthCodeURL(ctx, "st", verifier)
	if err != nil {
		t.Fatal(err)
	}
	b := testenv.NewBrowser()
	b.StopAt(func(u *url.URL) bool { return strings.HasPrefix(u.String(), callback) })
	page, err := b.Get(authURL)
	if err != nil || page.Form("login") == nil {
		t.Fatalf("the login page: %v", err)
	}
	back, err := b.Submit(page.Form("login"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Exchange(ctx, back.URL.Query().Get("code"), verifier)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return &grants.Grant{User: res.User, Token: res.Token, Scopes: res.Scopes, CreatedAt: now, RefreshedAt: now}
}

// TestNarrowedTokensLiveInStorage: a narrowed token is kept sealed beside
// the grant, so a second instance on the same storage serves it without
// asking the provider again, and a new sign-in discards it.
func TestNarrowedTokensLiveInStorage(t *testing.T) {
	p, client := startDownstream(t, testenv.DefaultScopes(), testenv.DefaultAudience)
	key, _ := store.KeyFromSecret("a secret of sixteen bytes or more")
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	shared := store.NewMemoryStore()
	// Two instances: two ledgers and brokers over one storage.
	a := &grants.Broker{Ledger: grants.NewLedger(shared, "mcp_gateway/acme", sealer, nil), Refresher: client}
	b := &grants.Broker{Ledger: grants.NewLedger(shared, "mcp_gateway/acme", sealer, nil), Refresher: client}
	ctx := context.Background()

	g := signIn(t, client)
	if err := a.Put(ctx, g); err != nil {
		t.Fatal(err)
	}
	narrow := func() *grants.Narrowing {
		return &grants.Narrowing{Key: "support-assistant", Scopes: fixed("tickets.read", "accounts.read")}
	}
	tokA, err := a.TokenFor(ctx, g.User, "", narrow())
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := p.TokenInfo(tokA.AccessToken); !sameScopes(info.Scopes, "accounts.read tickets.read") {
		t.Fatalf("the narrowed token has scopes %v", info.Scopes)
	}
	refreshes := p.RefreshCount()
	tokB, err := b.TokenFor(ctx, g.User, "", narrow())
	if err != nil || tokB.AccessToken != tokA.AccessToken || p.RefreshCount() != refreshes {
		t.Errorf("the second instance got another token (%v) or refreshed again", err)
	}
	keys, _ := shared.List(ctx, "mcp_gateway/acme", true)
	found := false
	for _, k := range keys {
		raw, _ := shared.Load(ctx, k)
		found = found || bytes.Contains(raw, []byte("token_sealed"))
		if bytes.Contains(raw, []byte(tokA.AccessToken)) {
			t.Errorf("%s holds the narrowed token in the clear", k)
		}
	}
	if !found {
		t.Fatal("no sealed grant in storage")
	}

	// A new sign-in starts without narrowed tokens: the next call narrows
	// afresh. (Another instance serves the narrowed token it holds in
	// memory until that is due, as it does the full token.)
	if err := a.Put(ctx, signIn(t, client)); err != nil {
		t.Fatal(err)
	}
	tokA2, err := a.TokenFor(ctx, g.User, "", narrow())
	if err != nil || tokA2.AccessToken == tokA.AccessToken || p.RefreshCount() != refreshes+1 {
		t.Errorf("after a new sign-in: %v, same token %v, %d refreshes", err, tokA2.AccessToken == tokA.AccessToken, p.RefreshCount()-refreshes)
	}
}

// TestNarrowingRefused: a provider that refuses the narrower scope
// (invalid_scope) cannot narrow: that is not the grant's end, and the
// Narrowing's policy decides between the full token and ErrCannotNarrow.
func TestNarrowingRefused(t *testing.T) {
	p, client := startDownstream(t, []string{"tickets.read"}, "")
	key, _ := store.KeyFromSecret("a secret of sixteen bytes or more")
	sealer, _ := store.NewSealer(key)
	b := &grants.Broker{Ledger: grants.NewLedger(store.NewMemoryStore(), "mcp_gateway/acme", sealer, nil), Refresher: client}
	ctx := context.Background()
	g := signIn(t, client)
	if err := b.Put(ctx, g); err != nil {
		t.Fatal(err)
	}

	// The grant holds tickets.read only: a refresh for admin.read is refused.
	refuse := &grants.Narrowing{Key: "ops-console", Scopes: fixed("admin.read"), Refuse: true}
	_, err := b.TokenFor(ctx, g.User, "", refuse)
	if !errors.Is(err, grants.ErrCannotNarrow) || !strings.Contains(err.Error(), "invalid_scope") {
		t.Fatalf("refuse: %v, want ErrCannotNarrow naming invalid_scope", err)
	}
	// It says when the server is asked again: an hour from now.
	var cannot *grants.CannotNarrowError
	if !errors.As(err, &cannot) || cannot.Server != "ops-console" || time.Until(cannot.Until) < 59*time.Minute || time.Until(cannot.Until) > time.Hour {
		t.Fatalf("refuse: %#v, want a CannotNarrowError for ops-console until an hour from now", err)
	}
	var warnings []error
	warn := &grants.Narrowing{Key: "reports", Scopes: fixed("admin.read"), Warn: func(err error) { warnings = append(warnings, err) }}
	for range 2 {
		tok, err := b.TokenFor(ctx, g.User, "", warn)
		if err != nil || tok.AccessToken != g.Token.AccessToken {
			t.Fatalf("full_token: %v; the full token: %v", err, err == nil && tok.AccessToken == g.Token.AccessToken)
		}
	}
	// Each server's finding holds for an hour: one attempt and one warning
	// each.
	if len(warnings) != 1 || !strings.Contains(warnings[0].Error(), "invalid_scope") {
		t.Errorf("warnings %v, want one naming invalid_scope", warnings)
	}
	if got := p.RefreshScopes(); len(got) != 2 {
		t.Errorf("the provider was asked to narrow %d times, want once per server", len(got))
	}
	// A reload builds new Narrowings for the same server: the finding is
	// reused (no new attempt), and the new one is told of it once, so that
	// the new config's choice is logged.
	reloaded := &grants.Narrowing{Key: "reports", Scopes: fixed("admin.read"), Refuse: true, Warn: func(err error) { warnings = append(warnings, err) }}
	for range 2 {
		if _, err := b.TokenFor(ctx, g.User, "", reloaded); !errors.Is(err, grants.ErrCannotNarrow) {
			t.Fatalf("after a reload to refuse: %v, want ErrCannotNarrow", err)
		}
	}
	if len(warnings) != 2 || len(p.RefreshScopes()) != 2 {
		t.Errorf("after a reload: %d warnings and %d attempts, want 2 and still 2", len(warnings), len(p.RefreshScopes()))
	}
	if _, err := b.Token(ctx, g.User); err != nil {
		t.Errorf("the refusal ended the grant: %v", err)
	}
}

// TestTokenForFollowsTheGrant: each scope set granted to a client gets a
// token of its own, narrowed at the provider to the login scopes and those
// scopes, kept beside the grant; the whole set gets the grant's full
// token. A step-up (more scopes, later) does not widen the earlier set's
// token.
func TestTokenForFollowsTheGrant(t *testing.T) {
	p, client := startDownstream(t, testenv.DefaultScopes(), testenv.DefaultAudience)
	key, _ := store.KeyFromSecret("a secret of sixteen bytes or more")
	sealer, _ := store.NewSealer(key)
	shared := store.NewMemoryStore()
	a := &grants.Broker{Ledger: grants.NewLedger(shared, "mcp_gateway/acme", sealer, nil), Refresher: client}
	ctx := context.Background()
	g := signIn(t, client)
	if err := a.Put(ctx, g); err != nil {
		t.Fatal(err)
	}
	// As the gateway narrows a server offering the whole set.
	const all = "accounts.read admin.read tickets.read tickets.write"
	narrowing := func() *grants.Narrowing {
		return &grants.Narrowing{Key: "support-assistant", Scopes: func(granted string) []string {
			if granted == all {
				return nil
			}
			return append([]string{"openid", "offline_access"}, strings.Fields(granted)...)
		}}
	}
	n := narrowing()
	tokens := map[string]string{} // by the scopes of the token
	for _, tc := range []struct {
		name, granted string
		want          string // the token's scopes; "" for the grant's full token
		narrows       bool   // at the provider
	}{
		{"part of the set", "tickets.read", "offline_access openid tickets.read", true},
		{"again", "tickets.read", "offline_access openid tickets.read", false},
		{"a step-up", "accounts.read tickets.read", "accounts.read offline_access openid tickets.read", true},
		{"the step-up's set in another order", "tickets.read accounts.read", "accounts.read offline_access openid tickets.read", false},
		{"the first set after the step-up", "tickets.read", "offline_access openid tickets.read", false},
		{"the whole set", all, "", false},
		{"another set", "tickets.write", "offline_access openid tickets.write", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := p.RefreshCount()
			tok, err := a.TokenFor(ctx, g.User, tc.granted, n)
			if err != nil {
				t.Fatal(err)
			}
			if narrowed := p.RefreshCount() - before; narrowed != map[bool]int{true: 1}[tc.narrows] {
				t.Errorf("%d refreshes at the provider, want %d", narrowed, map[bool]int{true: 1}[tc.narrows])
			}
			if tc.want == "" {
				if tok.AccessToken != g.Token.AccessToken {
					t.Error("not the grant's full token")
				}
				return
			}
			info, ok := p.TokenInfo(tok.AccessToken)
			if !ok || !sameScopes(info.Scopes, tc.want) {
				t.Fatalf("a token for %v, want %s", info.Scopes, tc.want)
			}
			if first, seen := tokens[tc.want]; seen && first != tok.AccessToken {
				t.Error("another token than the one this set got before")
			}
			tokens[tc.want] = tok.AccessToken
		})
	}

	// Another instance on the storage serves each set's token as kept.
	b := &grants.Broker{Ledger: grants.NewLedger(shared, "mcp_gateway/acme", sealer, nil), Refresher: client}
	before := p.RefreshCount()
	for granted, want := range map[string]string{
		"tickets.read":               "offline_access openid tickets.read",
		"accounts.read tickets.read": "accounts.read offline_access openid tickets.read",
		"tickets.write":              "offline_access openid tickets.write",
	} {
		tok, err := b.TokenFor(ctx, g.User, granted, narrowing())
		if err != nil || tok.AccessToken != tokens[want] {
			t.Errorf("another instance, %s: %v; the kept token: %v", granted, err, err == nil && tok.AccessToken == tokens[want])
		}
	}
	if n := p.RefreshCount() - before; n != 0 {
		t.Errorf("another instance narrowed %d times, want none", n)
	}
}
