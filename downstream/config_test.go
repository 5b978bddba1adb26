package downstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// notFingerprinted are the fields of Config that are plumbing, not
// settings: they do not make another client.
var notFingerprinted = map[string]bool{"HTTPClient": true, "Now": true}

// TestFingerprintCoversEveryField sets each field of Config (and of the
// structs it holds) in turn and expects the fingerprint to change, so a
// field added to Config without a place in Fingerprint fails here.
func TestFingerprintCoversEveryField(t *testing.T) {
	key := testClientKey(t)
	base := (&Config{}).Fingerprint()
	var fields [][]int // index paths of the leaf fields
	var collect func(prefix []int, typ reflect.Type, path string)
	collect = func(prefix []int, typ reflect.Type, path string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := strings.TrimPrefix(path+"."+f.Name, ".")
			index := append(slices.Clone(prefix), i)
			switch {
			case notFingerprinted[name]:
			case f.Type.Kind() == reflect.Struct:
				collect(index, f.Type, name)
			default:
				fields = append(fields, index)
			}
		}
	}
	collect(nil, reflect.TypeFor[Config](), "")
	if len(fields) < 20 {
		t.Fatalf("found only %d fields in Config", len(fields))
	}
	for _, index := range fields {
		var cfg Config
		field := reflect.ValueOf(&cfg).Elem().FieldByIndex(index)
		name := reflect.TypeFor[Config]().FieldByIndex(index).Name
		if !setNonZero(field, key) {
			t.Errorf("%s (%s): the test cannot set it; teach setNonZero, and Fingerprint, about it", name, field.Type())
			continue
		}
		if cfg.Fingerprint() == base {
			t.Errorf("setting %s leaves the fingerprint unchanged: add it to Config.Fingerprint (a secret by its digest), or to notFingerprinted if it is no setting", name)
		}
	}
}

// setNonZero sets v to a value other than its zero value.
func setNonZero(v reflect.Value, key *ClientKey) bool {
	switch v.Interface().(type) {
	case string:
		v.SetString("x")
	case []string:
		v.Set(reflect.ValueOf([]string{"x"}))
	case map[string]string:
		v.Set(reflect.ValueOf(map[string]string{"x": "y"}))
	case map[string][]string:
		v.Set(reflect.ValueOf(map[string][]string{"x": {"y"}}))
	case time.Duration:
		v.SetInt(int64(time.Minute))
	case *ClientKey:
		v.Set(reflect.ValueOf(key))
	default:
		return false
	}
	return true
}

func testClientKey(t *testing.T) *ClientKey {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseClientKey(pemOf(t, "PRIVATE KEY", der), "")
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// TestFingerprintSecrets: secrets change the fingerprint but never appear
// in it, and equal settings fingerprint alike.
func TestFingerprintSecrets(t *testing.T) {
	a := Config{Issuer: "https://idp.example.com", ClientID: "gw", ClientAuth: ClientAuth{Secret: "s3cret-value"}, ScopeMap: map[string][]string{"a": {"x"}, "b": {"y"}}}
	b := a
	b.ScopeMap = map[string][]string{"b": {"y"}, "a": {"x"}}
	if a.Fingerprint() != b.Fingerprint() {
		t.Error("equal settings fingerprint differently")
	}
	b.ClientAuth.Secret = "other"
	if a.Fingerprint() == b.Fingerprint() {
		t.Error("another client secret leaves the fingerprint unchanged")
	}
	if strings.Contains(a.Fingerprint(), "s3cret") {
		t.Error("the fingerprint holds the secret")
	}
	// Values must not run into each other.
	c := Config{Issuer: "ab", ClientID: "c"}
	d := Config{Issuer: "a", ClientID: "bc"}
	if c.Fingerprint() == d.Fingerprint() {
		t.Error("shifting a boundary between two values leaves the fingerprint unchanged")
	}
}

func TestValidate(t *testing.T) {
	valid := func() Config {
		return Config{Issuer: "https://idp.example.com", ClientID: "gw", Scopes: []string{"a", "b"}, LoginScopes: DefaultLoginScopes()}
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		field  string // "" when valid
	}{
		{"valid", func(*Config) {}, ""},
		{"placeholders wait", func(c *Config) {
			c.Issuer = "{env.ISSUER}"
			c.UserinfoURL = "{env.U}"
			c.IdentitySource = SourceUserinfo
		}, ""},
		{"issuer not a URL", func(c *Config) { c.Issuer = "idp.example.com" }, "authorization_server"},
		{"issuer over http", func(c *Config) { c.Issuer = "http://idp.example.com" }, "authorization_server"},
		{"one endpoint", func(c *Config) { c.Endpoints.AuthorizationEndpoint = "https://idp.example.com/a" }, "token_endpoint"},
		{"endpoints without a user endpoint", func(c *Config) {
			c.Endpoints.AuthorizationEndpoint, c.Endpoints.TokenEndpoint = "https://idp.example.com/a", "https://idp.example.com/t"
		}, "identity"},
		{"audience without resource", func(c *Config) { c.ResourceParam = ParamAudience }, "resource_parameter"},
		{"unknown resource parameter", func(c *Config) { c.ResourceParam = "aud" }, "resource_parameter"},
		{"reserved parameter", func(c *Config) { c.AuthParams = map[string]string{"state": "x"} }, "authorization_params/state"},
		{"empty parameter", func(c *Config) { c.AuthParams = map[string]string{"prompt": ""} }, "authorization_params/prompt"},
		{"map of an unknown scope", func(c *Config) { c.ScopeMap = map[string][]string{"z": {"y"}} }, "scope_map/z"},
		{"map to nothing", func(c *Config) { c.ScopeMap = map[string][]string{"a": nil} }, "scope_map/a"},
		{"bad login scope", func(c *Config) { c.LoginScopes = []string{"openid", "a b"} }, "login_scopes"},
		{"id token without openid", func(c *Config) { c.LoginScopes = []string{"offline_access"} }, "login_scopes"},
		{"unknown identity source", func(c *Config) { c.IdentitySource = "cookie" }, "identity/source"},
		{"endpoint without userinfo", func(c *Config) { c.UserinfoURL = "https://api.example.com/user" }, "identity/endpoint"},
		{"secret method without secret", func(c *Config) { c.ClientAuth.Method = AuthSecretPost }, "client_auth/method"},
		{"key method with secret", func(c *Config) { c.ClientAuth = ClientAuth{Method: AuthPrivateKeyJWT, Secret: "s"} }, "client_auth/method"},
		{"bad assertion audience", func(c *Config) { c.ClientAuth = ClientAuth{Method: AuthPrivateKeyJWT, AssertionAudience: "aud"} }, "client_auth/assertion_audience"},
		{"public client with secret", func(c *Config) { c.ClientAuth = ClientAuth{Method: AuthNone, Secret: "s"} }, "client_auth/method"},
		{"audience for a secret", func(c *Config) {
			c.ClientAuth = ClientAuth{Method: AuthSecretBasic, Secret: "s", AssertionAudience: "issuer"}
		}, "client_auth/method"},
		{"unknown method", func(c *Config) { c.ClientAuth.Method = "tls_client_auth" }, "client_auth/method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.change(&cfg)
			err := cfg.Validate()
			var fe *FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tc.field == "":
			case !errors.As(err, &fe) || fe.Field != tc.field:
				t.Fatalf("Validate = %v, want an error of field %s", err, tc.field)
			case fe.Msg == "":
				t.Fatal("the error says nothing")
			}
		})
	}
}
