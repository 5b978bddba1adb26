package authserver

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParseClientMetadata feeds registration bodies and metadata documents
// to the strict parser and, when it accepts one, to the client builder:
// neither may panic, and an accepted client has only valid redirect URIs.
func FuzzParseClientMetadata(f *testing.F) {
	f.Add([]byte(`{"redirect_uris":["http://127.0.0.1:3000/cb"],"client_name":"x","token_endpoint_auth_method":"none"}`))
	f.Add([]byte(`{"redirect_uris":["https://a.example/cb"],"redirect_uris":["https://b.example/cb"]}`))
	f.Add([]byte(`{"redirect_uris":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		md, err := parseClientMetadata(body)
		if err != nil {
			return
		}
		c, err := md.toClient("dynamic")
		if err != nil {
			return
		}
		for _, uri := range c.RedirectURIs {
			if err := ValidateRedirectURI(uri); err != nil {
				t.Fatalf("accepted client has an invalid redirect URI %q: %v", uri, err)
			}
		}
	})
}

// FuzzRedirectURI checks the redirect rules hold for any input: http only
// on loopback, never a fragment, and a match only for a registered URI or
// its loopback port variant.
func FuzzRedirectURI(f *testing.F) {
	f.Add("http://127.0.0.1:33418/callback", "http://127.0.0.1:1/callback")
	f.Add("https://app.example.com/cb", "https://app.example.com/cb#x")
	f.Add("cursor://x/cb", "javascript:alert(1)")
	f.Fuzz(func(t *testing.T, registered, requested string) {
		if ValidateRedirectURI(requested) == nil {
			u, _ := url.Parse(requested)
			if strings.EqualFold(u.Scheme, "http") && !isLoopbackHost(u.Hostname()) {
				t.Fatalf("http redirect URI off loopback accepted: %q", requested)
			}
			if strings.Contains(requested, "#") {
				t.Fatalf("redirect URI with a fragment accepted: %q", requested)
			}
		}
		if redirectURIMatches([]string{registered}, requested) && registered != requested {
			if !isLoopbackRedirect(registered) || !isLoopbackRedirect(requested) {
				t.Fatalf("%q matched %q without being equal or both loopback", requested, registered)
			}
		}
	})
}

// FuzzDescribe checks every description is legal in JSON and inside a
// quoted WWW-Authenticate parameter.
func FuzzDescribe(f *testing.F) {
	f.Add(`a "quoted" \ value`)
	f.Add("\x00\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		out := describe(in)
		if len(out) > maxDescription {
			t.Fatalf("description of %d bytes", len(out))
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Fatalf("illegal byte %#x in %q", c, out)
			}
		}
	})
}
