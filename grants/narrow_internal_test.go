package grants

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestKeepNarrowed(t *testing.T) {
	now := time.Now()
	tok := func(server, scopes string, issued, expires time.Duration) *NarrowedToken {
		return &NarrowedToken{
			Server:   server,
			Token:    &oauth2.Token{AccessToken: server + "/" + scopes + "/" + issued.String(), Expiry: now.Add(expires)},
			Scopes:   scopes,
			IssuedAt: now.Add(issued),
		}
	}
	many := func(n int) []*NarrowedToken {
		var out []*NarrowedToken
		for i := range n {
			// Kept out of order: the oldest is not the first.
			out = append(out, tok("s", fmt.Sprint("scope-", i), -time.Duration((i+3)%n+1)*time.Minute, time.Hour))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		have []*NarrowedToken
		add  *NarrowedToken
		want []string // the kept tokens' server and scopes
	}{
		{"the first", nil, tok("s", "a", 0, time.Hour), []string{"s a"}},
		{"another set of the same server is kept beside",
			[]*NarrowedToken{tok("s", "a", -time.Minute, time.Hour)}, tok("s", "a b", 0, time.Hour), []string{"s a", "s a b"}},
		{"another server's set is kept beside",
			[]*NarrowedToken{tok("s", "a", -time.Minute, time.Hour)}, tok("t", "a", 0, time.Hour), []string{"s a", "t a"}},
		{"the same server and set is replaced",
			[]*NarrowedToken{tok("s", "a", -time.Minute, time.Hour), tok("s", "b", -time.Minute, time.Hour)}, tok("s", "a", 0, time.Hour), []string{"s b", "s a"}},
		{"expired ones are dropped",
			[]*NarrowedToken{tok("s", "a", -time.Hour, -time.Second), tok("s", "b", -time.Minute, time.Hour)}, tok("s", "c", 0, time.Hour), []string{"s b", "s c"}},
		{"empty ones are dropped",
			[]*NarrowedToken{nil, {Server: "s", Scopes: "a"}}, tok("s", "c", 0, time.Hour), []string{"s c"}},
		{"beyond the bound the oldest is dropped",
			many(maxNarrowed), tok("s", "new", 0, time.Hour), func() []string {
				var want []string
				for i := range maxNarrowed {
					if (i+3)%maxNarrowed+1 != maxNarrowed { // the one issued 16 minutes ago
						want = append(want, fmt.Sprint("s scope-", i))
					}
				}
				return append(want, "s new")
			}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Grant{Narrowed: tc.have}
			g.keepNarrowed(tc.add, now)
			var got []string
			for _, n := range g.Narrowed {
				got = append(got, n.Server+" "+n.Scopes)
			}
			if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(tc.want))) {
				t.Errorf("kept %q, want %q", got, tc.want)
			}
			if g.narrowedFor(tc.add.Server, tc.add.Scopes) != tc.add {
				t.Error("the added token is not found")
			}
		})
	}
}

// loginAnd asks for x and the granted scopes, and for nothing to narrow to
// when "all" is granted.
func loginAnd(calls *int) func(string) []string {
	return func(granted string) []string {
		*calls++
		if granted == "all" {
			return nil
		}
		return append(strings.Fields(granted), "x")
	}
}

func TestGrantedSets(t *testing.T) {
	b := &Broker{}
	var calls int
	n := &Narrowing{Key: "s", Scopes: loginAnd(&calls)}
	for _, tc := range []struct {
		granted string
		scope   string // the view's; "" for the full token
		calls   int    // of Scopes, in all, after this
	}{
		{"b a", "a b x", 1},
		{"b a", "a b x", 1},  // remembered
		{"a  b", "a b x", 2}, // another string, the same view
		{"a", "a x", 3},      // a set of its own
		{"all", "", 4},       // nothing to narrow
		{"all", "", 4},
		{"a x", "a x", 5}, // sorted and without duplicates
		{"b a", "a b x", 5},
		{"a", "a x", 5},
		{"x", "x", 6},
		{"", "x", 7},
		{"all", "", 7},
		{"a  b", "a b x", 7},
		{" b a", "a b x", 8},
		{"b a ", "a b x", 9},
		{"b  a", "a b x", 10},
	} {
		gs := b.grantedSet(n, tc.granted)
		switch {
		case tc.scope == "" && gs.view != nil:
			t.Errorf("%q resolves to view %q, want the full token", tc.granted, gs.view.scope)
		case tc.scope != "" && (gs.view == nil || gs.view.scope != tc.scope || gs.view.key != "s"):
			t.Errorf("%q resolves to %+v, want the view of s for %q", tc.granted, gs.view, tc.scope)
		}
		if calls != tc.calls {
			t.Errorf("after %q Scopes was called %d times, want %d", tc.granted, calls, tc.calls)
		}
	}
	// Strings of one view share its entry (and its warning).
	if b.grantedSet(n, "b a") != b.grantedSet(n, " b a") || b.grantedSet(n, "a") == b.grantedSet(n, "b a") {
		t.Error("entries are not one per view")
	}
	// A reload's Narrowing of the same server shares the views.
	again := &Narrowing{Key: "s", Scopes: loginAnd(&calls)}
	if b.grantedSet(again, "a").view != b.grantedSet(n, "a").view {
		t.Error("a new Narrowing of the same server got a view of its own")
	}
	if other := (&Narrowing{Key: "s", Scopes: loginAnd(&calls), Exchange: true}); b.grantedSet(other, "a").view == b.grantedSet(n, "a").view {
		t.Error("a Narrowing that exchanges shares the view of one that refreshes")
	}
}

func TestGrantedSetsBounded(t *testing.T) {
	b := &Broker{}
	var calls int
	n := &Narrowing{Key: "s", Scopes: loginAnd(&calls)}
	for i := range maxGrantedSets + 10 {
		b.grantedSet(n, fmt.Sprint("scope-", i))
	}
	if got := len(*n.sets.Load()); got != maxGrantedSets {
		t.Fatalf("a Narrowing remembers %d granted sets, want %d", got, maxGrantedSets)
	}
	// One beyond the bound is resolved each time, rightly.
	before := calls
	for range 2 {
		if gs := b.grantedSet(n, fmt.Sprint("scope-", maxGrantedSets+5)); gs.view == nil || gs.view.scope != fmt.Sprint("scope-", maxGrantedSets+5, " x") {
			t.Fatalf("beyond the bound: %+v", gs.view)
		}
	}
	if calls-before != 2 {
		t.Errorf("beyond the bound Scopes was called %d times for 2 requests, want 2", calls-before)
	}
}

func TestNarrowedViewsBounded(t *testing.T) {
	ctx := context.Background()
	env := newBrokerEnv(t)
	g := env.saveGrant(t, time.Hour)
	now := time.Now()
	var last *narrowedView
	for i := range maxViews + 1 {
		last = env.broker.view(&Narrowing{Key: fmt.Sprint("server-", i)}, []string{"a"})
	}
	if got := len(env.broker.narrow.views); got != maxViews {
		t.Fatalf("the broker keeps %d views, want %d", got, maxViews)
	}
	if last.cache != nil {
		t.Fatal("a view beyond the bound caches tokens that Forget cannot reach")
	}
	// Its tokens are served from storage.
	g.keepNarrowed(&NarrowedToken{Server: last.key, Token: &oauth2.Token{AccessToken: "narrowed", Expiry: now.Add(time.Hour)}, Scopes: "a", IssuedAt: now}, now)
	if err := env.ledger.SaveGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	n := &Narrowing{Key: last.key, Scopes: func(string) []string { return []string{"a"} }}
	env.store.loads.Store(0)
	for range 2 {
		if tok, err := env.broker.TokenFor(ctx, "alice", "a", n); err != nil || tok.AccessToken != "narrowed" {
			t.Fatalf("TokenFor = %v, %v", tok, err)
		}
	}
	if n := env.store.loads.Load(); n != 2 {
		t.Errorf("2 calls read storage %d times, want 2", n)
	}
	env.broker.Forget("alice")
}

func TestTokenForWarmAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	env := newBrokerEnv(t)
	g := env.saveGrant(t, time.Hour)
	now := time.Now()
	for _, scopes := range []string{"a x", "a b x"} {
		g.keepNarrowed(&NarrowedToken{Server: "s", Token: &oauth2.Token{AccessToken: scopes, Expiry: now.Add(time.Hour)}, Scopes: scopes, IssuedAt: now}, now)
	}
	if err := env.ledger.SaveGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	var calls int
	n := &Narrowing{Key: "s", Scopes: loginAnd(&calls)}
	call := func(granted, want string) {
		if tok, err := env.broker.TokenFor(ctx, "alice", granted, n); err != nil || tok.AccessToken != want {
			t.Fatalf("TokenFor(%q) = %v, %v; want %q", granted, tok, err, want)
		}
	}
	for _, warm := range []bool{false, true} {
		allocs := testing.AllocsPerRun(100, func() {
			call("a", "a x")
			call("a b", "a b x")
			call("all", "access-0")
		})
		if warm && allocs != 0 {
			t.Errorf("warm TokenFor calls allocate %v times; want 0", allocs)
		}
	}
	if env.endpoint.requests.Load() != 0 {
		t.Error("stored narrowed tokens were narrowed again")
	}
}

// TestGrantWithNarrowedTokensOfBefore: a grant sealed when narrowed tokens
// were kept one per server still opens; its narrowed tokens are left
// behind, to be obtained again when next needed.
func TestGrantWithNarrowedTokensOfBefore(t *testing.T) {
	ctx := context.Background()
	env := newBrokerEnv(t)
	l := env.ledger
	key := l.key(kindGrants, "alice")
	plain := []byte(`{"access_token":"access-0","refresh_token":"refresh-0","narrowed":{"support-assistant":{"access_token":"old","scopes":"accounts.read tickets.read"}}}`)
	sealed, err := l.seal(key, plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.put(ctx, kindGrants, key, &grantRecord{Grant: Grant{User: "alice"}, SealedToken: sealed}); err != nil {
		t.Fatal(err)
	}
	g, err := l.Grant(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if g.Token.AccessToken != "access-0" || g.Token.RefreshToken != "refresh-0" || len(g.Narrowed) != 0 {
		t.Errorf("the grant of before opened as %+v with narrowed tokens %v", g.Token, g.Narrowed)
	}
}
