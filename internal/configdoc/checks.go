package configdoc

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// keyword is a word the Caddyfile parser accepts, and the parser
// functions that accept it.
type keyword struct {
	word  string
	funcs []string
}

var keywordPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// caddyfileKeywords reads, from every function of the package that takes a
// Caddyfile dispenser or helper, the words it accepts: the string cases of
// its switches (but for cases that only return an error), the string keys
// of its map literals, and the strings it compares tokens with.
func (src *configSource) caddyfileKeywords() map[string]*keyword {
	out := map[string]*keyword{}
	add := func(lit ast.Expr, fn string) {
		bl, ok := lit.(*ast.BasicLit)
		if !ok || bl.Kind != token.STRING {
			return
		}
		w, err := strconv.Unquote(bl.Value)
		if err != nil || !keywordPattern.MatchString(w) {
			return
		}
		k := out[w]
		if k == nil {
			k = &keyword{word: w}
			out[w] = k
		}
		if !slices.Contains(k.funcs, fn) {
			k.funcs = append(k.funcs, fn)
		}
	}
	for _, f := range src.files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil || !takesDispenser(fn) {
				continue
			}
			name := fn.Name.Name
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.SwitchStmt:
					if n.Tag == nil {
						return true
					}
					for _, stmt := range n.Body.List {
						cc := stmt.(*ast.CaseClause)
						if errorOnly(cc) {
							continue
						}
						for _, e := range cc.List {
							add(e, name)
						}
					}
				case *ast.CompositeLit:
					if _, ok := n.Type.(*ast.MapType); ok {
						for _, e := range n.Elts {
							if kv, ok := e.(*ast.KeyValueExpr); ok {
								add(kv.Key, name)
							}
						}
					}
				case *ast.BinaryExpr:
					if n.Op == token.EQL || n.Op == token.NEQ {
						add(n.X, name)
						add(n.Y, name)
					}
				}
				return true
			})
		}
	}
	return out
}

// takesDispenser reports whether fn reads Caddyfile tokens.
func takesDispenser(fn *ast.FuncDecl) bool {
	for _, p := range fn.Type.Params.List {
		switch types.ExprString(derefType(p.Type)) {
		case "caddyfile.Dispenser", "httpcaddyfile.Helper":
			return true
		}
	}
	return false
}

// errorOnly reports whether a case clause only refuses its word.
func errorOnly(cc *ast.CaseClause) bool {
	if len(cc.Body) != 1 {
		return false
	}
	ret, ok := cc.Body[0].(*ast.ReturnStmt)
	if !ok {
		return false
	}
	for _, r := range ret.Results {
		if call, ok := r.(*ast.CallExpr); ok {
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
				switch sel.Sel.Name {
				case "Err", "Errf", "ArgErr", "SyntaxErr", "EOFErr":
					return true
				}
			}
		}
	}
	return false
}

var codeSpan = regexp.MustCompile("`([^`]+)`")

// checkDirectives compares the keywords of the directives table in
// handWritten, the hand-written text of the doc called name, with the
// parser's.
func checkDirectives(name, handWritten string, parser map[string]*keyword) []string {
	lines := strings.Split(handWritten, "\n")
	start := slices.Index(lines, directivesHeading)
	if start < 0 {
		return []string{fmt.Sprintf("%s has no %q section: it holds the table of Caddyfile keywords (one row per keyword, in backticks in the first column)", name, directivesHeading)}
	}
	listed := map[string]int{} // keyword → line
	for i := start + 1; i < len(lines) && !strings.HasPrefix(lines[i], "## "); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "|") || strings.HasPrefix(l, "|---") || strings.HasPrefix(l, "| ---") {
			continue
		}
		first := splitRow(l)
		if len(first) == 0 {
			continue
		}
		for _, m := range codeSpan.FindAllStringSubmatch(first[0], -1) {
			listed[m[1]] = i + 1
		}
	}
	var missing, obsolete []string
	for _, w := range slices.Sorted(maps.Keys(parser)) {
		if _, ok := listed[w]; !ok {
			missing = append(missing, fmt.Sprintf("%s (read by %s)", w, strings.Join(parser[w].funcs, ", ")))
		}
	}
	for _, w := range slices.Sorted(maps.Keys(listed)) {
		if parser[w] == nil {
			obsolete = append(obsolete, fmt.Sprintf("%s (line %d)", w, listed[w]))
		}
	}
	if len(missing)+len(obsolete) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s's %q table is out of date with the Caddyfile parser (caddymodule/caddyfile.go).\n", name, directivesHeading)
	if len(missing) > 0 {
		fmt.Fprintf(&b, "  keywords the parser accepts that the table lacks: %s\n", strings.Join(missing, ", "))
	}
	if len(obsolete) > 0 {
		fmt.Fprintf(&b, "  keywords the table lists that the parser does not accept: %s\n", strings.Join(obsolete, ", "))
	}
	fmt.Fprintf(&b, "The table is hand-written (regenerating does not touch it): add a row for each missing keyword, in backticks in the first column, and remove the rows of obsolete ones. "+
		"If the full example uses the keyword, change it too and regenerate its JSON with\n\t%s", RegenerateCmd)
	return []string{b.String()}
}

// splitRow splits a Markdown table row into its cells, minding escaped bars.
func splitRow(l string) []string {
	l = strings.TrimPrefix(strings.TrimSpace(l), "|")
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(l); i++ {
		switch {
		case l[i] == '\\' && i+1 < len(l) && l[i+1] == '|':
			cur.WriteString(`\|`)
			i++
		case l[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(l[i])
		}
	}
	return cells
}

var pathLike = regexp.MustCompile(`^[a-z_]+(\[\])?((\.[a-z_]+|\.\*)(\[\])?)*$`)

// checkPathReferences checks that every JSON path a text names in code,
// below a top-level field (`gateways[].identity`), exists.
func checkPathReferences(name, text string, paths map[string]bool) (problems []string) {
	top := map[string]bool{}
	valid := map[string]bool{}
	for p := range paths {
		if !strings.ContainsAny(p, ".[") {
			top[p] = true
		}
		// A field's path also names the objects above it, such as
		// gateways[] (the items of gateways).
		valid[p] = true
		for q := p; ; {
			i := strings.LastIndex(q, ".")
			if i < 0 {
				break
			}
			q = q[:i]
			valid[q] = true
		}
	}
	for i, l := range strings.Split(text, "\n") {
		for _, m := range codeSpan.FindAllStringSubmatch(l, -1) {
			span := m[1]
			if !pathLike.MatchString(span) || !strings.ContainsAny(span, ".[") {
				continue
			}
			head, _, _ := strings.Cut(strings.SplitN(span, ".", 2)[0], "[")
			if !top[head] {
				continue
			}
			if !valid[span] {
				problems = append(problems, fmt.Sprintf("%s:%d names the JSON field `%s`, which the config does not have (see the field reference in docs/configuration.md); fix the text by hand", name, i+1, span))
			}
		}
	}
	return problems
}

var metricRef = regexp.MustCompile(`^(caddy_mcp_gateway_[a-z0-9_]+)(\{.*\})?$`)

// checkMetricReferences checks that every metric a text names in code
// exists (a histogram also has its _bucket, _sum and _count series).
func checkMetricReferences(name, text string, metrics []metric) (problems []string) {
	known := map[string]bool{}
	for _, m := range metrics {
		known[m.name] = true
		if m.kind == "histogram" || m.kind == "summary" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				known[m.name+suffix] = true
			}
		}
	}
	for i, l := range strings.Split(text, "\n") {
		for _, span := range codeSpan.FindAllStringSubmatch(l, -1) {
			m := metricRef.FindStringSubmatch(span[1])
			if m != nil && !known[m[1]] {
				problems = append(problems, fmt.Sprintf("%s:%d names the metric %s, which metrics.go does not define; fix the text by hand", name, i+1, m[1]))
			}
		}
	}
	return problems
}
