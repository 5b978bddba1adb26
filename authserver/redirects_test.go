package authserver

import (
	"strings"
	"testing"
)

func TestValidateRedirectURI(t *testing.T) {
	tests := []struct {
		uri string
		ok  bool
	}{
		{"https://app.example.com/callback", true},
		{"http://127.0.0.1:33418/callback", true},
		{"http://[::1]/cb", true},
		{"http://localhost:8080/cb", true},
		{"cursor://anysphere.cursor-retrieval/oauth/callback", true},
		{"vscode://vscode.github-authentication/did-authenticate", true},
		{"http://app.example.com/callback", false}, // http off loopback
		{"https://app.example.com/cb#frag", false},
		{"https://user:pw@app.example.com/cb", false},
		{"javascript:alert(1)", false},
		{"data:text/html,hi", false},
		{"/relative/callback", false},
		{"https:///no-host", false},
		{"https://app.example.com/" + strings.Repeat("a", maxRedirectURIBytes), false},
	}
	for _, tc := range tests {
		if err := ValidateRedirectURI(tc.uri); (err == nil) != tc.ok {
			t.Errorf("ValidateRedirectURI(%q) = %v, want ok=%v", tc.uri, err, tc.ok)
		}
	}
}

func TestRedirectURIMatches(t *testing.T) {
	registered := []string{"http://127.0.0.1:33418/callback", "https://app.example.com/cb", "cursor://x/cb"}
	tests := []struct {
		requested string
		want      bool
	}{
		{"https://app.example.com/cb", true},
		{"cursor://x/cb", true},
		{"http://127.0.0.1:40000/callback", true}, // loopback: any port (RFC 8252 §7.3)
		{"http://127.0.0.1/callback", true},
		{"http://127.0.0.1:40000/other", false},
		{"http://localhost:33418/callback", false}, // another host name
		{"http://127.0.0.1:33418/callback?x=1", false},
		{"https://app.example.com/cb/", false}, // exact match elsewhere
		{"https://APP.example.com/cb", false},
		{"https://app.example.com:443/cb", false},
		{"https://app.example.com/cb?x=1", false},
		{"http://user@127.0.0.1:1/callback", false},
	}
	for _, tc := range tests {
		if got := redirectURIMatches(registered, tc.requested); got != tc.want {
			t.Errorf("redirectURIMatches(%q) = %v, want %v", tc.requested, got, tc.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain words; use S256", "plain words; use S256"},
		{`scope "a\b" is bad`, `scope 'a/b' is bad`},
		{"line\nbreak\ttab", "line?break?tab"},
		{"héllo", "h??llo"},
		{strings.Repeat("x", 1000), strings.Repeat("x", maxDescription)},
	}
	for _, tc := range tests {
		if got := describe(tc.in); got != tc.want {
			t.Errorf("describe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
