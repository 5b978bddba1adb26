package grants

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// wrapped is a store.Store embedded in a wrapper. (Embedded as Store, its
// field name would hide its Store method.)
type wrapped = store.Store

// countingStore counts the Loads of the store.Store it wraps.
type countingStore struct {
	wrapped
	loads atomic.Int64
}

func (c *countingStore) Load(ctx context.Context, key string) ([]byte, error) {
	c.loads.Add(1)
	return c.wrapped.Load(ctx, key)
}

// tokenEndpoint is a downstream token endpoint that can be made to fail on
// demand.
type tokenEndpoint struct {
	*httptest.Server
	requests  atomic.Int64
	exchanges atomic.Int64 // of the requests, token exchanges

	mu       sync.Mutex
	status   int           // of the next answers; 0 means 200 with a new token
	body     string        // with status
	expires  int           // expires_in of new tokens; 0 means 3600
	block    chan struct{} // when set, requests wait for it to close
	entered  chan struct{} // when set, receives once per blocked request
	received []string      // refresh tokens presented ("" by exchanges)
}

func newTokenEndpoint(t *testing.T) *tokenEndpoint {
	e := &tokenEndpoint{}
	e.Server = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.Close)
	return e
}

func (e *tokenEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	n := e.requests.Add(1)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusTeapot)
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "refresh_token":
	case "urn:ietf:params:oauth:grant-type:token-exchange":
		e.exchanges.Add(1)
	default:
		http.Error(w, "bad form", http.StatusTeapot)
		return
	}
	e.mu.Lock()
	e.received = append(e.received, r.PostForm.Get("refresh_token"))
	status, body, expires, block, entered := e.status, e.body, e.expires, e.block, e.entered
	e.mu.Unlock()
	if block != nil {
		if entered != nil {
			entered <- struct{}{}
		}
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
		return
	}
	if expires == 0 {
		expires = 3600
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token":  fmt.Sprintf("access-%d", n),
		"token_type":    "Bearer",
		"refresh_token": fmt.Sprintf("refresh-%d", n),
		"expires_in":    expires,
		"scope":         "openid tickets.read",
	})
}

func (e *tokenEndpoint) set(f func(e *tokenEndpoint)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e)
}

// brokerEnv is a Broker over a counted store.MemoryStore and a token endpoint.
type brokerEnv struct {
	store    *countingStore
	ledger   *Ledger
	broker   *Broker
	endpoint *tokenEndpoint
}

func newBrokerEnv(t *testing.T) *brokerEnv {
	counting := &countingStore{wrapped: store.NewMemoryStore()}
	ledger := NewLedger(counting, testPrefix, mustSealer(t, testKey(3)), nil)
	endpoint := newTokenEndpoint(t)
	return &brokerEnv{store: counting, ledger: ledger, endpoint: endpoint, broker: newBroker(ledger, endpoint)}
}

func newBroker(l *Ledger, e *tokenEndpoint) *Broker {
	return &Broker{Ledger: l, Refresher: e.client(e.Client())}
}

// client is the gateway's downstream client of e, making its requests with
// hc.
func (e *tokenEndpoint) client(hc *http.Client) *downstream.Client {
	return downstream.New(downstream.Config{
		Issuer:     e.URL,
		ClientID:   "gateway",
		ClientAuth: downstream.ClientAuth{Method: downstream.AuthSecretPost, Secret: "gateway-secret"},
		Endpoints:  downstream.Metadata{AuthorizationEndpoint: e.URL + "/authorize", TokenEndpoint: e.URL},
		HTTPClient: hc,
	})
}

// saveGrant stores alice's grant whose token expires in expiresIn, obtained
// an hour ago.
func (env *brokerEnv) saveGrant(t *testing.T, expiresIn time.Duration) *Grant {
	t.Helper()
	now := time.Now()
	g := &Grant{
		User:        "alice",
		Token:       &oauth2.Token{AccessToken: "access-0", TokenType: "Bearer", RefreshToken: "refresh-0", Expiry: now.Add(expiresIn)},
		Scopes:      "openid tickets.read",
		CreatedAt:   now.Add(-time.Hour),
		RefreshedAt: now.Add(-time.Hour),
	}
	if err := env.ledger.SaveGrant(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	return g
}

func (env *brokerEnv) rawGrant(t *testing.T) []byte {
	t.Helper()
	b, err := env.store.wrapped.Load(context.Background(), env.ledger.grantKey("alice"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBrokerRefreshesOnce(t *testing.T) {
	env := newBrokerEnv(t)
	env.saveGrant(t, 10*time.Second) // within the 30 s leeway
	const n = 50
	tokens := make([]*oauth2.Token, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			tokens[i], errs[i] = env.broker.Token(context.Background(), "alice")
		})
	}
	close(start)
	wg.Wait()

	if got := env.endpoint.requests.Load(); got != 1 {
		t.Fatalf("%d refresh requests for %d concurrent callers; want 1", got, n)
	}
	for i := range n {
		if errs[i] != nil || tokens[i].AccessToken != "access-1" {
			t.Fatalf("caller %d got %v, %v; want access-1", i, tokens[i], errs[i])
		}
	}
	if env.endpoint.received[0] != "refresh-0" {
		t.Errorf("the refresh presented %q, want the stored refresh-0", env.endpoint.received[0])
	}
	// The rotated token set was stored.
	g, err := env.ledger.Grant(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if g.Token.AccessToken != "access-1" || g.Token.RefreshToken != "refresh-1" || g.Dead {
		t.Errorf("stored grant after the refresh = %+v, token %+v", g, g.Token)
	}
	if time.Since(g.RefreshedAt) > time.Hour/2 {
		t.Errorf("RefreshedAt = %v, want the refresh time", g.RefreshedAt)
	}
}

func TestBrokerKeepsTheRefreshTokenWhenNoneIsIssued(t *testing.T) {
	env := newBrokerEnv(t)
	env.saveGrant(t, 0)
	env.endpoint.set(func(e *tokenEndpoint) {
		e.status, e.body = http.StatusOK, `{"access_token":"access-x","token_type":"Bearer","expires_in":3600}`
	})
	if tok, err := env.broker.Token(context.Background(), "alice"); err != nil || tok.AccessToken != "access-x" {
		t.Fatalf("Token = %v, %v", tok, err)
	}
	g, err := env.ledger.Grant(context.Background(), "alice")
	if err != nil || g.Token.RefreshToken != "refresh-0" {
		t.Fatalf("stored refresh token = %q, %v; want refresh-0 kept", g.Token.RefreshToken, err)
	}
}

func TestBrokerRefusalEndsTheGrant(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"invalid_grant", http.StatusBadRequest, `{"error":"invalid_grant","error_description":"refresh token revoked"}`},
		{"400 without an error code", http.StatusBadRequest, `not json`},
		{"401", http.StatusUnauthorized, `{"error":"invalid_client"}`},
		{"invalid_grant with another status", http.StatusForbidden, `{"error":"invalid_grant"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newBrokerEnv(t)
			env.saveGrant(t, -time.Minute)
			env.endpoint.set(func(e *tokenEndpoint) { e.status, e.body = tt.status, tt.body })

			_, err := env.broker.Token(context.Background(), "alice")
			if !errors.Is(err, ErrGrantDead) || errors.Is(err, ErrDownstreamUnavailable) {
				t.Fatalf("Token: err = %v, want ErrGrantDead", err)
			}
			g, err := env.ledger.Grant(context.Background(), "alice")
			if err != nil || !g.Dead || g.DeadReason == "" {
				t.Fatalf("stored grant = %+v, %v; want it dead with a reason", g, err)
			}
			// A dead grant is not refreshed again.
			if _, err := env.broker.Token(context.Background(), "alice"); !errors.Is(err, ErrGrantDead) {
				t.Errorf("second Token: err = %v, want ErrGrantDead", err)
			}
			if got := env.endpoint.requests.Load(); got != 1 {
				t.Errorf("%d refresh requests, want 1", got)
			}
		})
	}
}

func TestBrokerUnavailableKeepsTheGrant(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, env *brokerEnv)
	}{
		{"503", func(t *testing.T, env *brokerEnv) {
			env.endpoint.set(func(e *tokenEndpoint) { e.status, e.body = http.StatusServiceUnavailable, "down for maintenance" })
		}},
		{"500 with an OAuth error", func(t *testing.T, env *brokerEnv) {
			env.endpoint.set(func(e *tokenEndpoint) { e.status, e.body = http.StatusInternalServerError, `{"error":"server_error"}` })
		}},
		{"429", func(t *testing.T, env *brokerEnv) {
			env.endpoint.set(func(e *tokenEndpoint) { e.status, e.body = http.StatusTooManyRequests, `{"error":"slow_down"}` })
		}},
		{"client timeout", func(t *testing.T, env *brokerEnv) {
			// The endpoint never answers; the client gives up.
			block := make(chan struct{})
			t.Cleanup(func() { close(block) })
			env.endpoint.set(func(e *tokenEndpoint) { e.block = block })
			client := *env.endpoint.Client()
			client.Timeout = 50 * time.Millisecond
			env.broker.Refresher = env.endpoint.client(&client)
		}},
		{"broker timeout", func(t *testing.T, env *brokerEnv) {
			block := make(chan struct{})
			t.Cleanup(func() { close(block) })
			env.endpoint.set(func(e *tokenEndpoint) { e.block = block })
			env.broker.Timeout = 50 * time.Millisecond
		}},
		{"connection refused", func(t *testing.T, env *brokerEnv) {
			env.endpoint.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newBrokerEnv(t)
			env.saveGrant(t, 10*time.Second)
			before := env.rawGrant(t)
			tt.setup(t, env)

			_, err := env.broker.Token(context.Background(), "alice")
			if !errors.Is(err, ErrDownstreamUnavailable) || errors.Is(err, ErrGrantDead) {
				t.Fatalf("Token: err = %v, want ErrDownstreamUnavailable", err)
			}
			if after := env.rawGrant(t); !bytes.Equal(before, after) {
				t.Error("the stored grant changed")
			}
		})
	}
}

func TestBrokerWarmCallReadsNoStorage(t *testing.T) {
	ctx := context.Background()
	env := newBrokerEnv(t)
	now := time.Now()
	g := &Grant{User: "alice", Token: &oauth2.Token{AccessToken: "fresh", RefreshToken: "r", Expiry: now.Add(time.Hour)}, CreatedAt: now, RefreshedAt: now}
	if err := env.broker.Put(ctx, g); err != nil {
		t.Fatal(err)
	}
	env.store.loads.Store(0)
	for range 3 {
		if tok, err := env.broker.Token(ctx, "alice"); err != nil || tok.AccessToken != "fresh" {
			t.Fatalf("Token = %v, %v", tok, err)
		}
	}
	if n := env.store.loads.Load(); n != 0 {
		t.Errorf("warm Token calls after Put read storage %d times; want 0", n)
	}

	// A second broker (another instance) reads the grant once, then serves
	// it from memory.
	cold := newBroker(env.ledger, env.endpoint)
	for range 3 {
		if tok, err := cold.Token(ctx, "alice"); err != nil || tok.AccessToken != "fresh" {
			t.Fatalf("Token = %v, %v", tok, err)
		}
	}
	if n := env.store.loads.Load(); n != 1 {
		t.Errorf("a cold broker read storage %d times for 3 calls; want 1", n)
	}

	// Forget drops the cached copy.
	cold.Forget("alice")
	if _, err := cold.Token(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if n := env.store.loads.Load(); n != 2 {
		t.Errorf("after Forget, storage reads = %d; want 2", n)
	}
	if n := env.endpoint.requests.Load(); n != 0 {
		t.Errorf("%d refresh requests for a fresh token; want 0", n)
	}
}

func TestBrokerWarmCallAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	env := newBrokerEnv(t)
	env.saveGrant(t, time.Hour)
	if _, err := env.broker.Token(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := env.broker.Token(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a warm Token call allocates %v times; want 0", allocs)
	}
}

// hookStore runs onLock before the first Lock it passes on.
type hookStore struct {
	wrapped
	once   sync.Once
	onLock func()
}

func (h *hookStore) Lock(ctx context.Context, name string) error {
	h.once.Do(h.onLock)
	return h.wrapped.Lock(ctx, name)
}

func TestBrokerRereadsUnderTheLock(t *testing.T) {
	ctx := context.Background()
	shared := store.NewMemoryStore()
	endpoint := newTokenEndpoint(t)
	sealer := mustSealer(t, testKey(3))
	// Two instances over one storage. The second refreshes the grant while
	// the first waits for the storage lock, having read the expiring token.
	second := newBroker(NewLedger(shared, testPrefix, sealer, nil), endpoint)
	var secondTok *oauth2.Token
	var secondErr error
	hooked := &hookStore{wrapped: shared, onLock: func() { secondTok, secondErr = second.Token(ctx, "alice") }}
	first := newBroker(NewLedger(hooked, testPrefix, sealer, nil), endpoint)
	env := &brokerEnv{store: &countingStore{wrapped: shared}, ledger: second.Ledger}
	env.saveGrant(t, 10*time.Second)

	tok, err := first.Token(ctx, "alice")
	if secondErr != nil || secondTok.AccessToken != "access-1" {
		t.Fatalf("second instance: Token = %v, %v; want access-1", secondTok, secondErr)
	}
	if err != nil || tok.AccessToken != "access-1" {
		t.Fatalf("first instance: Token = %v, %v; want access-1, found under the lock", tok, err)
	}
	if n := endpoint.requests.Load(); n != 1 {
		t.Errorf("%d refresh requests across two instances; want 1", n)
	}
}

// TestBrokerExchangesOnceAcrossInstances: a token exchange happens under
// the grant's storage lock after a re-read, like a refresh, so an instance
// that waited for the lock while another exchanged serves the other's
// narrowed token.
func TestBrokerExchangesOnceAcrossInstances(t *testing.T) {
	ctx := context.Background()
	shared := store.NewMemoryStore()
	endpoint := newTokenEndpoint(t)
	sealer := mustSealer(t, testKey(3))
	narrowing := func() *Narrowing {
		return &Narrowing{Key: "s", Scopes: func(string) []string { return []string{"tickets.read"} }, Exchange: true}
	}
	second := newBroker(NewLedger(shared, testPrefix, sealer, nil), endpoint)
	var secondTok *oauth2.Token
	var secondErr error
	hooked := &hookStore{wrapped: shared, onLock: func() { secondTok, secondErr = second.TokenFor(ctx, "alice", "granted", narrowing()) }}
	first := newBroker(NewLedger(hooked, testPrefix, sealer, nil), endpoint)
	env := &brokerEnv{store: &countingStore{wrapped: shared}, ledger: second.Ledger}
	env.saveGrant(t, time.Hour)

	tok, err := first.TokenFor(ctx, "alice", "granted", narrowing())
	if secondErr != nil || secondTok.AccessToken != "access-1" {
		t.Fatalf("second instance: TokenFor = %v, %v; want access-1", secondTok, secondErr)
	}
	if err != nil || tok.AccessToken != "access-1" {
		t.Fatalf("first instance: TokenFor = %v, %v; want access-1, found under the lock", tok, err)
	}
	if n := endpoint.exchanges.Load(); n != 1 {
		t.Errorf("%d token exchanges across two instances; want 1", n)
	}
	if n := endpoint.requests.Load(); n != 1 {
		t.Errorf("%d requests at the token endpoint; want the one exchange", n)
	}
}

func TestBrokerCallerCancellationDoesNotAbortTheRefresh(t *testing.T) {
	env := newBrokerEnv(t)
	env.saveGrant(t, 10*time.Second)
	block, entered := make(chan struct{}), make(chan struct{}, 1)
	env.endpoint.set(func(e *tokenEndpoint) { e.block, e.entered = block, entered })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := env.broker.Token(ctx, "alice")
		done <- err
	}()
	<-entered // the refresh is at the endpoint
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Token with a cancelled context: err = %v, want context.Canceled", err)
	}
	close(block) // the endpoint answers the refresh the cancelled caller began

	tok, err := env.broker.Token(context.Background(), "alice")
	if err != nil || tok.AccessToken != "access-1" {
		t.Fatalf("Token = %v, %v; want access-1 from the refresh begun earlier", tok, err)
	}
	if n := env.endpoint.requests.Load(); n != 1 {
		t.Errorf("%d refresh requests; want 1", n)
	}
}

func TestBrokerShortLivedTokens(t *testing.T) {
	ctx := context.Background()
	env := newBrokerEnv(t)
	env.saveGrant(t, 0)
	// Tokens living 20 s, less than the 30 s leeway: refreshed at half-life
	// rather than on every call.
	env.endpoint.set(func(e *tokenEndpoint) { e.expires = 20 })
	for range 3 {
		if tok, err := env.broker.Token(ctx, "alice"); err != nil || tok.AccessToken != "access-1" {
			t.Fatalf("Token = %v, %v; want access-1", tok, err)
		}
	}
	if n := env.endpoint.requests.Load(); n != 1 {
		t.Errorf("%d refresh requests; want 1", n)
	}
}

func TestBrokerWithoutRefreshToken(t *testing.T) {
	ctx := context.Background()
	env := newBrokerEnv(t)
	now := time.Now()
	g := &Grant{User: "alice", Token: &oauth2.Token{AccessToken: "a", Expiry: now.Add(-time.Second)}, RefreshedAt: now.Add(-time.Hour)}
	if err := env.ledger.SaveGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	if _, err := env.broker.Token(ctx, "alice"); !errors.Is(err, ErrGrantDead) {
		t.Fatalf("Token for an expired token without a refresh token: err = %v, want ErrGrantDead", err)
	}
	if n := env.endpoint.requests.Load(); n != 0 {
		t.Errorf("%d refresh requests; want 0", n)
	}
}

func TestBrokerUnknownUser(t *testing.T) {
	env := newBrokerEnv(t)
	if _, err := env.broker.Token(context.Background(), "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Token(unknown user): err = %v, want ErrNotFound", err)
	}
}

func TestBrokerPutRevivesAGrant(t *testing.T) {
	ctx := context.Background()
	env := newBrokerEnv(t)
	env.saveGrant(t, -time.Minute)
	env.endpoint.set(func(e *tokenEndpoint) { e.status, e.body = http.StatusBadRequest, `{"error":"invalid_grant"}` })
	if _, err := env.broker.Token(ctx, "alice"); !errors.Is(err, ErrGrantDead) {
		t.Fatalf("Token: err = %v, want ErrGrantDead", err)
	}
	// The user signs in again.
	now := time.Now()
	g := &Grant{User: "alice", Token: &oauth2.Token{AccessToken: "after-sign-in", RefreshToken: "r2", Expiry: now.Add(time.Hour)}, CreatedAt: now, RefreshedAt: now}
	if err := env.broker.Put(ctx, g); err != nil {
		t.Fatal(err)
	}
	if tok, err := env.broker.Token(ctx, "alice"); err != nil || tok.AccessToken != "after-sign-in" {
		t.Fatalf("Token after Put = %v, %v", tok, err)
	}
	if stored, err := env.ledger.Grant(ctx, "alice"); err != nil || stored.Dead {
		t.Fatalf("stored grant after Put = %+v, %v; want alive", stored, err)
	}
}

// TestBrokerGrantOfAnotherIssuer: a grant recorded for another downstream
// issuer is absent to this Broker, whose Put then replaces it; one recorded
// before grants named their issuer serves, and is recorded as this
// Broker's at its next save.
func TestBrokerGrantOfAnotherIssuer(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, stored string
		serves       bool
	}{
		{"same issuer", "https://idp.example", true},
		{"another issuer", "https://other.example", false},
		{"recorded before issuers were", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newBrokerEnv(t)
			env.broker.Issuer = "https://idp.example"
			g := &Grant{User: "alice", Issuer: tc.stored, Token: &oauth2.Token{AccessToken: "access-0", RefreshToken: "refresh-0", Expiry: time.Now().Add(-time.Minute)}}
			if err := env.ledger.SaveGrant(ctx, g); err != nil {
				t.Fatal(err)
			}
			tok, err := env.broker.Token(ctx, "alice")
			if !tc.serves {
				if !errors.Is(err, ErrNotFound) || tok != nil || env.endpoint.requests.Load() != 0 {
					t.Fatalf("Token = %v, %v after %d refreshes; want ErrNotFound and no refresh", tok, err, env.endpoint.requests.Load())
				}
				put := &Grant{User: "alice", Token: &oauth2.Token{AccessToken: "signed-in", Expiry: time.Now().Add(time.Hour)}}
				if err := env.broker.Put(ctx, put); err != nil {
					t.Fatal(err)
				}
				if tok, err := env.broker.Token(ctx, "alice"); err != nil || tok.AccessToken != "signed-in" {
					t.Fatalf("Token after Put = %v, %v", tok, err)
				}
			} else if err != nil || tok.AccessToken == "access-0" {
				t.Fatalf("Token = %v, %v; want a refreshed token", tok, err)
			}
			if stored, err := env.ledger.Grant(ctx, "alice"); err != nil || stored.Issuer != "https://idp.example" {
				t.Fatalf("stored grant's issuer = %+v, %v; want the Broker's", stored, err)
			}
		})
	}
}
