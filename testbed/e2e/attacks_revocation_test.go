package e2e_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/jwk"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestAttacksRevocation attacks the revocation of grants: nobody but the
// holder of a token the gateway issued can end a grant, and an access
// token has a single valid form.
func TestAttacksRevocation(t *testing.T) {
	e := startEnv(t, testenv.ProviderConfig{})

	// forged is a refresh token of the victim's family with a secret the
	// gateway never issued: the family ID is the refresh token's prefix.
	forged := func(t *testing.T, refreshToken string) string {
		t.Helper()
		family, _, ok := strings.Cut(refreshToken, ".")
		if !ok {
			t.Fatalf("the refresh token has no family prefix")
		}
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			t.Fatal(err)
		}
		return family + "." + base64.RawURLEncoding.EncodeToString(secret)
	}
	// stillWorks checks that the victim's grant survived: its access token
	// is accepted and its refresh token refreshes.
	stillWorks := func(t *testing.T, victim *client, tok tokens) {
		t.Helper()
		if status := bearerStatus(t, e.public+"/support", tok.AccessToken); status != http.StatusOK {
			t.Errorf("the victim's access token after the attack: %d", status)
		}
		if next := victim.refresh(t, "support-assistant", tok.RefreshToken); next.Status != http.StatusOK {
			t.Errorf("the victim's refresh after the attack: %d %s %s", next.Status, next.Error, next.Description)
		}
	}

	t.Run("forged refresh token at the revocation endpoint", func(t *testing.T) {
		victim := e.register(t, "support-assistant")
		tok := victim.login(t, "support-assistant", "")
		// A public client's ID is all it takes to authenticate as it.
		attacker := e.client(victim.ID)
		resp, err := http.PostForm(e.public+"/oauth/support-assistant/revoke", url.Values{"token": {forged(t, tok.RefreshToken)}, "client_id": {attacker.ID}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("revocation of an unknown token: %d, want 200 (RFC 7009 §2.2)", resp.StatusCode)
		}
		stillWorks(t, victim, tok)
	})

	t.Run("forged refresh token at the token endpoint", func(t *testing.T) {
		victim := e.register(t, "support-assistant")
		tok := victim.login(t, "support-assistant", "")
		attacker := e.client(victim.ID)
		wantTokenError(t, attacker.refresh(t, "support-assistant", forged(t, tok.RefreshToken)), http.StatusBadRequest, "invalid_grant")
		stillWorks(t, victim, tok)
	})

	t.Run("access token names no refresh family", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		tok := c.login(t, "support-assistant", "")
		family, _, _ := strings.Cut(tok.RefreshToken, ".")
		parts := strings.Split(tok.AccessToken, ".")
		if len(parts) != 3 {
			t.Fatalf("the access token has %d parts", len(parts))
		}
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatal(err)
		}
		if _, ok := claims["fam"]; ok {
			t.Errorf("the access token has a fam claim: %s", payload)
		}
		if strings.Contains(string(payload), family) {
			t.Errorf("the access token's claims contain the refresh family ID %q: %s", family, payload)
		}
	})

	t.Run("high-S twin of an access token", func(t *testing.T) {
		c := e.register(t, "support-assistant")
		tok := c.login(t, "support-assistant", "")
		pub := signingKey(t, e, tok.AccessToken)
		parts := strings.Split(tok.AccessToken, ".")
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || len(sig) != 64 {
			t.Fatalf("the access token's signature is not 64 bytes of base64url: %v", err)
		}
		n := elliptic.P256().Params().N
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if s.Cmp(new(big.Int).Rsh(n, 1)) > 0 {
			t.Errorf("the gateway signed with a high S: every token has a second valid form")
		}
		twinS := new(big.Int).Sub(n, s)
		twinSig := make([]byte, 64)
		r.FillBytes(twinSig[:32])
		twinS.FillBytes(twinSig[32:])
		signed := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		// The twin is a valid ECDSA signature of the same claims.
		if !ecdsa.Verify(pub, signed[:], r, twinS) {
			t.Fatal("the twin does not verify under plain ECDSA; the test is broken")
		}
		twin := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(twinSig)
		if status, challenge := challengeOf(t, e.public+"/support", twin); status != http.StatusUnauthorized || !strings.Contains(challenge, "invalid_token") {
			t.Fatalf("the high-S twin of an access token: %d %s, want 401 invalid_token", status, challenge)
		}
		if status := bearerStatus(t, e.public+"/support", tok.AccessToken); status != http.StatusOK {
			t.Fatalf("the original access token: %d", status)
		}
	})
}

// signingKey returns the public key, from the server's JWKS, that signed
// an access token.
func signingKey(t *testing.T, e *env, accessToken string) *ecdsa.PublicKey {
	t.Helper()
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(accessToken, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(header, &h); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(e.public + "/oauth/support-assistant/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := jwk.ParseSet(raw)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := keys[h.Kid]
	if !ok {
		t.Fatalf("the JWKS has no key %q", h.Kid)
	}
	pub, err := k.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub.(*ecdsa.PublicKey)
}
