package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"reflect"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
)

// TestSettingsFingerprintCoversEveryField sets each field of Settings in
// turn and expects the fingerprint to change, so a setting added without
// a place in Fingerprint fails here.
func TestSettingsFingerprintCoversEveryField(t *testing.T) {
	// Not settings of the gateway: the caller keys the storage itself, and
	// where logs and refresh counts go makes no other gateway.
	skip := map[string]bool{"Storage": true, "Logger": true, "OnRefresh": true}
	base := (&Settings{}).Fingerprint()
	typ := reflect.TypeFor[Settings]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if skip[f.Name] {
			continue
		}
		var s Settings
		v := reflect.ValueOf(&s).Elem().Field(i)
		switch v.Interface().(type) {
		case string:
			v.SetString("x")
		case []string:
			v.Set(reflect.ValueOf([]string{"x"}))
		case bool:
			v.SetBool(true)
		case downstream.Config:
			v.Set(reflect.ValueOf(downstream.Config{Issuer: "https://idp.example.com"}))
		case map[string]string:
			v.Set(reflect.ValueOf(map[string]string{"tickets.read": "Read your tickets"}))
		case map[string]*grants.Client:
			v.Set(reflect.ValueOf(map[string]*grants.Client{"desk": {ID: "desk"}}))
		case map[string]*Machine:
			v.Set(reflect.ValueOf(map[string]*Machine{"ci-bot": {}}))
		case []EnterpriseIdP:
			v.Set(reflect.ValueOf([]EnterpriseIdP{{Issuer: "https://idp.example.com"}}))
		default:
			t.Errorf("%s (%s): the test cannot set it; teach it, and Fingerprint, about it", f.Name, f.Type)
			continue
		}
		if s.Fingerprint() == base {
			t.Errorf("setting %s leaves the fingerprint unchanged: add it to Settings.Fingerprint (a secret by its digest)", f.Name)
		}
	}
}

// TestMachineFingerprintCoversEveryField does the same for each setting
// of a machine client: a changed key, scope or downstream credential makes
// another gateway, whose machine clients are built anew.
func TestMachineFingerprintCoversEveryField(t *testing.T) {
	fingerprint := func(m *Machine) string {
		return (&Settings{Machines: map[string]*Machine{"ci-bot": m}}).Fingerprint()
	}
	base := fingerprint(&Machine{})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[Machine]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		var m Machine
		v := reflect.ValueOf(&m).Elem().Field(i)
		switch v.Interface().(type) {
		case string:
			v.SetString("x")
		case []string:
			v.Set(reflect.ValueOf([]string{"x"}))
		default:
			if f.Type != reflect.TypeFor[crypto.PublicKey]() {
				t.Errorf("%s (%s): the test cannot set it; teach it, and Machine.fingerprint, about it", f.Name, f.Type)
				continue
			}
			v.Set(reflect.ValueOf(&key.PublicKey))
		}
		if fingerprint(&m) == base {
			t.Errorf("setting %s leaves the fingerprint unchanged: add it to Machine.fingerprint (a secret by its digest)", f.Name)
		}
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if fingerprint(&Machine{PublicKey: &key.PublicKey}) == fingerprint(&Machine{PublicKey: &other.PublicKey}) {
		t.Error("two public keys fingerprint the same")
	}
}
