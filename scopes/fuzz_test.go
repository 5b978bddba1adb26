package scopes

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParse checks Parse against an independent reading of RFC 6749 §3.3
// and checks that every set it returns survives the round trips through
// String, New and JSON.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)

		// Independent oracle: the input is valid if it is short enough
		// and every space-separated field consists of legal bytes.
		valid := len(in) <= maxBytes
		for _, field := range strings.Split(in, " ") {
			valid = valid && !strings.ContainsFunc(field, func(r rune) bool {
				return r >= 0x80 || !legal(byte(r))
			})
		}
		if valid != (err == nil) {
			t.Fatalf("Parse(%q) error = %v, but the input is valid = %v", in, err, valid)
		}
		if err != nil {
			if !s.IsEmpty() {
				t.Fatalf("Parse(%q) returned %q with error %v", in, s, err)
			}
			return
		}

		toks := s.Tokens()
		for i, tok := range toks {
			if tok == "" {
				t.Fatalf("Parse(%q) has an empty token", in)
			}
			for j := 0; j < len(tok); j++ {
				if !legal(tok[j]) {
					t.Fatalf("Parse(%q) has token %q with illegal byte %#x", in, tok, tok[j])
				}
			}
			if i > 0 && toks[i-1] >= tok {
				t.Fatalf("Parse(%q) tokens %q are not sorted and unique", in, toks)
			}
			if !strings.Contains(" "+in+" ", " "+tok+" ") {
				t.Fatalf("Parse(%q) has token %q, which is not in the input", in, tok)
			}
			if !s.Contains(tok) {
				t.Fatalf("Parse(%q) does not contain its own token %q", in, tok)
			}
		}
		for _, field := range strings.Fields(in) {
			if !s.Contains(field) {
				t.Fatalf("Parse(%q) lost token %q", in, field)
			}
		}

		again, err := Parse(s.String())
		if err != nil || !again.equal(s) {
			t.Fatalf("Parse(%q) = %q, but Parse of its String gives %q, %v", in, s, again, err)
		}
		fromNew, err := New(toks...)
		if err != nil || !fromNew.equal(s) {
			t.Fatalf("Parse(%q) = %q, but New of its tokens gives %q, %v", in, s, fromNew, err)
		}
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON Set
		if err := json.Unmarshal(data, &fromJSON); err != nil || !fromJSON.equal(s) {
			t.Fatalf("Parse(%q) = %q, but its JSON %s decodes to %q, %v", in, s, data, fromJSON, err)
		}
		if !s.Union(s).equal(s) || !s.Intersect(s).equal(s) || !s.Minus(s).IsEmpty() || !s.ContainsAll(s) {
			t.Fatalf("Parse(%q) = %q, which is not idempotent under set operations", in, s)
		}
	})
}
