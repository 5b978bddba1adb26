// Package scopes implements OAuth scope sets (RFC 6749 §3.3) and the rule
// by which a gateway resolves the scopes a client requests against the
// subset one MCP server offers.
//
// A gateway holds the full set of scopes its downstream authorization
// server may grant; each MCP server attached to it offers a subset. A
// [Rule] turns a client's request into the scopes to grant: an empty request
// gets everything the server offers, any other request is narrowed to the
// offered subset (or refused, in strict mode).
package scopes

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// maxBytes bounds the length of a scope string (or the combined length of a
// token list) accepted from outside. Scope strings arrive in authorization
// requests; without a bound a client could make the gateway sort megabytes.
// Real scope strings, even with URL-shaped scopes, stay far below it.
const maxBytes = 8 << 10

// Set is an immutable set of OAuth scope tokens (RFC 6749 §3.3), kept sorted
// and de-duplicated. The zero value is the empty set.
//
// Sets are values: they are safe to copy and to share between goroutines.
// Every token of a Set is a valid scope-token.
type Set struct {
	// tokens is sorted in byte order, without duplicates, and never
	// modified after construction: operations may share it between sets.
	tokens []string
}

// Parse parses a space-delimited scope string such as the scope parameter
// of an authorization request. Only the space character (%x20) delimits
// tokens; leading, trailing and repeated spaces are tolerated because real
// clients send them. Every token must match RFC 6749's
// scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): tabs, newlines, quotes,
// backslashes and non-ASCII bytes are rejected, not treated as delimiters.
// Duplicates are collapsed. An empty or all-space string is the empty set.
func Parse(s string) (Set, error) {
	if len(s) > maxBytes {
		return Set{}, errTooLong
	}
	var tokens []string
	for tok := range strings.SplitSeq(s, " ") {
		if tok == "" {
			continue
		}
		if err := checkToken(tok); err != nil {
			return Set{}, err
		}
		tokens = append(tokens, tok)
	}
	return build(tokens), nil
}

// New returns the set of the given tokens. Each token is validated as by
// [Parse]; a token that is empty or contains a space is an error, since it
// is not one scope but zero or several.
func New(tokens ...string) (Set, error) {
	n := 0
	for _, tok := range tokens {
		n += len(tok) + 1
		if n > maxBytes+1 {
			return Set{}, errTooLong
		}
		if err := checkToken(tok); err != nil {
			return Set{}, err
		}
	}
	return build(slices.Clone(tokens)), nil
}

// MustParse is like [Parse] but panics if s is invalid. It is meant for
// constants, tests and examples, not for input from clients.
func MustParse(s string) Set {
	set, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return set
}

// String returns the tokens in sorted order joined by single spaces: the
// form of the scope parameter and of the scope field of a token response.
func (s Set) String() string { return strings.Join(s.tokens, " ") }

// Tokens returns the tokens in sorted order. The slice is a copy; the caller
// may modify it.
func (s Set) Tokens() []string { return slices.Clone(s.tokens) }

// Len returns the number of tokens in s.
func (s Set) Len() int { return len(s.tokens) }

// IsEmpty reports whether s has no tokens.
func (s Set) IsEmpty() bool { return len(s.tokens) == 0 }

// Contains reports whether token is in s.
func (s Set) Contains(token string) bool {
	_, found := slices.BinarySearch(s.tokens, token)
	return found
}

// ContainsAll reports whether every token of other is in s, that is whether
// s is a superset of other. Every set contains the empty set.
func (s Set) ContainsAll(other Set) bool {
	a, b := s.tokens, other.tokens
	if len(b) > len(a) {
		return false
	}
	i := 0
	for _, tok := range b {
		for i < len(a) && a[i] < tok {
			i++
		}
		if i == len(a) || a[i] != tok {
			return false
		}
		i++
	}
	return true
}

// Union returns the tokens that are in s, in other, or in both.
func (s Set) Union(other Set) Set {
	// Returning an operand unchanged saves an allocation in the common
	// case where one set already holds the other.
	if s.ContainsAll(other) {
		return s
	}
	if other.ContainsAll(s) {
		return other
	}
	a, b := s.tokens, other.tokens
	out := make([]string, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			out, a = append(out, a[0]), a[1:]
		case b[0] < a[0]:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	out = append(out, a...)
	out = append(out, b...)
	return Set{out}
}

// Intersect returns the tokens that are in both s and other.
func (s Set) Intersect(other Set) Set { return Set{filter(s.tokens, other.tokens, true)} }

// Minus returns the tokens of s that are not in other.
func (s Set) Minus(other Set) Set { return Set{filter(s.tokens, other.tokens, false)} }

// equal reports whether s and other hold the same tokens.
func (s Set) equal(other Set) bool { return slices.Equal(s.tokens, other.tokens) }

// MarshalJSON encodes s as a JSON string in the space-delimited form of
// [Set.String], as in OAuth metadata and token responses.
func (s Set) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON decodes a JSON string in the space-delimited form of
// [Parse], or a JSON array of strings with one token each (the form of
// scopes_supported), and validates every token. A JSON null leaves s
// unchanged, as encoding/json does for other types.
func (s *Set) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '[' {
		var tokens []string
		if err := json.Unmarshal(data, &tokens); err != nil {
			return fmt.Errorf("scopes: want a space-delimited string or an array of strings: %w", err)
		}
		set, err := New(tokens...)
		if err != nil {
			return err
		}
		*s = set
		return nil
	}
	var str *string
	if err := json.Unmarshal(data, &str); err != nil {
		return fmt.Errorf("scopes: want a space-delimited string or an array of strings: %w", err)
	}
	if str == nil {
		return nil
	}
	set, err := Parse(*str)
	if err != nil {
		return err
	}
	*s = set
	return nil
}

var errTooLong = fmt.Errorf("scopes: scope string longer than %d bytes; request fewer or shorter scopes", maxBytes)

// checkToken returns an error unless tok is a scope-token of RFC 6749 §3.3.
func checkToken(tok string) error {
	if tok == "" {
		return errors.New("scopes: empty scope token; a scope needs at least one character")
	}
	for i := 0; i < len(tok); i++ {
		if !legal(tok[i]) {
			return fmt.Errorf("scopes: invalid scope %q: a scope may contain only printable ASCII characters other than space, '\"' and '\\' (RFC 6749 section 3.3), and scopes are separated by single spaces", tok)
		}
	}
	return nil
}

// legal reports whether c may appear in a scope-token:
// %x21 / %x23-5B / %x5D-7E.
func legal(c byte) bool {
	return c == 0x21 || (0x23 <= c && c <= 0x5B) || (0x5D <= c && c <= 0x7E)
}

// build makes a Set of tokens, which it sorts and compacts in place.
func build(tokens []string) Set {
	if len(tokens) == 0 {
		return Set{}
	}
	slices.Sort(tokens)
	return Set{slices.Clip(slices.Compact(tokens))}
}

// filter returns the elements of the sorted slice a whose presence in the
// sorted slice b equals inB. When it keeps every element it returns a itself
// rather than a copy, which is safe because sets never modify their slices
// and makes the common resolution cases allocation-free.
func filter(a, b []string, inB bool) []string {
	var out []string
	copied := false
	j := 0
	for i, tok := range a {
		for j < len(b) && b[j] < tok {
			j++
		}
		keep := (j < len(b) && b[j] == tok) == inB
		switch {
		case keep && copied:
			out = append(out, tok)
		case !keep && !copied:
			out = append(make([]string, 0, len(a)-1), a[:i]...)
			copied = true
		}
	}
	if !copied {
		return a
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
