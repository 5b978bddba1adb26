package authserver_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// The benchmarks build an edge from the real parts the Caddy module wires
// together (a Ledger and Broker over a Store, a Keyset and its Verifier)
// and drive it through its exported entry points: Authorize, which
// ServeHTTP calls on every proxied MCP request, and ServeOAuth for the
// token endpoint.

const (
	benchServerScopes = "accounts.read tickets.read"
	// benchNarrowedScopes are the downstream scopes of a token narrowed to
	// benchServerScopes, as the Broker keeps them: sorted, with the login
	// scopes.
	benchNarrowedScopes = "accounts.read offline_access openid tickets.read"
	benchPublicURL      = publicURL
	benchRedirect       = "http://127.0.0.1:33418/callback"
	benchClientID       = "bench-client"
)

// benchEdge is an edge with one gateway and its servers.
type benchEdge struct {
	edge    *authserver.Edge
	gateway *authserver.Gateway
	servers []*authserver.Server
	ledger  *grants.Ledger
	broker  *grants.Broker
}

// newGateway builds the gateway "acme" over s from the real parts the
// Caddy module wires together, with now as the clock of its records (nil
// means time.Now).
func newGateway(tb testing.TB, s store.Store, now func() time.Time) *authserver.Gateway {
	tb.Helper()
	keys := loadKeys(tb, s, nil)
	ledger := grants.NewLedger(s, "mcp_gateway/acme", newSealer(tb), now)
	return &authserver.Gateway{
		Name:     "acme",
		Scopes:   scopes.MustParse("tickets.read tickets.write accounts.read admin.read"),
		Ledger:   ledger,
		Broker:   &grants.Broker{Ledger: ledger},
		Keys:     keys,
		Verifier: accesstoken.NewVerifier(keys, accesstoken.VerifierOptions{}),
	}
}

// newSealer is the gateway's sealer: a fixed key, so that every part a
// test builds over one store opens what the others sealed.
func newSealer(tb testing.TB) *store.Sealer {
	tb.Helper()
	sealer, err := store.NewSealer(make([]byte, 32))
	if err != nil {
		tb.Fatal(err)
	}
	return sealer
}

// loadKeys loads the gateway's signing keys from s, creating them if
// it has none, with now as the keyset's clock (nil means time.Now).
func loadKeys(tb testing.TB, s store.Store, now func() time.Time) *accesstoken.Keyset {
	tb.Helper()
	keys, err := accesstoken.LoadKeyset(context.Background(), s, "mcp_gateway/acme/signing_keys", newSealer(tb), now)
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

// newBenchEdge builds an edge over s with the given number of servers,
// all attached to one gateway. Server i is "s<i>" at "/s<i>".
func newBenchEdge(b testing.TB, s store.Store, servers int) *benchEdge {
	b.Helper()
	ctx := context.Background()
	gw := newGateway(b, s, nil)
	ledger := gw.Ledger
	be := &benchEdge{gateway: gw, ledger: ledger, broker: gw.Broker}
	for i := range servers {
		name := fmt.Sprintf("s%d", i)
		be.servers = append(be.servers, &authserver.Server{
			Name:    name,
			Path:    "/" + name,
			Rule:    scopes.Rule{Offered: scopes.MustParse(benchServerScopes)},
			Gateway: func() *authserver.Gateway { return gw },
			// As the Caddy module configures a server (per_server_tokens
			// refresh, the default): a downstream token narrowed to the
			// scopes each client was granted, with the login scopes.
			Narrowing: &grants.Narrowing{Key: name, Scopes: func(granted string) []string {
				return append([]string{"openid", "offline_access"}, strings.Fields(granted)...)
			}},
		})
	}
	be.edge = authserver.New(authserver.Options{PublicURL: benchPublicURL}, be.servers)
	if err := ledger.SaveClient(ctx, &grants.Client{
		ID:                      benchClientID,
		RedirectURIs:            []string{benchRedirect},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: "none",
		Source:                  grants.SourceRegistered,
	}); err != nil {
		b.Fatal(err)
	}
	return be
}

// putGrants stores downstream grants for users user-0 … user-<n-1>, as the
// callback does after each user's downstream sign-in. Each holds the token
// narrowed to the last server's scopes, which the tokens of the benchmarks
// are granted, that the Broker would otherwise
// obtain by a refresh at the downstream server on the user's first request
// there; the benchmarks use that server.
func (be *benchEdge) putGrants(b testing.TB, n int) {
	b.Helper()
	ctx := context.Background()
	s := be.servers[len(be.servers)-1]
	now := time.Now()
	exp := now.Add(24 * time.Hour)
	for i := range n {
		err := be.broker.Put(ctx, &grants.Grant{
			User: benchUser(i),
			Token: &oauth2.Token{
				AccessToken:  "downstream-access-" + benchUser(i),
				TokenType:    "Bearer",
				RefreshToken: "downstream-refresh-" + benchUser(i),
				Expiry:       exp,
			},
			Scopes: "openid offline_access tickets.read tickets.write accounts.read admin.read",
			Narrowed: []*grants.NarrowedToken{{
				Server:   s.Name,
				Token:    &oauth2.Token{AccessToken: "narrowed-access-" + benchUser(i), TokenType: "Bearer", Expiry: exp},
				Scopes:   benchNarrowedScopes,
				IssuedAt: now,
			}},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func benchUser(i int) string { return fmt.Sprintf("user-%d", i) }

// token issues an access token for user at server s, as the token
// endpoint does.
func (be *benchEdge) token(b testing.TB, s *authserver.Server, user string) string {
	b.Helper()
	now := time.Now()
	tok, err := be.gateway.Keys.Issue(accesstoken.Claims{
		Issuer:    s.Issuer,
		Subject:   user,
		Audience:  s.Resource,
		Scope:     "accounts.read tickets.read",
		ClientID:  benchClientID,
		FamilyRef: "ref-" + user,
		IssuedAt:  now,
		NotBefore: now,
		ExpiresAt: now.Add(time.Hour),
	})
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// mcpRequest is a proxied MCP call as ServeHTTP hands it to Authorize.
func mcpRequest(s *authserver.Server, token string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, benchPublicURL+s.Path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Content-Type", "application/json")
	return r
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// counts only what Authorize allocates. Its header map is cleared after
// each request, as net/http gives every request a fresh one.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

func (w *discardWriter) reset() {
	clear(w.h)
	w.status = 0
}

// warmRequest returns an edge with one server and one user's grant, and a
// request of that user that has been authorized once, so that its token
// and downstream token are in the caches.
func warmRequest(tb testing.TB) (*benchEdge, *discardWriter, *http.Request, *authserver.Server) {
	tb.Helper()
	be := newBenchEdge(tb, store.NewMemoryStore(), 1)
	be.putGrants(tb, 1)
	s := be.servers[0]
	r := mcpRequest(s, be.token(tb, s, benchUser(0)))
	w := &discardWriter{h: http.Header{}}
	authorizeOnce(tb, be, w, r, s)
	return be, w, r, s
}

func authorizeOnce(b testing.TB, be *benchEdge, w *discardWriter, r *http.Request, s *authserver.Server) {
	w.reset()
	a, ok := be.edge.Authorize(w, r, s)
	if !ok {
		b.Fatalf("Authorize refused a valid token: status %d, %s", w.status, w.h.Get("WWW-Authenticate"))
	}
	if !strings.HasPrefix(a.DownstreamToken, "narrowed-access-") {
		b.Fatalf("Authorize handed out %q, not the server's narrowed token", a.DownstreamToken)
	}
}

// BenchmarkAuthorize is the per-request authorization step of a proxied MCP
// call. Warm: the token was seen before, so the verified claims and the
// user's decrypted downstream token both come from memory. Cold: the
// token's signature is verified and the user's grant read from storage and
// opened, as on the first request after a restart.
func BenchmarkAuthorize(b *testing.B) {
	b.Run("warm", func(b *testing.B) {
		be, w, r, s := warmRequest(b)
		b.ReportAllocs()
		for b.Loop() {
			authorizeOnce(b, be, w, r, s)
		}
	})
	b.Run("warm-parallel", func(b *testing.B) {
		be := newBenchEdge(b, store.NewMemoryStore(), 1)
		be.putGrants(b, 64)
		s := be.servers[0]
		reqs := make([]*http.Request, 64)
		for i := range reqs {
			reqs[i] = mcpRequest(s, be.token(b, s, benchUser(i)))
			authorizeOnce(b, be, &discardWriter{h: http.Header{}}, reqs[i], s)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := &discardWriter{h: http.Header{}}
			for i := 0; pb.Next(); i++ {
				w.reset()
				if _, ok := be.edge.Authorize(w, reqs[i%len(reqs)], s); !ok {
					b.Error("Authorize refused a valid token")
					return
				}
			}
		})
	})
	b.Run("cold", func(b *testing.B) {
		be := newBenchEdge(b, store.NewMemoryStore(), 1)
		be.putGrants(b, 1)
		// Without a cache every Verify checks the signature; forgetting the
		// user makes the Broker read and open the grant again.
		be.gateway.Verifier = accesstoken.NewVerifier(be.gateway.Keys, accesstoken.VerifierOptions{CacheSize: -1})
		s := be.servers[0]
		r := mcpRequest(s, be.token(b, s, benchUser(0)))
		w := &discardWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			be.broker.Forget(benchUser(0))
			authorizeOnce(b, be, w, r, s)
		}
	})
}

// BenchmarkAuthorizeScale shows that a warm request costs the same whether
// the gateway has 1 or 100 servers and 1 or 100 000 users' grants.
func BenchmarkAuthorizeScale(b *testing.B) {
	for _, tc := range []struct{ servers, grants int }{
		{1, 1}, {100, 1}, {1, 100_000}, {100, 100_000},
	} {
		b.Run(fmt.Sprintf("servers=%d/grants=%d", tc.servers, tc.grants), func(b *testing.B) {
			be := newBenchEdge(b, store.NewMemoryStore(), tc.servers)
			be.putGrants(b, tc.grants)
			// The last server and the last user: a linear search would
			// pay for every one before them.
			s := be.servers[len(be.servers)-1]
			r := mcpRequest(s, be.token(b, s, benchUser(tc.grants-1)))
			w := &discardWriter{h: http.Header{}}
			authorizeOnce(b, be, w, r, s)
			b.ReportAllocs()
			for b.Loop() {
				if be.edge.ServerAt(r.URL.Path) != s {
					b.Fatal("ServerAt found another server")
				}
				authorizeOnce(b, be, w, r, s)
			}
		})
	}
}

// BenchmarkServerAt is the routing of a request to its server, which
// ServeHTTP does before Authorize.
func BenchmarkServerAt(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			be := newBenchEdge(b, store.NewMemoryStore(), n)
			s := be.servers[n-1]
			path := s.Path + "/mcp"
			b.ReportAllocs()
			for b.Loop() {
				if be.edge.ServerAt(path) != s {
					b.Fatal("ServerAt found another server")
				}
			}
		})
	}
}

// stores are the storage back ends of the token endpoint benchmarks: the
// in-memory store and certmagic's file storage, Caddy's default.
func stores(b *testing.B) []struct {
	name  string
	store func() store.Store
} {
	return []struct {
		name  string
		store func() store.Store
	}{
		{"memory", func() store.Store { return store.NewMemoryStore() }},
		{"file", func() store.Store { return &certmagic.FileStorage{Path: b.TempDir()} }},
	}
}

// BenchmarkTokenEndpoint is the token endpoint through ServeOAuth, with its
// storage: redeeming an authorization code (single use under the storage
// lock, PKCE, a new refresh family, an ES256 signature) and a refresh
// (rotation under the lock, a grant check, a signature).
func BenchmarkTokenEndpoint(b *testing.B) {
	for _, st := range stores(b) {
		b.Run("authorization_code/"+st.name, func(b *testing.B) {
			be := newBenchEdge(b, st.store(), 1)
			be.putGrants(b, 1)
			s := be.servers[0]
			verifier := oauth2.GenerateVerifier()
			sum := sha256.Sum256([]byte(verifier))
			challenge := base64.RawURLEncoding.EncodeToString(sum[:])
			// Each exchange spends a code, so the codes are issued first,
			// as the callback would, outside the timed part.
			codes := make([]string, b.N)
			for i := range codes {
				code, err := be.ledger.IssueCode(context.Background(), &grants.Code{
					ClientID:      benchClientID,
					RedirectURI:   benchRedirect,
					CodeChallenge: challenge,
					Server:        s.Name,
					Resource:      s.Resource,
					Scopes:        "accounts.read tickets.read",
					User:          benchUser(0),
					ExpiresAt:     time.Now().Add(time.Hour),
				})
				if err != nil {
					b.Fatal(err)
				}
				codes[i] = code
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tokenRequest(b, be, s, url.Values{
					"grant_type":    {"authorization_code"},
					"code":          {codes[i]},
					"redirect_uri":  {benchRedirect},
					"code_verifier": {verifier},
				})
			}
		})
		b.Run("refresh_token/"+st.name, func(b *testing.B) {
			be := newBenchEdge(b, st.store(), 1)
			be.putGrants(b, 1)
			s := be.servers[0]
			refresh, err := be.ledger.StartFamily(context.Background(), &grants.Family{
				ClientID:  benchClientID,
				Server:    s.Name,
				Resource:  s.Resource,
				User:      benchUser(0),
				Scopes:    "accounts.read tickets.read",
				ExpiresAt: time.Now().Add(time.Hour),
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				refresh = tokenRequest(b, be, s, url.Values{
					"grant_type":    {"refresh_token"},
					"refresh_token": {refresh},
				}).RefreshToken
			}
		})
	}
}

// tokenRequest posts form to s's token endpoint as a public client.
func tokenRequest(b *testing.B, be *benchEdge, s *authserver.Server, form url.Values) tokens {
	form.Set("client_id", benchClientID)
	r := httptest.NewRequest(http.MethodPost, benchPublicURL+"/oauth/"+s.Name+"/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	if !be.edge.ServeOAuth(w, r) {
		b.Fatal("the token endpoint was not served")
	}
	var tok tokens
	if w.Code != http.StatusOK {
		b.Fatalf("token endpoint: status %d: %s", w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &tok); err != nil || tok.AccessToken == "" || tok.RefreshToken == "" {
		b.Fatalf("token response %s: %v", w.Body, err)
	}
	return tok
}

// TestAuthorizeWarmAllocations: a warm request's authorization step
// allocates twice at most (the CORS headers and the caller's copy of the
// claims). An allocation added to the hot path fails here, deterministically,
// long before it would show in a load benchmark.
func TestAuthorizeWarmAllocations(t *testing.T) {
	be, w, r, s := warmRequest(t)
	if allocs := testing.AllocsPerRun(100, func() { authorizeOnce(t, be, w, r, s) }); allocs > 2 {
		t.Errorf("a warm Authorize allocates %.0f times, want at most 2", allocs)
	}
}
