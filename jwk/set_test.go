package jwk

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseSet(t *testing.T) {
	ec, err := Public("ec-1", "ES256", &mustECDSA(t, elliptic.P256()).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Public("ec-1", "ES256", &mustECDSA(t, elliptic.P256()).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Public("rsa-1", "RS256", &rsaKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := Public("", "EdDSA", edPub)
	if err != nil {
		t.Fatal(err)
	}
	enc := ec
	enc.Kid, enc.Use, enc.Alg = "enc-1", "enc", ""
	small := rs
	small.Kid, small.N = "rsa-small", b64.EncodeToString(append([]byte{0xc1}, make([]byte, 127)...))

	js := func(v any) string {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	tests := []struct {
		name    string
		in      string
		want    map[string]Key // nil: an error containing wantErr
		wantErr string
	}{
		{"one key", js(Set{Keys: []Key{ec}}), map[string]Key{"ec-1": ec}, ""},
		{"every type", js(Set{Keys: []Key{ec, rs, ed}}), map[string]Key{"ec-1": ec, "rsa-1": rs, "": ed}, ""},
		{"encryption key skipped", js(Set{Keys: []Key{enc, rs}}), map[string]Key{"rsa-1": rs}, ""},
		{"weak key skipped", js(Set{Keys: []Key{small, ec}}), map[string]Key{"ec-1": ec}, ""},
		{"first of a duplicate kid kept", js(Set{Keys: []Key{ec, other}}), map[string]Key{"ec-1": ec}, ""},
		{
			"unknown types and members skipped",
			`{"keys":[{"kty":"oct-pq","kid":"x"},{"kty":"OKP","crv":"X25519","x":"` + ed.X + `","kid":"xdh"},` + js(ec) + `,"junk",7],"extra":true}`,
			map[string]Key{"ec-1": ec}, "",
		},
		{"x5c and key_ops ignored", strings.Replace(js(Set{Keys: []Key{ec}}), `"kty"`, `"x5c":["MIIB"],"key_ops":["verify"],"kty"`, 1), map[string]Key{"ec-1": ec}, ""},
		{"private member refuses the set", `{"keys":[` + strings.Replace(js(ec), `"kty"`, `"d":"AAAA","kty"`, 1) + `]}`, nil, "private key material"},
		{"only unusable keys", js(Set{Keys: []Key{enc, small}}), nil, "no usable signature key"},
		{"empty keys", `{"keys":[]}`, nil, "no usable signature key"},
		{"keys null", `{"keys":null}`, nil, `no "keys" array`},
		{"keys missing", `{}`, nil, `no "keys" array`},
		{"keys name is case-sensitive", `{"KEYS":[` + js(ec) + `]}`, nil, `no "keys" array`},
		{"keys not an array", `{"keys":{}}`, nil, `no "keys" array`},
		{"not an object", `[` + js(ec) + `]`, nil, "not a JSON object"},
		{"null", `null`, nil, "not a JSON object"},
		{"trailing data", js(Set{Keys: []Key{ec}}) + `{}`, nil, "not a JSON object"},
		{"empty", ``, nil, "not a JSON object"},
		{"too large", `{"keys":[` + js(ec) + `],"pad":"` + strings.Repeat("a", MaxSetBytes) + `"}`, nil, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSet([]byte(tt.in))
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSet error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSet: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParseSet = %v, want %v", got, tt.want)
			}
			for kid, want := range tt.want {
				if got[kid] != want {
					t.Fatalf("ParseSet[%q] = %+v, want %+v", kid, got[kid], want)
				}
			}
		})
	}
}

// FuzzParseSet checks that ParseSet never panics, and that every key it
// returns is filed under its own kid and yields a public key.
func FuzzParseSet(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	ec, _ := Public("seed", "ES256", &k.PublicKey)
	data, _ := json.Marshal(Set{Keys: []Key{ec}})
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseSet(data)
		if err != nil {
			if keys != nil {
				t.Fatalf("ParseSet returned keys with error %v", err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("ParseSet returned no keys and no error")
		}
		for kid, k := range keys {
			if k.Kid != kid {
				t.Fatalf("key %+v filed under kid %q", k, kid)
			}
			if _, err := k.PublicKey(); err != nil {
				t.Fatalf("ParseSet returned key %q that PublicKey refuses: %v", kid, err)
			}
			if k.Use != "" && k.Use != "sig" {
				t.Fatalf("ParseSet returned key %q for use %q", kid, k.Use)
			}
		}
	})
}
