package scopes

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string // substring of the error; "" means no error
	}{
		{name: "empty", in: "", want: nil},
		{name: "only spaces", in: "   ", want: nil},
		{name: "one", in: "tickets.read", want: []string{"tickets.read"}},
		{name: "leading space", in: " tickets.read", want: []string{"tickets.read"}},
		{name: "trailing space", in: "tickets.read ", want: []string{"tickets.read"}},
		{name: "repeated spaces", in: "tickets.read   accounts.read", want: []string{"accounts.read", "tickets.read"}},
		{name: "sorted", in: "b c a", want: []string{"a", "b", "c"}},
		{name: "duplicates collapsed", in: "a b a b a", want: []string{"a", "b"}},
		{name: "case sensitive", in: "Read read", want: []string{"Read", "read"}},
		{name: "URL scope", in: "https://api.example.com/tickets.read", want: []string{"https://api.example.com/tickets.read"}},
		{name: "edge characters", in: "! # [ ] ~", want: []string{"!", "#", "[", "]", "~"}},
		{name: "tab", in: "tickets.read\taccounts.read", wantErr: `"tickets.read\taccounts.read"`},
		{name: "newline", in: "tickets.read\n", wantErr: `"tickets.read\n"`},
		{name: "carriage return", in: "a\r b", wantErr: `"a\r"`},
		{name: "double quote", in: `a "b"`, wantErr: `"\"b\""`},
		{name: "backslash", in: `a\b`, wantErr: `"a\\b"`},
		{name: "non-ASCII", in: "tickets.réad", wantErr: `"tickets.réad"`},
		{name: "non-breaking space", in: "a\u00a0b", wantErr: `"a\u00a0b"`},
		{name: "NUL", in: "a\x00", wantErr: `"a\x00"`},
		{name: "DEL", in: "a\x7f", wantErr: `"a\x7f"`},
		{name: "invalid UTF-8", in: "a\xff", wantErr: `"a\xff"`},
		{name: "too long", in: strings.Repeat("a ", maxBytes/2) + "b", wantErr: "longer than"},
		{name: "at the limit", in: strings.Repeat("a", maxBytes), want: []string{strings.Repeat("a", maxBytes)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %q, want error containing %s", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Parse(%q) error = %q, want it to contain %s", tt.in, err, tt.wantErr)
				}
				if !got.IsEmpty() {
					t.Errorf("Parse(%q) returned %q with its error, want the empty set", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !slices.Equal(got.Tokens(), tt.want) {
				t.Errorf("Parse(%q) = %q, want %q", tt.in, got.Tokens(), tt.want)
			}
		})
	}
}

func TestParseErrorSaysWhatIsAllowed(t *testing.T) {
	_, err := Parse("tickets.read\taccounts.read")
	if err == nil {
		t.Fatal("Parse accepted a tab")
	}
	for _, want := range []string{"printable ASCII", "space", "RFC 6749"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    string
		wantErr bool
	}{
		{name: "none", in: nil, want: ""},
		{name: "sorted and collapsed", in: []string{"c", "a", "c", "b"}, want: "a b c"},
		{name: "empty token", in: []string{"a", ""}, wantErr: true},
		{name: "token with space", in: []string{"a b"}, wantErr: true},
		{name: "leading space", in: []string{" a"}, wantErr: true},
		{name: "tab", in: []string{"a\tb"}, wantErr: true},
		{name: "too long", in: slices.Repeat([]string{"a"}, maxBytes), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := New(tt.in...)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("New(%q) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Errorf("New(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewDoesNotAliasArgument(t *testing.T) {
	in := []string{"b", "a"}
	s, err := New(in...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(in, []string{"b", "a"}) {
		t.Errorf("New reordered its argument to %q", in)
	}
	in[0] = "z"
	if s.String() != "a b" {
		t.Errorf("set changed to %q after its argument was modified", s)
	}
}

func TestTokensIsACopy(t *testing.T) {
	s := MustParse("a b")
	toks := s.Tokens()
	toks[0] = "z"
	if s.String() != "a b" {
		t.Errorf("set changed to %q after Tokens() result was modified", s)
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParse of an invalid string did not panic")
		}
	}()
	MustParse("a\tb")
}

func TestZeroValue(t *testing.T) {
	var s Set
	if !s.IsEmpty() || s.Len() != 0 || s.String() != "" || s.Contains("") || s.Tokens() != nil {
		t.Errorf("zero Set is not the empty set: %#v", s)
	}
	if !s.equal(MustParse("")) || !s.equal(MustParse(" ")) {
		t.Error("zero Set differs from Parse of an empty string")
	}
}

func TestContains(t *testing.T) {
	s := MustParse("accounts.read tickets.read tickets.write")
	tests := []struct {
		token string
		want  bool
	}{
		{"accounts.read", true},
		{"tickets.read", true},
		{"tickets.write", true},
		{"tickets", false},
		{"admin.read", false},
		{"", false},
		{"tickets.read tickets.write", false},
	}
	for _, tt := range tests {
		if got := s.Contains(tt.token); got != tt.want {
			t.Errorf("Contains(%q) = %v, want %v", tt.token, got, tt.want)
		}
	}
}

func TestSetOperations(t *testing.T) {
	tests := []struct {
		a, b                      string
		union, intersect, aMinusB string
		aContainsB, equal         bool
	}{
		{a: "", b: "", union: "", intersect: "", aMinusB: "", aContainsB: true, equal: true},
		{a: "a b", b: "", union: "a b", intersect: "", aMinusB: "a b", aContainsB: true},
		{a: "", b: "a b", union: "a b", intersect: "", aMinusB: ""},
		{a: "a b", b: "a b", union: "a b", intersect: "a b", aMinusB: "", aContainsB: true, equal: true},
		{a: "a b c", b: "b", union: "a b c", intersect: "b", aMinusB: "a c", aContainsB: true},
		{a: "b", b: "a b c", union: "a b c", intersect: "b", aMinusB: ""},
		{a: "a c e", b: "b d", union: "a b c d e", intersect: "", aMinusB: "a c e"},
		{a: "a b c", b: "b c d", union: "a b c d", intersect: "b c", aMinusB: "a"},
		{a: "b c d", b: "a b c", union: "a b c d", intersect: "b c", aMinusB: "d"},
		{a: "a", b: "b", union: "a b", intersect: "", aMinusB: "a"},
		{
			a: "tickets.read tickets.write accounts.read admin.read", b: "tickets.read accounts.read",
			union: "accounts.read admin.read tickets.read tickets.write", intersect: "accounts.read tickets.read",
			aMinusB: "admin.read tickets.write", aContainsB: true,
		},
	}
	for _, tt := range tests {
		a, b := MustParse(tt.a), MustParse(tt.b)
		if got := a.Union(b).String(); got != tt.union {
			t.Errorf("%q ∪ %q = %q, want %q", tt.a, tt.b, got, tt.union)
		}
		if got := b.Union(a).String(); got != tt.union {
			t.Errorf("%q ∪ %q = %q, want %q", tt.b, tt.a, got, tt.union)
		}
		if got := a.Intersect(b).String(); got != tt.intersect {
			t.Errorf("%q ∩ %q = %q, want %q", tt.a, tt.b, got, tt.intersect)
		}
		if got := b.Intersect(a).String(); got != tt.intersect {
			t.Errorf("%q ∩ %q = %q, want %q", tt.b, tt.a, got, tt.intersect)
		}
		if got := a.Minus(b).String(); got != tt.aMinusB {
			t.Errorf("%q − %q = %q, want %q", tt.a, tt.b, got, tt.aMinusB)
		}
		if got := a.ContainsAll(b); got != tt.aContainsB {
			t.Errorf("%q.ContainsAll(%q) = %v, want %v", tt.a, tt.b, got, tt.aContainsB)
		}
		if got := a.equal(b); got != tt.equal {
			t.Errorf("%q.equal(%q) = %v, want %v", tt.a, tt.b, got, tt.equal)
		}
		if !a.Intersect(b).equal(a.Minus(a.Minus(b))) {
			t.Errorf("%q ∩ %q differs from a − (a − b)", tt.a, tt.b)
		}
	}
}

// TestOperationsDoNotModifyOperands guards the slice sharing that keeps
// operations allocation-free: a result must never write into an operand.
func TestOperationsDoNotModifyOperands(t *testing.T) {
	a, b := MustParse("a b c d"), MustParse("b d e")
	_ = a.Union(b)
	_ = a.Intersect(b)
	_ = a.Minus(b)
	_ = b.Minus(a)
	u := a.Union(MustParse("a"))
	_ = u.Union(MustParse("z"))
	if a.String() != "a b c d" || b.String() != "b d e" {
		t.Errorf("operands changed to %q and %q", a, b)
	}
}

func TestJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "string", in: `"tickets.read accounts.read"`, want: "accounts.read tickets.read"},
		{name: "string with leading space", in: `" tickets.read"`, want: "tickets.read"},
		{name: "empty string", in: `""`, want: ""},
		{name: "array", in: `["tickets.read","accounts.read","tickets.read"]`, want: "accounts.read tickets.read"},
		{name: "empty array", in: `[]`, want: ""},
		{name: "array element with space", in: `["tickets.read accounts.read"]`, wantErr: true},
		{name: "empty array element", in: `[""]`, wantErr: true},
		{name: "array of numbers", in: `[1]`, wantErr: true},
		{name: "illegal character in string", in: `"a\tb"`, wantErr: true},
		{name: "illegal character in array", in: `["a\"b"]`, wantErr: true},
		{name: "number", in: `42`, wantErr: true},
		{name: "object", in: `{"scope":"a"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Set
			err := json.Unmarshal([]byte(tt.in), &got)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Unmarshal(%s) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Errorf("Unmarshal(%s) = %q, want %q", tt.in, got, tt.want)
			}
			out, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			var back Set
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatalf("Unmarshal(%s) of Marshal output: %v", out, err)
			}
			if !back.equal(got) {
				t.Errorf("round trip of %q through %s gave %q", got, out, back)
			}
		})
	}
}

func TestJSONInStruct(t *testing.T) {
	type metadata struct {
		Scope Set  `json:"scope"`
		Ptr   *Set `json:"ptr,omitempty"`
	}
	out, err := json.Marshal(metadata{Scope: MustParse("b a")})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"scope":"a b"}`; string(out) != want {
		t.Errorf("Marshal = %s, want %s", out, want)
	}

	m := metadata{Scope: MustParse("keep")}
	if err := json.Unmarshal([]byte(`{"scope":null}`), &m); err != nil {
		t.Fatal(err)
	}
	if m.Scope.String() != "keep" {
		t.Errorf("null changed the set to %q, want it left alone", m.Scope)
	}
}

func TestResolve(t *testing.T) {
	const gateway = "tickets.read tickets.write accounts.read admin.read"
	support := MustParse("tickets.read accounts.read")
	ops := MustParse("tickets.write admin.read")
	ignore := MustParse("openid offline_access")

	tests := []struct {
		name         string
		offered      Set
		strict       bool
		ignore       Set
		requested    string
		want         string // granted scopes, if no error
		wantRejected string // rejected scopes, if an error
		wantErr      bool
	}{
		{name: "support gets what it asks", offered: support, requested: "tickets.read accounts.read", want: "accounts.read tickets.read"},
		{name: "support asks a subset", offered: support, requested: "tickets.read", want: "tickets.read"},
		{name: "ops gets what it asks", offered: ops, requested: "admin.read tickets.write", want: "admin.read tickets.write"},
		{name: "out-of-subset scope narrowed", offered: support, requested: "admin.read tickets.read", want: "tickets.read"},
		{name: "out-of-subset scope refused when strict", offered: support, strict: true, requested: "admin.read tickets.read", wantErr: true, wantRejected: "admin.read"},
		{name: "only foreign scope refused", offered: support, requested: "admin.read", wantErr: true, wantRejected: "admin.read"},
		{name: "only foreign scope refused when strict", offered: support, strict: true, requested: "admin.read", wantErr: true, wantRejected: "admin.read"},
		{name: "empty request gets fallback", offered: support, requested: "", want: "accounts.read tickets.read"},
		{name: "empty request gets fallback when strict", offered: support, strict: true, requested: "", want: "accounts.read tickets.read"},
		{name: "whole gateway set narrowed", offered: support, requested: gateway, want: "accounts.read tickets.read"},
		{name: "whole gateway set narrowed for ops", offered: ops, requested: gateway, want: "admin.read tickets.write"},
		{name: "whole gateway set refused when strict", offered: support, strict: true, requested: gateway, wantErr: true, wantRejected: "admin.read tickets.write"},
		{name: "ignored scopes alone get fallback", offered: support, ignore: ignore, requested: "openid offline_access", want: "accounts.read tickets.read"},
		{name: "ignored scopes alone get fallback when strict", offered: support, strict: true, ignore: ignore, requested: "openid offline_access", want: "accounts.read tickets.read"},
		{name: "ignored scopes dropped from request", offered: support, strict: true, ignore: ignore, requested: "openid tickets.read", want: "tickets.read"},
		{name: "ignored scopes are not ignored without Ignore", offered: support, strict: true, requested: "openid", wantErr: true, wantRejected: "openid"},
		{name: "nothing offered, empty request", offered: Set{}, requested: "", wantErr: true, wantRejected: ""},
		{name: "nothing offered, some request", offered: Set{}, requested: "tickets.read", wantErr: true, wantRejected: "tickets.read"},
		{name: "gateway set as default offer", offered: MustParse(gateway), requested: "admin.read", want: "admin.read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Rule{Offered: tt.offered, Strict: tt.strict, Ignore: tt.ignore}
			requested := MustParse(tt.requested)
			got, err := r.Resolve(requested)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Resolve(%q): %v", tt.requested, err)
				}
				if got.String() != tt.want {
					t.Errorf("Resolve(%q) = %q, want %q", tt.requested, got, tt.want)
				}
				if !r.Offered.ContainsAll(got) {
					t.Errorf("Resolve(%q) = %q, which is not within the offered %q", tt.requested, got, r.Offered)
				}
				return
			}
			if err == nil {
				t.Fatalf("Resolve(%q) = %q, want an error", tt.requested, got)
			}
			if !got.IsEmpty() {
				t.Errorf("Resolve(%q) returned %q with its error, want the empty set", tt.requested, got)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Resolve(%q) error is %T, want *Error", tt.requested, err)
			}
			if e.OAuthCode() != "invalid_scope" {
				t.Errorf("OAuthCode() = %q, want invalid_scope", e.OAuthCode())
			}
			if e.Rejected.String() != tt.wantRejected {
				t.Errorf("Rejected = %q, want %q", e.Rejected, tt.wantRejected)
			}
			if !e.Requested.equal(requested) || !e.Offered.equal(r.Offered) {
				t.Errorf("error reports requested %q, offered %q; want %q, %q", e.Requested, e.Offered, requested, r.Offered)
			}
			if e.Error() != e.Description {
				t.Errorf("Error() = %q, want the Description %q", e.Error(), e.Description)
			}
			for _, tok := range e.Rejected.Tokens() {
				if !strings.Contains(e.Description, tok) {
					t.Errorf("description %q does not name rejected scope %q", e.Description, tok)
				}
			}
			if !r.Offered.IsEmpty() && !strings.Contains(e.Description, r.Offered.String()) {
				t.Errorf("description %q does not say what is offered (%q)", e.Description, r.Offered)
			}
			checkErrorDescription(t, e.Description)
		})
	}
}

// checkErrorDescription fails unless desc may be sent as an OAuth
// error_description: RFC 6749 §5.2 allows %x20-21 / %x23-5B / %x5D-7E.
func checkErrorDescription(t *testing.T, desc string) {
	t.Helper()
	if desc == "" {
		t.Error("empty error description")
	}
	for i := 0; i < len(desc); i++ {
		if c := desc[i]; c != ' ' && !legal(c) {
			t.Errorf("error description %q has byte %#x, which error_description does not allow", desc, c)
			return
		}
	}
}

func TestResolveDoesNotAllocateOnSuccess(t *testing.T) {
	r := Rule{Offered: MustParse("tickets.read accounts.read"), Ignore: MustParse("openid offline_access")}
	for _, requested := range []Set{MustParse("tickets.read"), MustParse(""), MustParse("tickets.read accounts.read")} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := r.Resolve(requested); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Resolve(%q) allocates %v times, want 0", requested, allocs)
		}
	}
}
