package accesstoken

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/jwk"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

const testKey = "mcp_gateway/main/signing_keys"

// clock is a settable clock, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := new(clock)
	c.ns.Store(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newSealer(t testing.TB) *store.Sealer {
	t.Helper()
	s, err := store.NewSealer(randomBytes(t, store.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// fixture is one gateway instance's Keyset and Verifier on a shared store.
type fixture struct {
	store  *store.MemoryStore
	sealer *store.Sealer
	clock  *clock
	keys   *Keyset
	v      *Verifier
}

func newFixture(t testing.TB, opts VerifierOptions) *fixture {
	t.Helper()
	f := &fixture{store: store.NewMemoryStore(), sealer: newSealer(t), clock: newClock()}
	f.keys = f.load(t)
	f.v = NewVerifier(f.keys, opts)
	return f
}

// load returns another instance's Keyset on the same storage.
func (f *fixture) load(t testing.TB) *Keyset {
	t.Helper()
	k, err := LoadKeyset(context.Background(), f.store, testKey, f.sealer, f.clock.Now)
	if err != nil {
		t.Fatalf("LoadKeyset: %v", err)
	}
	return k
}

func (f *fixture) claims() Claims {
	now := f.clock.Now()
	return Claims{
		Issuer:    "https://mcp.example.com/oauth/support",
		Subject:   "alice@example.com",
		Audience:  "https://mcp.example.com/support",
		Scope:     "accounts.read tickets.read",
		ClientID:  "https://client.example/metadata.json",
		FamilyRef: "ref-1",
		IssuedAt:  now,
		NotBefore: now,
		ExpiresAt: now.Add(time.Hour),
	}
}

func (f *fixture) issue(t testing.TB, c Claims) string {
	t.Helper()
	tok, err := f.keys.Issue(c)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

func (f *fixture) stored(t testing.TB) *storedKeyset {
	t.Helper()
	raw, err := f.store.Load(context.Background(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	var doc storedKeyset
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return &doc
}

// kidOf returns the kid in a token's header.
func kidOf(t testing.TB, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	want := f.claims()
	want.ID = "token-1"
	tok := f.issue(t, want)

	// The header is exactly what RFC 9068 asks for.
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header["alg"] != "ES256" || parsed.Header["typ"] != "at+jwt" || parsed.Header["kid"] != f.keys.state.Load().signer.kid {
		t.Fatalf("header = %v, want alg ES256, typ at+jwt and the signing kid", parsed.Header)
	}
	// aud is a single string, and ref carries the family's reference.
	mc := parsed.Claims.(jwt.MapClaims)
	if mc["aud"] != want.Audience || mc["ref"] != "ref-1" || mc["client_id"] != want.ClientID || mc["scope"] != want.Scope {
		t.Fatalf("claims = %v", mc)
	}

	for _, pass := range []string{"cold", "warm"} {
		got, err := f.v.Verify(tok)
		if err != nil {
			t.Fatalf("%s Verify: %v", pass, err)
		}
		if *got != want {
			t.Fatalf("%s Verify = %+v, want %+v", pass, *got, want)
		}
		// The caller owns the result: changing it changes no cache.
		got.Subject = "mallory"
	}
	if n := f.v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d tokens, want 1", n)
	}
}

func TestIssue(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	now := f.clock.Now()
	tests := []struct {
		name    string
		edit    func(*Claims)
		wantErr string
		check   func(t *testing.T, c *Claims)
	}{
		{name: "defaults", edit: func(c *Claims) { c.IssuedAt, c.NotBefore, c.ID = time.Time{}, time.Time{}, "" }, check: func(t *testing.T, c *Claims) {
			if !c.IssuedAt.Equal(now) || !c.NotBefore.Equal(now) {
				t.Errorf("iat, nbf = %v, %v; want both %v", c.IssuedAt, c.NotBefore, now)
			}
			if len(c.ID) != 26 {
				t.Errorf("jti = %q, want 26 random base32 characters", c.ID)
			}
		}},
		{name: "nbf defaults to iat", edit: func(c *Claims) { c.IssuedAt, c.NotBefore = now.Add(-time.Minute), time.Time{} }, check: func(t *testing.T, c *Claims) {
			if !c.NotBefore.Equal(now.Add(-time.Minute)) {
				t.Errorf("nbf = %v, want iat", c.NotBefore)
			}
		}},
		{name: "explicit ID kept", edit: func(c *Claims) { c.ID = "jti-7" }, check: func(t *testing.T, c *Claims) {
			if c.ID != "jti-7" {
				t.Errorf("jti = %q, want jti-7", c.ID)
			}
		}},
		{name: "no family", edit: func(c *Claims) { c.FamilyRef = "" }, check: func(t *testing.T, c *Claims) {
			if c.FamilyRef != "" {
				t.Errorf("ref = %q, want none", c.FamilyRef)
			}
		}},
		{name: "longest lifetime", edit: func(c *Claims) { c.ExpiresAt = now.Add(MaxLifetime) }},
		{name: "no issuer", edit: func(c *Claims) { c.Issuer = "" }, wantErr: "issuer"},
		{name: "no subject", edit: func(c *Claims) { c.Subject = "" }, wantErr: "subject"},
		{name: "no audience", edit: func(c *Claims) { c.Audience = "" }, wantErr: "audience"},
		{name: "no expiry", edit: func(c *Claims) { c.ExpiresAt = time.Time{} }, wantErr: "ExpiresAt"},
		{name: "expiry now", edit: func(c *Claims) { c.ExpiresAt = now }, wantErr: "not in the future"},
		{name: "too long", edit: func(c *Claims) { c.ExpiresAt = now.Add(MaxLifetime + time.Second) }, wantErr: "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.claims()
			tt.edit(&c)
			tok, err := f.keys.Issue(c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Issue error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			got, err := f.v.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestIssueUniqueIDs(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	seen := map[string]bool{}
	for range 50 {
		c, err := f.v.Verify(f.issue(t, f.claims()))
		if err != nil {
			t.Fatal(err)
		}
		if seen[c.ID] {
			t.Fatalf("jti %q issued twice", c.ID)
		}
		seen[c.ID] = true
	}
}

func TestKeysSurviveReload(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	tok := f.issue(t, f.claims())

	again := f.load(t)
	if a, b := f.keys.state.Load().signer.kid, again.state.Load().signer.kid; a != b {
		t.Fatalf("second LoadKeyset signs with %q, first with %q", b, a)
	}
	if !bytes.Equal(f.keys.JWKS(), again.JWKS()) {
		t.Fatal("second LoadKeyset publishes another JWKS")
	}
	// A token from one instance verifies at the other, and back.
	if _, err := NewVerifier(again, VerifierOptions{}).Verify(tok); err != nil {
		t.Fatalf("token from the first instance: %v", err)
	}
	tok2, err := again.Issue(f.claims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(tok2); err != nil {
		t.Fatalf("token from the second instance: %v", err)
	}
}

func TestConcurrentLoadCreatesOneKey(t *testing.T) {
	store, sealer, clk := store.NewMemoryStore(), newSealer(t), newClock()
	const n = 10
	kids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, err := LoadKeyset(context.Background(), store, testKey, sealer, clk.Now)
			if err != nil {
				errs[i] = err
				return
			}
			kids[i] = k.state.Load().signer.kid
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("LoadKeyset %d: %v", i, errs[i])
		}
		if kids[i] != kids[0] {
			t.Fatalf("instance %d signs with %q, instance 0 with %q", i, kids[i], kids[0])
		}
	}
	f := &fixture{store: store}
	if doc := f.stored(t); len(doc.Keys) != 1 || doc.Keys[0].Public.Kid != kids[0] {
		t.Fatalf("storage holds %d keys, want the one key %q", len(doc.Keys), kids[0])
	}
}

func TestRotate(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	ctx := context.Background()
	oldKid := f.keys.state.Load().signer.kid
	oldTok := f.issue(t, f.claims())
	if _, err := f.v.Verify(oldTok); err != nil {
		t.Fatal(err)
	}

	f.clock.Advance(time.Minute)
	if err := f.keys.Rotate(ctx); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	newTok := f.issue(t, f.claims())
	newKid := kidOf(t, newTok)
	if newKid == oldKid || newKid != f.keys.state.Load().signer.kid {
		t.Fatalf("new token has kid %q; old kid %q, signing kid %q", newKid, oldKid, f.keys.state.Load().signer.kid)
	}
	// The old token verifies warm and cold; the new one too.
	cold := NewVerifier(f.keys, VerifierOptions{})
	for name, v := range map[string]*Verifier{"warm": f.v, "cold": cold} {
		for _, tok := range []string{oldTok, newTok} {
			if _, err := v.Verify(tok); err != nil {
				t.Fatalf("%s Verify of kid %q after Rotate: %v", name, kidOf(t, tok), err)
			}
		}
	}

	// The JWKS holds both keys, newest first, and they verify the tokens.
	set, err := jwk.ParseSet(f.keys.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	if len(set) != 2 {
		t.Fatalf("JWKS has %d keys, want 2", len(set))
	}
	var published jwk.Set
	if err := json.Unmarshal(f.keys.JWKS(), &published); err != nil {
		t.Fatal(err)
	}
	if published.Keys[0].Kid != newKid || published.Keys[1].Kid != oldKid {
		t.Fatalf("JWKS order = %q, %q; want newest first", published.Keys[0].Kid, published.Keys[1].Kid)
	}
	for _, tok := range []string{oldTok, newTok} {
		if _, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
			return set[tk.Header["kid"].(string)].PublicKey()
		}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(f.clock.Now)); err != nil {
			t.Fatalf("token does not verify with the published JWKS: %v", err)
		}
	}

	// Keys describes the same keys: the old one retires RetireAfter past
	// the new one's creation.
	infos := f.keys.Keys()
	if len(infos) != 2 || infos[0].Kid != newKid || !infos[0].Signing || !infos[0].RetireAt.IsZero() ||
		infos[1].Kid != oldKid || infos[1].Signing || !infos[1].RetireAt.Equal(infos[0].Created.Add(RetireAfter)) {
		t.Fatalf("Keys() = %+v; want %q signing, then %q retiring", infos, newKid, oldKid)
	}

	// Storage keeps only the signing key's private half.
	if doc := f.stored(t); len(doc.Keys) != 2 || doc.Keys[1].Public.Kid != newKid {
		t.Fatalf("storage holds %+v", doc.Keys)
	}

	// Past RetireAfter the old key stops verifying and leaves the JWKS;
	// the next rotation drops it from storage.
	f.clock.Advance(RetireAfter)
	if _, err := f.v.Verify(oldTok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old token after RetireAfter: %v, want ErrUnknownKey", err)
	}
	if _, err := f.keys.lookup(oldKid, f.clock.Now()); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("lookup of the retired key: %v, want ErrUnknownKey", err)
	}
	if err := f.keys.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(f.keys.JWKS()), oldKid) {
		t.Fatal("the retired key is still published")
	}
	if err := f.keys.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if doc := f.stored(t); len(doc.Keys) != 2 || doc.Keys[0].Public.Kid != newKid {
		t.Fatalf("after a second rotation storage holds %d keys, want the previous and the new one", len(doc.Keys))
	}
}

func TestReloadPicksUpRotation(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	other := f.load(t)
	if err := other.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.keys.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if a, b := f.keys.state.Load().signer.kid, other.state.Load().signer.kid; a != b {
		t.Fatalf("after Reload signs with %q; the rotating instance with %q", a, b)
	}
}

func TestVerifyReloadsForUnknownKey(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	other := f.load(t)
	ctx := context.Background()

	// Another instance rotates and issues: this instance reloads on
	// seeing the new kid.
	if err := other.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := other.Issue(f.claims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(tok); err != nil {
		t.Fatalf("token signed after another instance rotated: %v", err)
	}

	// At most one such reload a minute.
	if err := other.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	tok2, err := other.Issue(f.claims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(tok2); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("second rotation within a minute: %v, want ErrUnknownKey", err)
	}
	f.clock.Advance(time.Minute)
	if _, err := f.v.Verify(tok2); err != nil {
		t.Fatalf("second rotation a minute later: %v", err)
	}
}

func TestWithdrawnKeyRefusesCachedTokens(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	ctx := context.Background()
	tok := f.issue(t, f.claims())
	if _, err := f.v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	// The operator deletes the keys; another instance creates new ones.
	if err := f.store.Delete(ctx, testKey); err != nil {
		t.Fatal(err)
	}
	f.load(t)
	if err := f.keys.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("cached token of a deleted key: %v, want ErrUnknownKey", err)
	}
}

func TestPrivateKeyNotInStorage(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	if err := f.keys.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	priv := f.keys.state.Load().signer.priv
	d, err := priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := f.store.Load(context.Background(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string][]byte{
		"raw D":             d,
		"base64url D":       []byte(base64.RawURLEncoding.EncodeToString(d)),
		"base64 D":          []byte(base64.StdEncoding.EncodeToString(d)),
		"PKCS #8":           der,
		"base64 PKCS #8":    []byte(base64.StdEncoding.EncodeToString(der)),
		"SEC 1":             sec1,
		"base64 SEC 1":      []byte(base64.StdEncoding.EncodeToString(sec1)),
		"PEM header":        []byte("PRIVATE KEY"),
		"JWK private claim": []byte(`"d":`),
	} {
		if bytes.Contains(raw, secret) {
			t.Errorf("storage contains the private key as %s", name)
		}
	}
	// Not vacuous: the sealed key is there and opens to the signing key.
	doc := f.stored(t)
	plain, err := f.sealer.Open(doc.Private, f.keys.additionalData(doc.Keys[len(doc.Keys)-1].Public.Kid))
	if err != nil || !bytes.Equal(plain, der) {
		t.Fatalf("the sealed private key does not open to the signing key: %v", err)
	}
}

func TestLoadKeysetRefusesBadStorage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, VerifierOptions{})
	good, err := f.store.Load(ctx, testKey)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, err := publicJWK(&mustKey(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(fn func(doc *storedKeyset)) []byte {
		var doc storedKeyset
		if err := json.Unmarshal(good, &doc); err != nil {
			t.Fatal(err)
		}
		fn(&doc)
		raw, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}

	tests := []struct {
		name    string
		key     string // storage key; testKey when empty
		raw     []byte
		sealer  *store.Sealer
		wantErr string
	}{
		{name: "another sealer", raw: good, sealer: newSealer(t), wantErr: "no longer has"},
		{name: "copied to another gateway", key: "mcp_gateway/other/signing_keys", raw: good, wantErr: "opening the signing key"},
		{name: "not JSON", raw: []byte("{"), wantErr: "corrupt"},
		{name: "newer format", raw: edit(func(d *storedKeyset) { d.Version = 2 }), wantErr: "format version 2"},
		{name: "no keys", raw: edit(func(d *storedKeyset) { d.Keys = nil }), wantErr: "corrupt"},
		{name: "kid not the thumbprint", raw: edit(func(d *storedKeyset) { d.Keys[0].Public.Kid = "k1" }), wantErr: "does not match its kid"},
		{name: "not ES256", raw: edit(func(d *storedKeyset) { d.Keys[0].Public.Alg = "ES384" }), wantErr: "not an ES256 key"},
		{name: "public key swapped", raw: edit(func(d *storedKeyset) { d.Keys[0].Public = otherPub }), wantErr: "opening the signing key"},
		{name: "private key removed", raw: edit(func(d *storedKeyset) { d.Private = nil }), wantErr: "opening the signing key"},
		{name: "duplicate key", raw: edit(func(d *storedKeyset) { d.Keys = append(d.Keys, d.Keys[0]) }), wantErr: "appears twice"},
		{name: "out of order", raw: edit(func(d *storedKeyset) {
			d.Keys = append([]storedKey{{Created: d.Keys[0].Created.Add(time.Hour), Public: otherPub}}, d.Keys...)
		}), wantErr: "out of order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := store.NewMemoryStore()
			key := tt.key
			if key == "" {
				key = testKey
			}
			if err := store.Store(ctx, key, tt.raw); err != nil {
				t.Fatal(err)
			}
			sealer := tt.sealer
			if sealer == nil {
				sealer = f.sealer
			}
			k, err := LoadKeyset(ctx, store, key, sealer, f.clock.Now)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadKeyset = %v, %v; want an error containing %q", k, err, tt.wantErr)
			}
			// Nothing was overwritten: the operator can still repair it.
			if after, _ := store.Load(ctx, key); !bytes.Equal(after, tt.raw) {
				t.Fatal("LoadKeyset replaced the stored keys")
			}
		})
	}

	if _, err := LoadKeyset(ctx, nil, testKey, f.sealer, nil); err == nil {
		t.Error("LoadKeyset without a store succeeded")
	}
	if _, err := LoadKeyset(ctx, f.store, testKey, nil, nil); err == nil {
		t.Error("LoadKeyset without a sealer succeeded")
	}
}

func TestReloadKeepsKeysOnError(t *testing.T) {
	f := newFixture(t, VerifierOptions{})
	ctx := context.Background()
	kid := f.keys.state.Load().signer.kid
	if err := f.store.Store(ctx, testKey, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if err := f.keys.Reload(ctx); err == nil {
		t.Fatal("Reload of corrupt storage succeeded")
	}
	if err := f.keys.Rotate(ctx); err == nil {
		t.Fatal("Rotate over corrupt storage succeeded")
	}
	if got := f.keys.state.Load().signer.kid; got != kid {
		t.Fatalf("after failed reloads signs with %q, want %q", got, kid)
	}
	if _, err := f.v.Verify(f.issue(t, f.claims())); err != nil {
		t.Fatal(err)
	}
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(ecdsaCurve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
