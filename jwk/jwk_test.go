package jwk

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

// rsaKey is generated once: 2048-bit generation is the slowest step here.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func mustECDSA(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPublicRoundTrip(t *testing.T) {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		alg     string
		pub     crypto.PublicKey
		kty     string
		crv     string
		xyBytes int // decoded length of x (and y), 0 for RSA
	}{
		{"P-256", "ES256", &mustECDSA(t, elliptic.P256()).PublicKey, "EC", "P-256", 32},
		{"P-384", "ES384", &mustECDSA(t, elliptic.P384()).PublicKey, "EC", "P-384", 48},
		{"P-521", "ES512", &mustECDSA(t, elliptic.P521()).PublicKey, "EC", "P-521", 66},
		{"P-256 without alg", "", &mustECDSA(t, elliptic.P256()).PublicKey, "EC", "P-256", 32},
		{"RSA", "RS256", &rsaKey().PublicKey, "RSA", "", 0},
		{"RSA-PSS", "PS384", &rsaKey().PublicKey, "RSA", "", 0},
		{"Ed25519", "EdDSA", edPub, "OKP", "Ed25519", 32},
		{"Ed25519 fully specified", "Ed25519", edPub, "OKP", "Ed25519", 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := Public("kid-1", tt.alg, tt.pub)
			if err != nil {
				t.Fatalf("Public: %v", err)
			}
			if k.Kty != tt.kty || k.Crv != tt.crv || k.Alg != tt.alg || k.Use != "sig" || k.Kid != "kid-1" {
				t.Fatalf("Public = %+v, want kty %s crv %q alg %q use sig kid kid-1", k, tt.kty, tt.crv, tt.alg)
			}
			if tt.xyBytes > 0 && len(k.X) != b64.EncodedLen(tt.xyBytes) {
				t.Errorf("x has %d characters, want %d (full-size coordinates)", len(k.X), b64.EncodedLen(tt.xyBytes))
			}

			data, err := json.Marshal(k)
			if err != nil {
				t.Fatal(err)
			}
			var back Key
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatalf("Unmarshal(%s): %v", data, err)
			}
			if back != k {
				t.Fatalf("JSON round trip = %+v, want %+v", back, k)
			}
			got, err := back.PublicKey()
			if err != nil {
				t.Fatalf("PublicKey: %v", err)
			}
			if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(tt.pub) {
				t.Fatalf("PublicKey = %v, want %v", got, tt.pub)
			}
		})
	}
}

func TestPublicRefuses(t *testing.T) {
	p256 := mustECDSA(t, elliptic.P256())
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		alg  string
		pub  crypto.PublicKey
		want string
	}{
		{"ECDSA private key", "ES256", p256, "private key"},
		{"Ed25519 private key", "EdDSA", edPriv, "private key"},
		{"RSA private key", "RS256", rsaKey(), "private key"},
		{"P-224", "", &mustECDSA(t, elliptic.P224()).PublicKey, "unsupported ECDSA curve"},
		{"wrong alg for curve", "ES384", &p256.PublicKey, `alg "ES384"`},
		{"HMAC alg", "HS256", &p256.PublicKey, `alg "HS256"`},
		{"none alg", "none", &rsaKey().PublicKey, `alg "none"`},
		{"unsupported type", "", []byte("secret"), "unsupported public key type"},
		{"nil", "", nil, "unsupported public key type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Public("k", tt.alg, tt.pub)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Public error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// validKeys returns one valid JWK of each type as a map, so that test cases
// can change one member at a time.
func validKeys(t *testing.T) map[string]map[string]any {
	t.Helper()
	ec, err := Public("ec", "ES256", &mustECDSA(t, elliptic.P256()).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Public("rsa", "RS256", &rsaKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := Public("ed", "EdDSA", edPub)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for name, k := range map[string]Key{"EC": ec, "RSA": rs, "OKP": ed} {
		data, _ := json.Marshal(k)
		m := map[string]any{}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		out[name] = m
	}
	return out
}

func TestPublicKeyStrict(t *testing.T) {
	valid := validKeys(t)
	ecX, _ := b64.DecodeString(valid["EC"]["x"].(string))
	ecY, _ := b64.DecodeString(valid["EC"]["y"].(string))
	offCurveY := append([]byte(nil), ecY...)
	offCurveY[len(offCurveY)-1] ^= 1
	rsaN, _ := b64.DecodeString(valid["RSA"]["n"].(string))
	evenN := append([]byte(nil), rsaN...)
	evenN[len(evenN)-1] &^= 1
	small := append([]byte{0x80}, make([]byte, 127)...) // 1024 bits, odd below
	small[127] = 1
	huge := append([]byte{0x80}, make([]byte, 1024)...) // 8200 bits
	huge[1024] = 1

	// nonCanonical changes the last character of a base64url value so that
	// its unused trailing bits are not zero: same bytes, second spelling.
	nonCanonical := func(s string) string {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		last := strings.IndexByte(alphabet, s[len(s)-1])
		return s[:len(s)-1] + string(alphabet[last|1])
	}

	tests := []struct {
		name string
		base string         // "EC", "RSA" or "OKP"
		set  map[string]any // members to set; nil values delete
		want string         // part of the error
	}{
		{"EC private d", "EC", map[string]any{"d": b64.EncodeToString(ecX)}, "private key material"},
		{"RSA private p", "RSA", map[string]any{"p": "AQAB"}, "private key material"},
		{"OKP private d", "OKP", map[string]any{"d": "AA"}, "private key material"},
		{"symmetric k", "EC", map[string]any{"kty": "oct", "k": "c2VjcmV0", "crv": nil, "x": nil, "y": nil, "alg": nil}, "private key material"},
		{"symmetric kty", "EC", map[string]any{"kty": "oct", "crv": nil, "x": nil, "y": nil, "alg": nil}, "symmetric key"},
		{"missing kty", "EC", map[string]any{"kty": nil, "alg": nil}, "no kty"},
		{"unknown kty", "EC", map[string]any{"kty": "XYZ", "alg": nil}, "unsupported kty"},
		{"kty is case-sensitive", "EC", map[string]any{"kty": "ec", "alg": nil}, "unsupported kty"},
		{"member names are case-sensitive", "EC", map[string]any{"kty": nil, "KTY": "EC", "alg": nil}, "no kty"},
		{"encryption use", "EC", map[string]any{"use": "enc"}, "not signatures"},
		{"EC unknown curve", "EC", map[string]any{"crv": "secp256k1", "alg": nil}, "unsupported EC crv"},
		{"EC alg of another curve", "EC", map[string]any{"alg": "ES384"}, `alg "ES384"`},
		{"EC alg HS256", "EC", map[string]any{"alg": "HS256"}, `alg "HS256"`},
		{"EC alg none", "EC", map[string]any{"alg": "none"}, `alg "none"`},
		{"EC short x", "EC", map[string]any{"x": b64.EncodeToString(ecX[1:])}, "exactly 32 octets"},
		{"EC long y", "EC", map[string]any{"y": b64.EncodeToString(append([]byte{0}, ecY...))}, "exactly 32 octets"},
		{"EC missing y", "EC", map[string]any{"y": nil}, "exactly 32 octets"},
		{"EC padded x", "EC", map[string]any{"x": valid["EC"]["x"].(string) + "="}, "exactly 32 octets"},
		{"EC standard base64 x", "EC", map[string]any{"x": strings.NewReplacer("-", "+", "_", "/").Replace(valid["EC"]["x"].(string)) + "+"}, "octets"},
		{"EC non-canonical x", "EC", map[string]any{"x": nonCanonical(valid["EC"]["x"].(string))}, "canonical"},
		{"EC point off curve", "EC", map[string]any{"y": b64.EncodeToString(offCurveY)}, "not a point on P-256"},
		{"EC with RSA member", "EC", map[string]any{"e": "AQAB"}, "RSA members"},
		{"RSA 1024 bits", "RSA", map[string]any{"n": b64.EncodeToString(small)}, "1024 bits"},
		{"RSA above 8192 bits", "RSA", map[string]any{"n": b64.EncodeToString(huge)}, "longer than 1024 octets"},
		{"RSA leading zero in n", "RSA", map[string]any{"n": b64.EncodeToString(append([]byte{0}, rsaN...))}, "leading zero"},
		{"RSA even modulus", "RSA", map[string]any{"n": b64.EncodeToString(evenN)}, "even RSA modulus"},
		{"RSA missing n", "RSA", map[string]any{"n": nil}, "member n is missing"},
		{"RSA exponent 1", "RSA", map[string]any{"e": "AQ"}, "public exponent"},
		{"RSA even exponent", "RSA", map[string]any{"e": "AQAA"}, "public exponent"},
		{"RSA exponent leading zero", "RSA", map[string]any{"e": "AAEAAQ"}, "leading zero"},
		{"RSA exponent too long", "RSA", map[string]any{"e": "AQAAAAE"}, "longer than 4 octets"},
		{"RSA exponent above 2^31-1", "RSA", map[string]any{"e": "gAAAAQ"}, "public exponent"},
		{"RSA alg ES256", "RSA", map[string]any{"alg": "ES256"}, `alg "ES256"`},
		{"RSA with EC member", "RSA", map[string]any{"crv": "P-256", "alg": nil}, "EC members"},
		{"OKP X25519", "OKP", map[string]any{"crv": "X25519", "alg": nil}, "unsupported OKP crv"},
		{"OKP Ed448", "OKP", map[string]any{"crv": "Ed448", "alg": nil}, "unsupported OKP crv"},
		{"OKP short x", "OKP", map[string]any{"x": b64.EncodeToString(make([]byte, 31))}, "exactly 32 octets"},
		{"OKP alg ES256", "OKP", map[string]any{"alg": "ES256"}, `alg "ES256"`},
		{"OKP with y", "OKP", map[string]any{"y": valid["EC"]["y"]}, "members y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]any{}
			for name, v := range valid[tt.base] {
				m[name] = v
			}
			for name, v := range tt.set {
				if v == nil {
					delete(m, name)
				} else {
					m[name] = v
				}
			}
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var k Key
			if err := json.Unmarshal(data, &k); err != nil {
				t.Fatalf("Unmarshal(%s): %v", data, err)
			}
			pub, err := k.PublicKey()
			if err == nil {
				t.Fatalf("PublicKey(%s) = %v, want an error", data, pub)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("PublicKey(%s) error = %q, want one containing %q", data, err, tt.want)
			}
		})
	}
}

func TestUnmarshalRefusesNonStrings(t *testing.T) {
	for _, in := range []string{
		`[]`, `"EC"`, `null`, `{"kty":1}`, `{"kty":"EC","x":null}`, `{"kid":{"a":1}}`, `{"kty":"EC"`,
	} {
		var k Key
		if err := json.Unmarshal([]byte(in), &k); err == nil {
			t.Errorf("Unmarshal(%s) = %+v, want an error", in, k)
		}
	}
}

func TestThumbprint(t *testing.T) {
	// RFC 7638 §3.1: the example RSA key and its thumbprint.
	const in = `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	var k Key
	if err := json.Unmarshal([]byte(in), &k); err != nil {
		t.Fatal(err)
	}
	got, err := k.Thumbprint()
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Fatalf("Thumbprint = %q, want %q", got, want)
	}

	// Members outside the required ones do not change the thumbprint.
	k.Kid, k.Alg, k.Use = "other", "PS256", "sig"
	if again, _ := k.Thumbprint(); again != got {
		t.Fatalf("Thumbprint with other kid/alg/use = %q, want %q", again, got)
	}
	k.Kty = "oct"
	if _, err := k.Thumbprint(); err == nil {
		t.Fatal("Thumbprint of an invalid key succeeded")
	}
}
