package caddymodule

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzUnmarshalCaddyfile feeds arbitrary mcp_gateway blocks to the
// Caddyfile parser and, when it accepts one, to the validation and the JSON
// encoding: nothing may panic, every refusal is an error (never a silent
// fix-up), and an accepted config survives a JSON round trip unchanged, as
// Caddy stores and reloads it.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	f.Add(`mcp_gateway {
	public_url https://mcp.example.com
	rate_limit {
		register 30/10m
	}
	gateway acme {
		authorization_server https://auth.example.com
		client_id gw
		scopes tickets.read accounts.read
		identity userinfo claim email
		client desk {
			redirect_uris http://127.0.0.1/cb
		}
	}
	server support /support {
		scopes tickets.read
		reverse_proxy 127.0.0.1:9001
	}
}`)
	f.Add("mcp_gateway {\n\tgateway\n}")
	f.Add("mcp_gateway {\n\tserver a /a {\n\t\tclient_id x\n\t}\n}")
	f.Add("mcp_gateway {\n\trate_limit off {\n\t}\n\taccess_token_lifetime -1s\n}")
	f.Add("mcp_gateway x")
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil || len(tokens) == 0 {
			return
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			if err.Error() == "" {
				t.Fatal("a refusal without a message")
			}
			return
		}
		if err := h.check(); err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Msg == "" {
				t.Fatalf("check refused with %T %v, want a located ConfigError", err, err)
			}
		}
		encoded, err := json.Marshal(&h)
		if err != nil {
			t.Fatalf("an accepted config does not encode: %v", err)
		}
		var again Handler
		if err := json.Unmarshal(encoded, &again); err != nil {
			t.Fatalf("the encoded config does not decode: %v\n%s", err, encoded)
		}
		reencoded, _ := json.Marshal(&again)
		if string(reencoded) != string(encoded) {
			t.Fatalf("the JSON round trip changed the config:\n%s\n%s", encoded, reencoded)
		}
	})
}
