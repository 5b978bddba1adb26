package configdoc

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

func markers(name string) (begin, end string) {
	return "<!-- BEGIN GENERATED " + name + " -->", "<!-- END GENERATED " + name + " -->"
}

// replaceGenerated puts content between the markers of name.
func replaceGenerated(doc, name, content string) (string, error) {
	begin, end := markers(name)
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("the markers %s and %s are missing or out of order; put them (each on its own line) where the generated text goes, then run %s", begin, end, RegenerateCmd)
	}
	return doc[:i+len(begin)] + "\n" + content + doc[j:], nil
}

var generatedBlock = regexp.MustCompile(`(?s)<!-- BEGIN GENERATED ([A-Z ]+) -->.*?<!-- END GENERATED ([A-Z ]+) -->`)

// stripGenerated leaves the hand-written text.
func stripGenerated(doc string) string {
	return generatedBlock.ReplaceAllStringFunc(doc, func(m string) string {
		return strings.Repeat("\n", strings.Count(m, "\n")) // keep line numbers
	})
}

// Stale says how current, the doc as it is, differs from d, the doc as
// the code makes it, and how to regenerate it.
func (d Doc) Stale(current []byte) string {
	name, doc, want := d.Name, string(current), string(d.Content)
	have, gen := rowPaths(doc), rowPaths(want)
	var missing, obsolete []string
	for p := range gen {
		if !have[p] {
			missing = append(missing, p)
		}
	}
	for p := range have {
		if !gen[p] {
			obsolete = append(obsolete, p)
		}
	}
	sort.Strings(missing)
	sort.Strings(obsolete)
	var b strings.Builder
	fmt.Fprintf(&b, "%s is out of date with the code: a generated section differs from what the code generates now (the config structs and their doc comments, parseCaddyfile's syntax comment, the Caddyfile example, the metrics).\n", name)
	if len(missing) > 0 {
		fmt.Fprintf(&b, "  fields missing from the doc: %s\n", strings.Join(missing, ", "))
	}
	if len(obsolete) > 0 {
		fmt.Fprintf(&b, "  fields the doc lists that no longer exist: %s\n", strings.Join(obsolete, ", "))
	}
	dl, wl := strings.Split(doc, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(dl), len(wl)); i++ {
		var d, w string
		if i < len(dl) {
			d = dl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if d != w {
			from := commonPrefix(d, w)
			fmt.Fprintf(&b, "  first difference at line %d:\n    doc:       %s\n    generated: %s\n", i+1, clip(d, from), clip(w, from))
			break
		}
	}
	fmt.Fprintf(&b, "To regenerate it from the code, run %s and commit %s. (Text outside the GENERATED markers is hand-written and is kept.)", RegenerateCmd, name)
	return b.String()
}

// commonPrefix is the length of the longest common prefix of a and b.
func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// clip shortens a line to about 160 bytes that show its byte at, where it
// differs from the other.
func clip(s string, at int) string {
	start := 0
	if at > 120 {
		start = at - 80
		for start < len(s) && !utf8.RuneStart(s[start]) {
			start++
		}
	}
	end := min(len(s), start+160)
	for end < len(s) && !utf8.RuneStart(s[end]) {
		end++
	}
	out := s[start:end]
	if start > 0 {
		out = "…" + out
	}
	if end < len(s) {
		out += "…"
	}
	return out
}

var rowPath = regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")

// rowPaths lists the field paths of the generated field tables.
func rowPaths(doc string) map[string]bool {
	out := map[string]bool{}
	for _, m := range generatedBlock.FindAllStringSubmatch(doc, -1) {
		if m[1] != "FIELDS" {
			continue
		}
		for _, r := range rowPath.FindAllStringSubmatch(m[0], -1) {
			out[r[1]] = true
		}
	}
	return out
}
