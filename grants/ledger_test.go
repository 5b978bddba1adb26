package grants

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

const testPrefix = "mcp_gateway/acme"

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, store.KeySize) }

func mustSealer(t testing.TB, primary []byte, older ...[]byte) *store.Sealer {
	t.Helper()
	s, err := store.NewSealer(primary, older...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clock is a settable clock for expiry tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ledgerEnv is one Ledger over a fresh store.Store.
type ledgerEnv struct {
	store  store.Store
	ledger *Ledger
	clock  *clock
}

// stores are the Stores every Ledger test runs against: the in-memory one
// and Caddy's default file storage.
var stores = []struct {
	name string
	new  func(t *testing.T) store.Store
}{
	{"memory", func(*testing.T) store.Store { return store.NewMemoryStore() }},
	{"file", func(t *testing.T) store.Store { return &certmagic.FileStorage{Path: t.TempDir()} }},
}

func newLedgerEnv(t *testing.T, s store.Store) *ledgerEnv {
	c := newClock()
	return &ledgerEnv{store: s, ledger: NewLedger(s, testPrefix, mustSealer(t, testKey(9)), c.Now), clock: c}
}

// TestLedger runs the Ledger suite against every Store.
func TestLedger(t *testing.T) {
	suite := []struct {
		name string
		run  func(*testing.T, *ledgerEnv)
	}{
		{"Clients", testClients},
		{"Consents", testConsents},
		{"DeleteConsents", testDeleteConsents},
		{"Browsers", testBrowsers},
		{"Pending", testPending},
		{"PendingTakenOnce", testPendingTakenOnce},
		{"Codes", testCodes},
		{"CodeRedeemedOnce", testCodeRedeemedOnce},
		{"Rotation", testRotation},
		{"RotationGraceRace", testRotationGraceRace},
		{"RevokeFamily", testRevokeFamily},
		{"FamilyOfToken", testFamilyOfToken},
		{"FamilyByRef", testFamilyByRef},
		{"Grants", testGrants},
		{"NoSecretsInStorage", testNoSecretsInStorage},
		{"SealedFieldsBoundToTheirRecord", testSealedFieldsBound},
		{"Prune", testPrune},
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			for _, tc := range suite {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, newLedgerEnv(t, s.new(t)))
				})
			}
		})
	}
}

func testClients(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	if cs, err := l.Clients(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("Clients of an empty ledger = %v, %v; want none", cs, err)
	}
	a := &Client{
		ID:                      "client-a",
		SecretHash:              HashSecret("s3cret-a"),
		Name:                    "Client A",
		RedirectURIs:            []string{"http://127.0.0.1/callback"},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: "client_secret_basic",
		Servers:                 []string{"support"},
		Source:                  SourceRegistered,
	}
	if err := l.SaveClient(ctx, a); err != nil {
		t.Fatal(err)
	}
	if !a.CreatedAt.Equal(env.clock.Now()) {
		t.Errorf("CreatedAt = %v, want the ledger's now", a.CreatedAt)
	}
	env.clock.Advance(time.Second)
	b := &Client{ID: "https://app.example/client.json", Source: SourceMetadataDocument}
	if err := l.SaveClient(ctx, b); err != nil {
		t.Fatal(err)
	}

	got, err := l.Client(ctx, "client-a")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Errorf("Client = %+v\nwant %+v", got, a)
	}
	if !got.CheckSecret("s3cret-a") || got.CheckSecret("s3cret-b") || got.CheckSecret("") {
		t.Error("CheckSecret does not tell the secret from others")
	}
	if b.CheckSecret("") {
		t.Error("CheckSecret is true for a client without a secret")
	}
	if _, err := l.Client(ctx, "client-z"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Client(unknown): err = %v, want ErrNotFound", err)
	}

	all, err := l.Clients(ctx)
	if err != nil || len(all) != 2 || all[0].ID != a.ID || all[1].ID != b.ID {
		t.Fatalf("Clients = %v, %v; want [client-a, the URL client], oldest first", all, err)
	}

	if err := l.DeleteClient(ctx, "client-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Client(ctx, "client-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Client after DeleteClient: err = %v, want ErrNotFound", err)
	}
	if err := l.DeleteClient(ctx, "client-a"); err != nil {
		t.Errorf("DeleteClient of a deleted client: %v, want nil", err)
	}
	if err := l.SaveClient(ctx, &Client{}); err == nil {
		t.Error("SaveClient accepted a client without an ID")
	}
}

func testConsents(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	c := &Consent{User: "alice", ClientID: "client-a", Server: "support", Scopes: "tickets.read", RedirectURI: "http://127.0.0.1/cb"}
	if err := l.SaveConsent(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := l.Consent(ctx, "alice", "client-a", "support")
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("Consent = %+v, %v; want %+v", got, err, c)
	}
	for _, k := range [][3]string{{"bob", "client-a", "support"}, {"alice", "client-b", "support"}, {"alice", "client-a", "ops"}} {
		if _, err := l.Consent(ctx, k[0], k[1], k[2]); !errors.Is(err, ErrNotFound) {
			t.Errorf("Consent%q: err = %v, want ErrNotFound", k, err)
		}
	}
	if err := l.DeleteConsent(ctx, "alice", "client-a", "support"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Consent(ctx, "alice", "client-a", "support"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Consent after deleteConsent: err = %v, want ErrNotFound", err)
	}
	if err := l.SaveConsent(ctx, &Consent{User: "alice"}); err == nil {
		t.Error("SaveConsent accepted a consent without client and server")
	}
}

func testDeleteConsents(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	all := [][3]string{
		{"alice", "client-a", "support"}, {"alice", "client-a", "ops"}, {"alice", "client-b", "support"},
		{"bob", "client-a", "support"}, {"bob", "client-b", "ops"},
	}
	for _, tc := range []struct {
		user, client string
		want         [][3]string // the consents left
	}{
		{user: "alice", want: [][3]string{{"bob", "client-a", "support"}, {"bob", "client-b", "ops"}}},
		{client: "client-a", want: [][3]string{{"alice", "client-b", "support"}, {"bob", "client-b", "ops"}}},
		{user: "alice", client: "client-a", want: [][3]string{{"alice", "client-b", "support"}, {"bob", "client-a", "support"}, {"bob", "client-b", "ops"}}},
		{user: "carol", want: all},
	} {
		for _, k := range all {
			if err := l.SaveConsent(ctx, &Consent{User: k[0], ClientID: k[1], Server: k[2], Scopes: "tickets.read"}); err != nil {
				t.Fatal(err)
			}
		}
		n, err := l.DeleteConsents(ctx, tc.user, tc.client)
		if err != nil || n != len(all)-len(tc.want) {
			t.Errorf("DeleteConsents(%q, %q) = %d, %v; want %d", tc.user, tc.client, n, err, len(all)-len(tc.want))
		}
		for _, k := range all {
			_, err := l.Consent(ctx, k[0], k[1], k[2])
			if kept := slices.Contains(tc.want, k); kept != (err == nil) {
				t.Errorf("DeleteConsents(%q, %q): consent %q kept %v, want %v (%v)", tc.user, tc.client, k, err == nil, kept, err)
			}
		}
	}
	if _, err := l.DeleteConsents(ctx, "", ""); err == nil {
		t.Error("DeleteConsents without a user or a client deleted every consent")
	}
}

func testBrowsers(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	if err := l.RememberBrowser(ctx, "browser-hash", "alice", env.clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if u, err := l.BrowserUser(ctx, "browser-hash"); err != nil || u != "alice" {
		t.Fatalf("BrowserUser = %q, %v; want alice", u, err)
	}
	if _, err := l.BrowserUser(ctx, "other-browser"); !errors.Is(err, ErrNotFound) {
		t.Errorf("BrowserUser(unknown): err = %v, want ErrNotFound", err)
	}
	env.clock.Advance(time.Hour)
	if _, err := l.BrowserUser(ctx, "browser-hash"); !errors.Is(err, ErrNotFound) {
		t.Errorf("BrowserUser after expiry: err = %v, want ErrNotFound", err)
	}
}

func newPending(now time.Time) *Pending {
	return &Pending{
		Server:             "support",
		ClientID:           "client-a",
		RedirectURI:        "http://127.0.0.1/cb",
		State:              "client-state",
		CodeChallenge:      "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		Scopes:             "tickets.read",
		Resource:           "https://gw.example/support",
		BrowserHash:        "browser-hash",
		DownstreamVerifier: "downstream-verifier-0123456789-0123456789-0123456789",
		CreatedAt:          now,
		ExpiresAt:          now.Add(10 * time.Minute),
	}
}

func testPending(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	p := newPending(env.clock.Now())
	if err := l.SavePending(ctx, "consent-handle", p); err != nil {
		t.Fatal(err)
	}
	got, err := l.Pending(ctx, "consent-handle")
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("Pending = %+v, %v\nwant %+v", got, err, p)
	}

	// Re-keying: take it under the consent handle, save it under the
	// downstream state.
	taken, err := l.TakePending(ctx, "consent-handle")
	if err != nil || !reflect.DeepEqual(taken, p) {
		t.Fatalf("TakePending = %+v, %v", taken, err)
	}
	for _, f := range []func(context.Context, string) (*Pending, error){l.Pending, l.TakePending} {
		if _, err := f(ctx, "consent-handle"); !errors.Is(err, ErrNotFound) {
			t.Errorf("reading a taken pending authorization: err = %v, want ErrNotFound", err)
		}
	}
	if err := l.SavePending(ctx, "downstream-state", taken); err != nil {
		t.Fatal(err)
	}

	env.clock.Advance(10 * time.Minute)
	if _, err := l.Pending(ctx, "downstream-state"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Pending after expiry: err = %v, want ErrNotFound", err)
	}
	if _, err := env.store.Load(ctx, l.key(kindPending, "downstream-state")); err == nil {
		t.Error("an expired pending authorization was read but not deleted")
	}

	// Defaults.
	d := &Pending{ClientID: "client-a"}
	if err := l.SavePending(ctx, "h", d); err != nil {
		t.Fatal(err)
	}
	if want := env.clock.Now().Add(DefaultPendingTTL); !d.ExpiresAt.Equal(want) {
		t.Errorf("default ExpiresAt = %v, want %v", d.ExpiresAt, want)
	}
	if err := l.SavePending(ctx, "", d); err == nil {
		t.Error("SavePending accepted an empty handle")
	}
}

func testPendingTakenOnce(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	if err := l.SavePending(ctx, "state", newPending(env.clock.Now())); err != nil {
		t.Fatal(err)
	}
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = l.TakePending(ctx, "state") })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrNotFound):
			t.Errorf("TakePending: unexpected error %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d concurrent TakePending calls got the authorization; want exactly 1", won, n)
	}
}

// lockCounter counts the storage locks taken through it.
type lockCounter struct {
	*store.MemoryStore
	locks int
}

func (s *lockCounter) Lock(ctx context.Context, name string) error {
	s.locks++
	return s.MemoryStore.Lock(ctx, name)
}

// TestTakePendingOf checks that a pending authorization is taken only by
// its own browser, and that every other request is refused from a plain
// read: no storage lock, and the record stays for its browser.
func TestTakePendingOf(t *testing.T) {
	ctx := context.Background()
	counter := &lockCounter{MemoryStore: store.NewMemoryStore()}
	c := newClock()
	l := NewLedger(counter, testPrefix, mustSealer(t, testKey(9)), c.Now)
	p := newPending(c.Now())
	if err := l.SavePending(ctx, "handle", p); err != nil {
		t.Fatal(err)
	}
	unbound := newPending(c.Now())
	unbound.BrowserHash = ""
	if err := l.SavePending(ctx, "unbound", unbound); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, handle, browserHash string
		want                      error
	}{
		{"unknown handle", "no-such-handle", p.BrowserHash, ErrNotFound},
		{"empty handle", "", p.BrowserHash, ErrNotFound},
		{"another browser", "handle", "other-browser-hash", ErrOtherBrowser},
		{"a prefix of the binding", "handle", p.BrowserHash[:5], ErrOtherBrowser},
		{"no browser", "handle", "", ErrOtherBrowser},
		{"a record bound to no browser", "unbound", "", ErrOtherBrowser},
	} {
		got, err := l.TakePendingOf(ctx, tc.handle, tc.browserHash)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		if tc.want == ErrOtherBrowser && (got == nil || got.ClientID != p.ClientID) {
			t.Errorf("%s: the refusal does not say whose record it is: %+v", tc.name, got)
		}
		if counter.locks != 0 {
			t.Errorf("%s: took %d storage locks", tc.name, counter.locks)
			counter.locks = 0
		}
	}
	got, err := l.TakePendingOf(ctx, "handle", p.BrowserHash)
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("the browser's own TakePendingOf = %+v, %v; want %+v", got, err, p)
	}
	if counter.locks != 1 {
		t.Errorf("taking the record took %d storage locks, want 1", counter.locks)
	}
	if _, err := l.TakePendingOf(ctx, "handle", p.BrowserHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("taking it twice: err = %v, want ErrNotFound", err)
	}
}

func newCode(now time.Time) *Code {
	return &Code{
		ClientID:      "client-a",
		RedirectURI:   "http://127.0.0.1/cb",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		Server:        "support",
		Resource:      "https://gw.example/support",
		Scopes:        "tickets.read",
		User:          "alice",
		IssuedAt:      now,
		ExpiresAt:     now.Add(time.Minute),
	}
}

func testCodes(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	issue := func() string {
		t.Helper()
		code, err := l.IssueCode(ctx, newCode(env.clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		if !isSecret(code) {
			t.Fatalf("code %q is not 256 bits of base64url", code)
		}
		return code
	}
	redeemed, expiring, tombstone := issue(), issue(), issue()
	if redeemed == expiring {
		t.Fatal("two codes are equal")
	}
	if _, err := l.RedeemCode(ctx, redeemed, "fam-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RedeemCode(ctx, tombstone, "fam-t"); err != nil {
		t.Fatal(err)
	}
	env.clock.Advance(time.Minute) // expiring and tombstone have expired

	tests := []struct {
		name       string
		code       string
		wantErr    error
		wantFamily string
	}{
		{"replayed", redeemed, ErrCodeReused, "fam-1"},
		{"replayed again", redeemed, ErrCodeReused, "fam-1"},
		{"replayed after expiry", tombstone, ErrCodeReused, "fam-t"},
		{"expired", expiring, ErrExpired, ""},
		{"expired, asked again", expiring, ErrNotFound, ""},
		{"unknown", randomString(secretBytes), ErrNotFound, ""},
		{"malformed", "not-a-code", ErrNotFound, ""},
		{"empty", "", ErrNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := l.RedeemCode(ctx, tt.code, "fam-late")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("RedeemCode: err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantFamily != "" && (c == nil || c.FamilyID != tt.wantFamily || c.User != "alice") {
				t.Fatalf("RedeemCode returned %+v; want the record of the first redemption (family %s)", c, tt.wantFamily)
			}
		})
	}

	// The record of a fresh redemption.
	code := issue()
	c, err := l.RedeemCode(ctx, code, "fam-2")
	want := newCode(env.clock.Now())
	want.RedeemedAt, want.FamilyID = env.clock.Now(), "fam-2"
	if err != nil || !reflect.DeepEqual(c, want) {
		t.Errorf("RedeemCode = %+v, %v\nwant %+v", c, err, want)
	}
}

func testCodeRedeemedOnce(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	code, err := l.IssueCode(ctx, newCode(env.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	type result struct {
		c   *Code
		err error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			c, err := l.RedeemCode(ctx, code, "fam-"+string(rune('a'+i)))
			results[i] = result{c, err}
		})
	}
	close(start)
	wg.Wait()

	winner := ""
	for _, r := range results {
		if r.err == nil {
			if winner != "" {
				t.Fatalf("two redemptions succeeded: families %s and %s", winner, r.c.FamilyID)
			}
			winner = r.c.FamilyID
		}
	}
	if winner == "" {
		t.Fatal("no redemption succeeded")
	}
	for _, r := range results {
		if r.err != nil && (!errors.Is(r.err, ErrCodeReused) || r.c.FamilyID != winner) {
			t.Errorf("a losing redemption returned %+v, %v; want ErrCodeReused with family %s", r.c, r.err, winner)
		}
	}
}

func newFamily(now time.Time) *Family {
	return &Family{ClientID: "client-a", Server: "support", Resource: "https://gw.example/support", User: "alice", Scopes: "tickets.read", CreatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)}
}

func testRotation(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	const grace = 10 * time.Second

	// chain starts a family and rotates it n times, returning its tokens,
	// oldest first.
	chain := func(t *testing.T, n int) []string {
		t.Helper()
		tok, err := l.StartFamily(ctx, newFamily(env.clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		tokens := []string{tok}
		for range n {
			_, next, err := l.Rotate(ctx, tokens[len(tokens)-1], grace)
			if err != nil {
				t.Fatal(err)
			}
			tokens = append(tokens, next)
		}
		return tokens
	}
	tests := []struct {
		name      string
		rotations int
		prepare   func(tokens []string) // may advance the clock or revoke
		present   func(tokens []string) string
		wantErr   error
		wantNext  func(tokens []string) string // "" means a fresh token
		revokes   bool
	}{
		{
			name:    "current token rotates",
			present: func(ts []string) string { return ts[0] },
		},
		{
			name:      "current token after rotations",
			rotations: 3,
			present:   func(ts []string) string { return ts[3] },
		},
		{
			name:      "previous token within grace gets the current one",
			rotations: 1,
			prepare:   func([]string) { env.clock.Advance(grace) },
			present:   func(ts []string) string { return ts[0] },
			wantNext:  func(ts []string) string { return ts[1] },
		},
		{
			name:      "previous token after grace is reuse",
			rotations: 1,
			prepare:   func([]string) { env.clock.Advance(grace + time.Second) },
			present:   func(ts []string) string { return ts[0] },
			wantErr:   ErrRefreshReused,
			revokes:   true,
		},
		{
			name:      "older token is reuse",
			rotations: 2,
			present:   func(ts []string) string { return ts[0] },
			wantErr:   ErrRefreshReused,
			revokes:   true,
		},
		{
			name:      "made-up secret is refused, not reuse",
			rotations: 1,
			present:   func(ts []string) string { id, _ := FamilyIDOf(ts[0]); return id + "." + randomString(secretBytes) },
			wantErr:   ErrNotFound,
		},
		{
			name:      "an altered MAC is refused",
			rotations: 1,
			present:   func(ts []string) string { return flipSecretBit(ts[0], serialBytes) },
			wantErr:   ErrNotFound,
		},
		{
			name:      "an issued number with another token's MAC is refused",
			rotations: 2,
			present:   func(ts []string) string { return nextSerial(ts[0], 1) },
			wantErr:   ErrNotFound,
		},
		{
			name:      "a number beyond the current one is refused though its MAC is right",
			rotations: 1,
			present: func(ts []string) string {
				id, _ := FamilyIDOf(ts[0])
				key := l.key(kindFamilies, id)
				var rec familyRecord
				if err := l.get(ctx, kindFamilies, key, &rec); err != nil {
					t.Fatal(err)
				}
				macKey, err := l.open(key, rec.SealedKey)
				if err != nil {
					t.Fatal(err)
				}
				return tokenOf(macKey, id, rec.Serial+1)
			},
			wantErr: ErrNotFound,
		},
		{
			name:      "another family's token under this family's ID is refused",
			rotations: 1,
			present: func(ts []string) string {
				other, err := l.StartFamily(ctx, newFamily(env.clock.Now()))
				if err != nil {
					t.Fatal(err)
				}
				id, _ := FamilyIDOf(ts[0])
				_, secret, _ := strings.Cut(other, ".")
				return id + "." + secret
			},
			wantErr: ErrNotFound,
		},
		{
			name:      "non-canonical spelling of the current token is refused",
			rotations: 1,
			present:   func(ts []string) string { return nonCanonical(ts[1]) },
			wantErr:   ErrNotFound,
		},
		{
			name:    "expired family",
			prepare: func([]string) { env.clock.Advance(30 * 24 * time.Hour) },
			present: func(ts []string) string { return ts[0] },
			wantErr: ErrExpired,
		},
		{
			name:    "unknown family",
			present: func([]string) string { return "unknownfamily." + randomString(secretBytes) },
			wantErr: ErrNotFound,
		},
		{
			name:    "malformed token",
			present: func(ts []string) string { return ts[0] + "x" },
			wantErr: ErrNotFound,
		},
		{
			name:    "no family ID",
			present: func([]string) string { return randomString(secretBytes) },
			wantErr: ErrNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tokens := chain(t, tt.rotations)
			if tt.prepare != nil {
				tt.prepare(tokens)
			}
			fam, next, err := l.Rotate(ctx, tt.present(tokens), grace)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Rotate: err = %v, want %v", err, tt.wantErr)
			}
			id, _ := FamilyIDOf(tokens[0])
			if errors.Is(tt.wantErr, ErrNotFound) {
				// A token the family never issued changes nothing: the
				// current token still rotates.
				if stored, err := l.Family(ctx, id); err == nil && stored.Revoked {
					t.Fatalf("a token the family never issued revoked it (%s)", stored.RevokedReason)
				}
				if _, _, err := l.Rotate(ctx, tokens[len(tokens)-1], grace); err != nil {
					t.Errorf("Rotate(current token) after the refusal: %v", err)
				}
				return
			}
			if tt.revokes {
				if fam == nil || fam.ID != id || !fam.Revoked {
					t.Errorf("Rotate returned family %+v; want the revoked family", fam)
				}
				stored, err := l.Family(ctx, id)
				if err != nil || !stored.Revoked || stored.RevokedReason == "" {
					t.Errorf("stored family = %+v, %v; want it revoked with a reason", stored, err)
				}
				// The newest token is refused too.
				if _, _, err := l.Rotate(ctx, tokens[len(tokens)-1], grace); !errors.Is(err, ErrRevoked) {
					t.Errorf("Rotate(newest token) after reuse: err = %v, want ErrRevoked", err)
				}
			}
			if tt.wantErr != nil {
				return
			}
			if fam.ID != id || fam.User != "alice" {
				t.Errorf("Rotate returned family %+v; want %s of alice", fam, id)
			}
			if tt.wantNext != nil {
				if want := tt.wantNext(tokens); next != want {
					t.Errorf("Rotate returned %q; want the current token %q", next, want)
				}
				return
			}
			if got, _ := FamilyIDOf(next); got != id || slicesContains(tokens, next) {
				t.Errorf("Rotate returned %q; want a new token of family %s", next, id)
			}
			if !fam.RotatedAt.Equal(env.clock.Now()) {
				t.Errorf("RotatedAt = %v, want now", fam.RotatedAt)
			}
			// The new token works in turn.
			if _, _, err := l.Rotate(ctx, next, grace); err != nil {
				t.Errorf("Rotate(the new token): %v", err)
			}
		})
	}

	t.Run("StartFamily", func(t *testing.T) {
		f := newFamily(env.clock.Now())
		f.ID = "chosen-ID_1"
		tok, err := l.StartFamily(ctx, f)
		if id, ok := FamilyIDOf(tok); err != nil || !ok || id != "chosen-ID_1" {
			t.Fatalf("StartFamily = %q, %v; want a token of family chosen-ID_1", tok, err)
		}
		got, err := l.Family(ctx, "chosen-ID_1")
		if err != nil || !reflect.DeepEqual(got, f) {
			t.Errorf("Family = %+v, %v\nwant %+v", got, err, f)
		}
		if _, err := l.StartFamily(ctx, &Family{ID: "chosen-ID_1"}); err == nil {
			t.Error("StartFamily reused an existing family ID")
		}
		for _, id := range []string{"has.dot", "has/slash", strings.Repeat("a", 65)} {
			if _, err := l.StartFamily(ctx, &Family{ID: id}); err == nil {
				t.Errorf("StartFamily accepted the ID %q", id)
			}
		}
		if _, err := l.Family(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Family(unknown): err = %v, want ErrNotFound", err)
		}
	})
}

// flipSecretBit returns token with a bit of byte i of its secret flipped.
func flipSecretBit(token string, i int) string {
	id, encoded, _ := strings.Cut(token, ".")
	secret, _ := base64.RawURLEncoding.DecodeString(encoded)
	secret[i] ^= 1
	return id + "." + base64.RawURLEncoding.EncodeToString(secret)
}

// nextSerial returns token with its number advanced by n and its MAC kept.
func nextSerial(token string, n uint64) string {
	id, encoded, _ := strings.Cut(token, ".")
	secret, _ := base64.RawURLEncoding.DecodeString(encoded)
	binary.BigEndian.PutUint64(secret, binary.BigEndian.Uint64(secret)+n)
	return id + "." + base64.RawURLEncoding.EncodeToString(secret)
}

// nonCanonical spells the same secret bytes differently: 32 bytes leave
// two unused low bits in the last base64 character.
func nonCanonical(token string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, token[len(token)-1])
	return token[:len(token)-1] + string(alphabet[last^1])
}

func slicesContains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// testRotationGraceRace: a client refreshing twice at once with one token
// ends up with one valid token in both answers.
func testRotationGraceRace(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	tok, err := l.StartFamily(ctx, newFamily(env.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		next  [2]string
		errs  [2]error
		start = make(chan struct{})
	)
	for i := range 2 {
		wg.Go(func() {
			<-start
			_, next[i], errs[i] = l.Rotate(ctx, tok, 10*time.Second)
		})
	}
	close(start)
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("Rotate errors: %v, %v", errs[0], errs[1])
	}
	if next[0] != next[1] || next[0] == tok {
		t.Fatalf("the two refreshes returned %q and %q; want the same new token", next[0], next[1])
	}
	if _, _, err := l.Rotate(ctx, next[0], 0); err != nil {
		t.Errorf("the shared token does not rotate: %v", err)
	}
}

func testRevokeFamily(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	tok, err := l.StartFamily(ctx, newFamily(env.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	_, newest, err := l.Rotate(ctx, tok, 0)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := FamilyIDOf(newest)
	f, err := l.RevokeFamily(ctx, id, "revoked by the client")
	if err != nil || f.ID != id || f.Ref == "" || !f.Revoked {
		t.Fatalf("RevokeFamily = %+v, %v; want the revoked family with its reference", f, err)
	}
	if again, err := l.RevokeFamily(ctx, id, "second reason"); err != nil || again.Ref != f.Ref {
		t.Fatalf("RevokeFamily again = %+v, %v; want the same family", again, err)
	}
	if f, err := l.Family(ctx, id); err != nil || !f.Revoked || f.RevokedReason != "revoked by the client" {
		t.Errorf("Family = %+v, %v; want revoked with the first reason", f, err)
	}
	if _, _, err := l.Rotate(ctx, newest, time.Minute); !errors.Is(err, ErrRevoked) {
		t.Errorf("Rotate(newest token of a revoked family): err = %v, want ErrRevoked", err)
	}
	if _, err := l.RevokeFamily(ctx, "unknown", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeFamily(unknown): err = %v, want ErrNotFound", err)
	}
}

// testFamilyOfToken: every token a family issued finds it, current or
// replaced, revoked or not; a token it never issued finds nothing.
func testFamilyOfToken(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	f := newFamily(env.clock.Now())
	tokens := []string{}
	tok, err := l.StartFamily(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	tokens = append(tokens, tok)
	for range 3 {
		if _, tok, err = l.Rotate(ctx, tok, 0); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	check := func(when string) {
		for i, tok := range tokens {
			if got, err := l.FamilyOf(ctx, tok); err != nil || got.ID != f.ID || got.Ref != f.Ref {
				t.Errorf("%s: FamilyOf(token %d) = %+v, %v; want family %s", when, i, got, err, f.ID)
			}
		}
		for name, tok := range map[string]string{
			"made-up secret":         f.ID + "." + randomString(secretBytes),
			"altered MAC":            flipSecretBit(tokens[1], secretBytes-1),
			"number not yet issued":  nextSerial(tokens[3], 1),
			"non-canonical spelling": nonCanonical(tokens[3]),
			"unknown family":         "unknown." + randomString(secretBytes),
			"not a refresh token":    "not-a-token",
			"no family ID":           randomString(secretBytes),
			"empty":                  "",
			"another number's MAC":   nextSerial(tokens[0], 2),
			"a longer secret":        tokens[3] + "A",
		} {
			if got, err := l.FamilyOf(ctx, tok); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: FamilyOf(%s) = %+v, %v; want ErrNotFound", when, name, got, err)
			}
		}
	}
	check("live")
	if _, err := l.RevokeFamily(ctx, f.ID, "test"); err != nil {
		t.Fatal(err)
	}
	check("revoked")

	// A family stored without a key (by an earlier build) issued nothing
	// that can be told apart: its tokens are refused, and nothing revoked.
	old := newFamily(env.clock.Now())
	tok, err = l.StartFamily(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	key := l.key(kindFamilies, old.ID)
	if err := l.put(ctx, kindFamilies, key, &familyRecord{Family: *old}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.FamilyOf(ctx, tok); !errors.Is(err, ErrNotFound) {
		t.Errorf("FamilyOf(a token of a family without a key): %v, want ErrNotFound", err)
	}
	if _, _, err := l.Rotate(ctx, tok, time.Minute); !errors.Is(err, ErrNotFound) {
		t.Errorf("Rotate(a token of a family without a key): %v, want ErrNotFound", err)
	}
	if got, err := l.Family(ctx, old.ID); err != nil || got.Revoked {
		t.Errorf("the family without a key after its token was refused: %+v, %v", got, err)
	}
}

// testFamilyByRef: a family's reference finds it; the reference tells
// nothing of the ID, and nothing else finds a family.
func testFamilyByRef(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	f, g := newFamily(env.clock.Now()), newFamily(env.clock.Now())
	for _, fam := range []*Family{f, g} {
		if _, err := l.StartFamily(ctx, fam); err != nil {
			t.Fatal(err)
		}
	}
	if f.Ref == "" || f.Ref == g.Ref || strings.Contains(f.Ref, f.ID) {
		t.Fatalf("references %q and %q of families %s and %s: want distinct, opaque ones", f.Ref, g.Ref, f.ID, g.ID)
	}
	if got, err := l.FamilyByRef(ctx, f.Ref); err != nil || got.ID != f.ID {
		t.Fatalf("FamilyByRef = %+v, %v; want family %s", got, err, f.ID)
	}
	// Another gateway's ledger on the same storage and key opens nothing.
	other := NewLedger(env.store, testPrefix+"-other", mustSealer(t, testKey(9)), env.clock.Now)
	if got, err := other.FamilyByRef(ctx, f.Ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("another gateway's FamilyByRef = %+v, %v; want ErrNotFound", got, err)
	}
	// A reference sealed for the family's ID but not the one stored.
	fresh, err := l.newRef(f.ID)
	if err != nil {
		t.Fatal(err)
	}
	for name, ref := range map[string]string{
		"the family ID":       f.ID,
		"another reference":   fresh,
		"altered":             flipSecretBit("id."+f.Ref, 20)[len("id."):],
		"empty":               "",
		"too long":            strings.Repeat("A", maxRefLen+1),
		"not base64url":       "not a reference",
		"random":              randomString(60),
		"padded base64":       f.Ref + "==",
		"a refresh token":     f.ID + "." + randomString(secretBytes),
		"the reference twice": f.Ref + f.Ref,
	} {
		if got, err := l.FamilyByRef(ctx, ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("FamilyByRef(%s) = %+v, %v; want ErrNotFound", name, got, err)
		}
	}
}

func newGrant(now time.Time) *Grant {
	return &Grant{
		User: "alice",
		Token: &oauth2.Token{
			AccessToken:  "downstream-access-token-d41d8cd98f00b204",
			TokenType:    "Bearer",
			RefreshToken: "downstream-refresh-token-9e107d9d372bb682",
			Expiry:       now.Add(time.Hour),
		},
		Scopes:      "openid offline_access tickets.read",
		CreatedAt:   now,
		RefreshedAt: now,
	}
}

func testGrants(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	g := newGrant(env.clock.Now())
	if err := l.SaveGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	got, err := l.Grant(ctx, "alice")
	if err != nil || !reflect.DeepEqual(got, g) {
		t.Fatalf("Grant = %+v (token %+v), %v\nwant %+v (token %+v)", got, got.Token, err, g, g.Token)
	}
	if _, err := l.Grant(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Grant(unknown): err = %v, want ErrNotFound", err)
	}
	if err := l.SaveGrant(ctx, &Grant{User: "bob"}); err == nil {
		t.Error("SaveGrant accepted a grant without a token")
	}
}

// testNoSecretsInStorage scans every stored byte, keys included, for the
// secrets and identifiers that must not appear in the clear.
func testNoSecretsInStorage(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	now := env.clock.Now()
	g := newGrant(now)
	if err := l.SaveGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	p := newPending(now)
	const handle = "downstream-state-handle-secret"
	if err := l.SavePending(ctx, handle, p); err != nil {
		t.Fatal(err)
	}
	code, err := l.IssueCode(ctx, newCode(now))
	if err != nil {
		t.Fatal(err)
	}
	redeemed, err := l.IssueCode(ctx, newCode(now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.RedeemCode(ctx, redeemed, "fam"); err != nil {
		t.Fatal(err)
	}
	first, err := l.StartFamily(ctx, newFamily(now))
	if err != nil {
		t.Fatal(err)
	}
	_, second, err := l.Rotate(ctx, first, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SaveClient(ctx, &Client{ID: "client-identifier-a", SecretHash: HashSecret("client-secret-value")}); err != nil {
		t.Fatal(err)
	}
	if err := l.SaveConsent(ctx, &Consent{User: "alice", ClientID: "client-identifier-a", Server: "support"}); err != nil {
		t.Fatal(err)
	}
	if err := l.RememberBrowser(ctx, "browser-hash-value", "alice", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	secrets := map[string]string{
		"downstream access token":  g.Token.AccessToken,
		"downstream refresh token": g.Token.RefreshToken,
		"PKCE verifier":            p.DownstreamVerifier,
		"pending handle":           handle,
		"authorization code":       code,
		"redeemed code":            redeemed,
		"first refresh token":      first,
		"current refresh token":    second,
		"client secret":            "client-secret-value",
	}
	secretOf := func(tok string) string { return tok[strings.IndexByte(tok, '.')+1:] }
	secrets["first refresh secret"] = secretOf(first)
	secrets["current refresh secret"] = secretOf(second)
	inKeys := map[string]string{
		"user name":    "alice",
		"client ID":    "client-identifier-a",
		"browser hash": "browser-hash-value",
		"server":       "support",
	}

	keys, err := env.store.List(ctx, testPrefix, true)
	if err != nil {
		t.Fatal(err)
	}
	records := 0
	for _, key := range keys {
		for what, s := range secrets {
			if strings.Contains(key, s) {
				t.Errorf("storage key %s contains the %s", key, what)
			}
		}
		for what, s := range inKeys {
			if strings.Contains(strings.TrimPrefix(key, testPrefix), s) {
				t.Errorf("storage key %s reveals the %s", key, what)
			}
		}
		value, err := env.store.Load(ctx, key)
		if err != nil {
			continue // a directory
		}
		records++
		for what, s := range secrets {
			if bytes.Contains(value, []byte(s)) {
				t.Errorf("record %s contains the %s in the clear", key, what)
			}
		}
	}
	if records != 8 {
		t.Errorf("scanned %d records, want 8", records)
	}
}

// testSealedFieldsBound: a sealed field copied into another record does
// not open, so records cannot be swapped in storage.
func testSealedFieldsBound(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	now := env.clock.Now()
	alice, bob := newGrant(now), newGrant(now)
	bob.User = "bob"
	for _, g := range []*Grant{alice, bob} {
		if err := l.SaveGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	var aliceRec, bobRec grantRecord
	if err := l.get(ctx, kindGrants, l.grantKey("alice"), &aliceRec); err != nil {
		t.Fatal(err)
	}
	if err := l.get(ctx, kindGrants, l.grantKey("bob"), &bobRec); err != nil {
		t.Fatal(err)
	}
	bobRec.SealedToken = aliceRec.SealedToken // alice's token, in bob's record
	if err := l.put(ctx, kindGrants, l.grantKey("bob"), &bobRec); err != nil {
		t.Fatal(err)
	}
	if g, err := l.Grant(ctx, "bob"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Grant(bob) with alice's sealed token = %+v, %v; want an error", g, err)
	}

	// The same for a pending authorization moved to another handle.
	if err := l.SavePending(ctx, "handle-1", newPending(now)); err != nil {
		t.Fatal(err)
	}
	raw, err := env.store.Load(ctx, l.key(kindPending, "handle-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.store.Store(ctx, l.key(kindPending, "handle-2"), raw); err != nil {
		t.Fatal(err)
	}
	if p, err := l.Pending(ctx, "handle-2"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Pending(handle-2) with handle-1's record = %+v, %v; want an error", p, err)
	}
}

func testPrune(t *testing.T, env *ledgerEnv) {
	ctx, l := context.Background(), env.ledger
	now := env.clock.Now()
	if n, err := l.Prune(ctx); err != nil || n != 0 {
		t.Fatalf("Prune of an empty ledger = %d, %v", n, err)
	}
	if err := l.SavePending(ctx, "pending", newPending(now)); err != nil {
		t.Fatal(err)
	}
	code, err := l.IssueCode(ctx, newCode(now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.RedeemCode(ctx, code, "fam"); err != nil {
		t.Fatal(err)
	}
	short := newFamily(now)
	short.ExpiresAt = now.Add(time.Hour)
	shortTok, err := l.StartFamily(ctx, short)
	if err != nil {
		t.Fatal(err)
	}
	longTok, err := l.StartFamily(ctx, newFamily(now))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RememberBrowser(ctx, "browser", "alice", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.SaveGrant(ctx, newGrant(now)); err != nil {
		t.Fatal(err)
	}

	env.clock.Advance(2 * time.Hour)
	// Gone: the pending authorization, the short family, the browser. Kept:
	// the code's tombstone (within CodeRetention), the long family, the grant.
	if n, err := l.Prune(ctx); err != nil || n != 3 {
		t.Fatalf("Prune = %d, %v; want 3", n, err)
	}
	if _, err := l.RedeemCode(ctx, code, "other"); !errors.Is(err, ErrCodeReused) {
		t.Errorf("the code's tombstone was pruned too early: err = %v", err)
	}
	if _, _, err := l.Rotate(ctx, shortTok, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Rotate(pruned family): err = %v, want ErrNotFound", err)
	}
	if _, _, err := l.Rotate(ctx, longTok, 0); err != nil {
		t.Errorf("Rotate(live family) after Prune: %v", err)
	}

	env.clock.Advance(CodeRetention)
	if n, err := l.Prune(ctx); err != nil || n != 1 {
		t.Fatalf("second Prune = %d, %v; want 1 (the code's tombstone)", n, err)
	}
	if _, err := l.Grant(ctx, "alice"); err != nil {
		t.Errorf("Prune removed a grant: %v", err)
	}
}

func TestFamilyIDOf(t *testing.T) {
	secret := randomString(secretBytes)
	tests := []struct {
		token  string
		wantID string
		wantOK bool
	}{
		{"fam." + secret, "fam", true},
		{"A-z_09." + secret, "A-z_09", true},
		{secret, "", false},
		{"." + secret, "", false},
		{"fam.", "", false},
		{"fam." + secret + "x", "", false},
		{"fam." + secret[1:], "", false},
		{"fa/m." + secret, "", false},
		{"a.b." + secret, "", false},
		{strings.Repeat("f", 65) + "." + secret, "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		id, ok := FamilyIDOf(tt.token)
		if id != tt.wantID || ok != tt.wantOK {
			t.Errorf("FamilyIDOf(%q) = %q, %v; want %q, %v", tt.token, id, ok, tt.wantID, tt.wantOK)
		}
	}
}

func TestDigestSeparatesParts(t *testing.T) {
	if digest("ab", "c") == digest("a", "bc") {
		t.Error(`digest("ab", "c") == digest("a", "bc")`)
	}
	if digest("x") == digest("x", "") {
		t.Error(`digest("x") == digest("x", "")`)
	}
}

func BenchmarkRotate(b *testing.B) {
	ctx := context.Background()
	l := NewLedger(store.NewMemoryStore(), testPrefix, mustSealer(b, testKey(1)), nil)
	tok, err := l.StartFamily(ctx, &Family{ClientID: "client-a", User: "alice"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, tok, err = l.Rotate(ctx, tok, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedeemCode(b *testing.B) {
	ctx := context.Background()
	l := NewLedger(store.NewMemoryStore(), testPrefix, mustSealer(b, testKey(1)), nil)
	codes := make([]string, b.N)
	for i := range codes {
		var err error
		if codes[i], err = l.IssueCode(ctx, &Code{ClientID: "client-a", User: "alice", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := l.RedeemCode(ctx, codes[i], "fam"); err != nil {
			b.Fatal(err)
		}
	}
}
