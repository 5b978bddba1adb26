package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/caddymodule"
)

var updateDocs = flag.Bool("update", false, "rewrite the generated sections of docs/configuration.md from the source")

const (
	configDocPath = "../docs/configuration.md"
	regenerateCmd = "go test ./caddymodule -run TestConfigurationDoc -update"

	// directivesHeading opens the hand-written table of Caddyfile keywords.
	directivesHeading = "## Caddyfile directives"
	// exampleHeading opens the section whose first caddyfile block is the
	// full example, and whose generated JSON is that example adapted.
	exampleHeading = "## Full example"
)

// operationsDocPath holds the generated table of the gateway's metrics.
const operationsDocPath = "../docs/operations.md"

// The docs, besides configuration.md, whose references to JSON fields and
// metrics are checked.
var otherDocs = []string{"../docs/troubleshooting.md", operationsDocPath}

// TestConfigurationDoc keeps the operator docs in step with the code:
//
//   - docs/configuration.md's Caddyfile syntax (between the GENERATED
//     CADDYFILE SYNTAX markers) is the syntax block of parseCaddyfile's
//     doc comment;
//   - its field reference (GENERATED FIELDS) is generated from the config
//     structs reachable from Handler and their doc comments;
//   - its JSON example (GENERATED JSON EXAMPLE) is the hand-written
//     Caddyfile example adapted by the real adapter;
//   - its hand-written table of Caddyfile directives lists exactly the
//     keywords the Caddyfile parser accepts (read from the switch cases,
//     map keys and comparisons of the functions that read Caddyfile
//     tokens);
//   - docs/operations.md's metrics table (GENERATED METRICS) is generated
//     from newGatewayMetrics in metrics.go;
//   - every JSON path and metric the hand-written text names exists.
//
// With -update it rewrites the generated sections instead of failing on
// them; the hand-written parts are never rewritten.
func TestConfigurationDoc(t *testing.T) {
	src := parseConfigSource(t, ".")
	configDoc := readDoc(t, configDocPath)

	sections, problems := src.configSections("Handler")
	for _, p := range problems {
		t.Error(p)
	}
	generated := map[string]string{"FIELDS": renderSections(sections)}
	if syntax, err := src.caddyfileSyntax(); err != nil {
		t.Error(err)
	} else {
		generated["CADDYFILE SYNTAX"] = syntax
	}
	if block, err := exampleJSON(configDoc); err != nil {
		t.Errorf("docs/configuration.md: the full example: %v", err)
	} else {
		generated["JSON EXAMPLE"] = block
	}
	configDoc = regenerate(t, configDocPath, configDoc, generated)

	metrics, err := src.gatewayMetrics()
	if err != nil {
		t.Error(err)
	}
	opsDoc := regenerate(t, operationsDocPath, readDoc(t, operationsDocPath), map[string]string{"METRICS": renderMetrics(metrics)})

	paths := map[string]bool{}
	for _, s := range sections {
		for _, r := range s.rows {
			paths[r.path] = true
		}
	}
	handWritten := stripGenerated(configDoc)
	checkDirectives(t, handWritten, src.caddyfileKeywords())
	checkPathReferences(t, "docs/configuration.md", handWritten, paths)
	for _, name := range otherDocs {
		text := opsDoc
		if name != operationsDocPath {
			text = readDoc(t, name)
		}
		text = stripGenerated(text)
		checkPathReferences(t, strings.TrimPrefix(name, "../"), text, paths)
		checkMetricReferences(t, strings.TrimPrefix(name, "../"), text, metrics)
	}
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return string(raw)
}

// regenerate puts the generated sections into doc, and writes the result
// with -update or reports the difference without. It returns the doc as it
// should be.
func regenerate(t *testing.T, path, doc string, generated map[string]string) string {
	t.Helper()
	name := strings.TrimPrefix(path, "../")
	want := doc
	for _, section := range slices.Sorted(maps.Keys(generated)) {
		var err error
		if want, err = replaceGenerated(want, section, generated[section]); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if want == doc {
		return doc
	}
	if *updateDocs {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the generated sections of %s", name)
	} else {
		t.Errorf("%s", staleMessage(name, doc, want))
	}
	return want
}

// configSource is the parsed, non-test Go source of the package.
type configSource struct {
	files []*ast.File
	fset  *token.FileSet
	types map[string]*typeDecl
}

type typeDecl struct {
	doc    string
	fields *ast.FieldList // nil unless a struct
}

func parseConfigSource(t *testing.T, dir string) *configSource {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	src := &configSource{fset: token.NewFileSet(), types: map[string]*typeDecl{}}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(src.fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatalf("parsing %s: %v", name, err)
		}
		src.files = append(src.files, f)
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				td := &typeDecl{doc: ts.Doc.Text()}
				if td.doc == "" && len(gd.Specs) == 1 {
					td.doc = gd.Doc.Text()
				}
				if st, ok := ts.Type.(*ast.StructType); ok {
					td.fields = st.Fields
				}
				src.types[ts.Name.Name] = td
			}
		}
	}
	if len(src.files) == 0 {
		t.Fatalf("no Go source in %s", dir)
	}
	return src
}

// section is one config object of the reference: its JSON path, Go type,
// doc and fields.
type section struct {
	path, typeName, doc string
	rows                []fieldRow
}

type fieldRow struct {
	path, typ, def, doc string
}

// configSections walks the config structs from root, depth first in field
// order, and returns one section per object. problems name the fields that
// cannot be documented.
func (src *configSource) configSections(root string) (sections []section, problems []string) {
	var walk func(typeName, path string, stack []string)
	walk = func(typeName, path string, stack []string) {
		td := src.types[typeName]
		if td == nil || td.fields == nil || slices.Contains(stack, typeName) {
			return
		}
		stack = append(stack, typeName)
		fields := src.jsonFields(td.fields)
		rename := goToJSON(fields)
		s := section{path: path, typeName: typeName, doc: rename(td.doc)}
		idx := len(sections)
		sections = append(sections, s)
		type child struct{ typeName, path string }
		var children []child
		for _, f := range fields {
			p := f.json
			if path != "" {
				p = path + "." + f.json
			}
			if f.doc == "" {
				problems = append(problems, fmt.Sprintf("%s.%s (JSON %s) has no doc comment: write one; it is the field's description in docs/configuration.md (then run %s)", typeName, f.goName, p, regenerateCmd))
			}
			typ, elem, suffix := src.describeType(f.typ, f.tag)
			if elem != "" {
				typ = fmt.Sprintf("%s, see [`%s`](#%s)", typ, p+suffix, headingSlug("`"+p+suffix+"`"))
				children = append(children, child{elem, p + suffix})
			}
			d := rename(f.doc)
			sections[idx].rows = append(sections[idx].rows, fieldRow{path: p, typ: typ, def: defaultOf(d, typ), doc: d})
		}
		for _, c := range children {
			walk(c.typeName, c.path, stack)
		}
	}
	walk(root, "", nil)
	if len(sections) == 0 {
		problems = append(problems, fmt.Sprintf("no struct type %s in the package source", root))
	}
	return sections, problems
}

type jsonField struct {
	goName, json, doc string
	typ               ast.Expr
	tag               reflect.StructTag
}

// jsonFields lists the fields encoding/json sees, in order: exported,
// not tagged "-", embedded structs without a name promoted. A field
// without a doc comment that directly follows a documented one (as in
// `A string; B string` under one comment) shares its comment.
func (src *configSource) jsonFields(list *ast.FieldList) []jsonField {
	var out []jsonField
	prevDoc, prevEnd := "", -1
	for _, f := range list.List {
		var tag reflect.StructTag
		if f.Tag != nil {
			if s, err := strconv.Unquote(f.Tag.Value); err == nil {
				tag = reflect.StructTag(s)
			}
		}
		doc := f.Doc.Text()
		line := src.fset.Position(f.Pos()).Line
		if doc == "" && prevEnd == line-1 {
			doc = prevDoc
		}
		prevDoc, prevEnd = doc, src.fset.Position(f.End()).Line
		name, _, _ := strings.Cut(tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if len(f.Names) == 0 {
			if id, ok := derefType(f.Type).(*ast.Ident); ok && name == "" {
				if td := src.types[id.Name]; td != nil && td.fields != nil {
					out = append(out, src.jsonFields(td.fields)...)
				}
				continue
			}
		}
		for _, n := range f.Names {
			if !n.IsExported() {
				continue
			}
			jn := name
			if jn == "" {
				jn = n.Name
			}
			out = append(out, jsonField{goName: n.Name, json: jn, doc: doc, typ: f.Type, tag: tag})
		}
	}
	return out
}

func derefType(e ast.Expr) ast.Expr {
	if s, ok := e.(*ast.StarExpr); ok {
		return s.X
	}
	return e
}

// describeType says what a field holds in JSON. elem names the struct the
// value is (or holds), and suffix is what its path gains below it ("[]"
// for a list).
func (src *configSource) describeType(e ast.Expr, tag reflect.StructTag) (desc, elem, suffix string) {
	switch t := derefType(e).(type) {
	case *ast.Ident:
		switch t.Name {
		case "string":
			return "string", "", ""
		case "bool":
			return "boolean", "", ""
		case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
			return "integer", "", ""
		case "float32", "float64":
			return "number", "", ""
		}
		if td := src.types[t.Name]; td != nil && td.fields != nil {
			return "object", t.Name, ""
		}
	case *ast.ArrayType:
		if t.Len == nil {
			inner, el, sfx := src.describeType(t.Elt, "")
			if el != "" {
				return "list of objects", el, "[]" + sfx
			}
			return "list of " + inner + "s", "", ""
		}
	case *ast.MapType:
		key, _, _ := src.describeType(t.Key, "")
		val, el, sfx := src.describeType(t.Value, "")
		if el != "" {
			return "object of objects by " + key, el, ".*" + sfx
		}
		return "object: " + key + " → " + val, "", ""
	case *ast.SelectorExpr:
		switch types.ExprString(t) {
		case "caddy.Duration":
			return "duration", "", ""
		case "json.RawMessage":
			if ns, key := caddyModuleTag(tag); ns != "" {
				return fmt.Sprintf("module of `%s`, named by its `%s` member", ns, key), "", ""
			}
			return "JSON value", "", ""
		}
	}
	return "`" + types.ExprString(e) + "`", "", ""
}

// caddyModuleTag reads a `caddy:"namespace=... inline_key=..."` tag.
func caddyModuleTag(tag reflect.StructTag) (namespace, inlineKey string) {
	for _, part := range strings.Fields(tag.Get("caddy")) {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "namespace":
			namespace = v
		case "inline_key":
			inlineKey = v
		}
	}
	return namespace, inlineKey
}

// goToJSON returns a function that turns the Go names of a struct's fields
// in its doc comments into their JSON names, as code. A field named
// FooRaw (Caddy's convention for a module's raw JSON) is also called Foo.
func goToJSON(fields []jsonField) func(string) string {
	names := map[string]string{}
	for _, f := range fields {
		names[f.goName] = f.json
		if base, ok := strings.CutSuffix(f.goName, "Raw"); ok && base != "" {
			names[base] = f.json
		}
	}
	if len(names) == 0 {
		return func(s string) string { return s }
	}
	keys := slices.Collect(maps.Keys(names))
	sort.Slice(keys, func(i, j int) bool {
		return len(keys[i]) > len(keys[j]) || len(keys[i]) == len(keys[j]) && keys[i] < keys[j]
	})
	re := regexp.MustCompile(`\b(` + strings.Join(keys, "|") + `)\b`)
	return func(s string) string {
		return re.ReplaceAllStringFunc(s, func(m string) string { return "`" + names[m] + "`" })
	}
}

var (
	defaultSentence = regexp.MustCompile(`Default(?: \([^)]*\))?: `)
	defaultQuoted   = regexp.MustCompile(`"([^"]+)" \([^()]*\bthe default\b`)
)

// defaultOf reads a field's default from its doc: a "Default: ..." sentence,
// or a quoted value marked "(the default...)". Booleans default to false.
func defaultOf(doc, typ string) string {
	if loc := defaultSentence.FindStringIndex(doc); loc != nil {
		return firstSentence(doc[loc[1]:])
	}
	if m := defaultQuoted.FindStringSubmatch(doc); m != nil {
		return `"` + m[1] + `"`
	}
	if typ == "boolean" {
		return "false"
	}
	return "—"
}

// firstSentence returns s up to its first full stop that ends a sentence,
// without it.
func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	for i := 0; i < len(s); i++ {
		if s[i] != '.' || (i+1 < len(s) && s[i+1] != ' ') {
			continue
		}
		if strings.HasSuffix(s[:i+1], "e.g.") || strings.HasSuffix(s[:i+1], "i.e.") {
			continue
		}
		return s[:i]
	}
	return s
}

// renderSections writes the field reference in Markdown.
func renderSections(sections []section) string {
	var b strings.Builder
	for i, s := range sections {
		if i > 0 {
			b.WriteString("\n")
		}
		if s.path == "" {
			fmt.Fprintf(&b, "### The handler object\n\n")
		} else {
			fmt.Fprintf(&b, "### `%s`\n\n", s.path)
		}
		fmt.Fprintf(&b, "Go type `%s`. %s\n\n", s.typeName, paragraphs(s.doc, "\n\n"))
		b.WriteString("| field | type | default | meaning |\n|---|---|---|---|\n")
		for _, r := range s.rows {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.path, cell(r.typ), cell(escapeText(r.def)), cell(paragraphs(r.doc, "<br><br>")))
		}
	}
	return b.String()
}

// paragraphs joins a doc comment's lines, separating its paragraphs with sep.
func paragraphs(doc, sep string) string {
	var out []string
	for _, p := range strings.Split(strings.TrimSpace(doc), "\n\n") {
		out = append(out, escapeText(strings.Join(strings.Fields(p), " ")))
	}
	return strings.Join(out, sep)
}

// escapeText keeps text outside code spans from reading as HTML.
func escapeText(s string) string {
	parts := strings.Split(s, "`")
	for i := 0; i < len(parts); i += 2 {
		parts[i] = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(parts[i])
	}
	return strings.Join(parts, "`")
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// headingSlug is the anchor GitHub gives a heading.
func headingSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '_', r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

func markers(name string) (begin, end string) {
	return "<!-- BEGIN GENERATED " + name + " -->", "<!-- END GENERATED " + name + " -->"
}

// replaceGenerated puts content between the markers of name.
func replaceGenerated(doc, name, content string) (string, error) {
	begin, end := markers(name)
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("the markers %s and %s are missing or out of order; put them (each on its own line) where the generated text goes, then run %s", begin, end, regenerateCmd)
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

// staleMessage says how the generated sections differ from the code.
func staleMessage(name, doc, want string) string {
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
			fmt.Fprintf(&b, "  first difference at line %d:\n    doc:       %s\n    generated: %s\n", i+1, clip(d), clip(w))
			break
		}
	}
	fmt.Fprintf(&b, "Regenerate it from the code with\n\t%s\nand commit %s. (Text outside the GENERATED markers is hand-written and is kept.)", regenerateCmd, name)
	return b.String()
}

func clip(s string) string {
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
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

// exampleJSON adapts the doc's full Caddyfile example and renders the
// mcp_gateway handler it adapts to.
func exampleJSON(doc string) (string, error) {
	caddyfile, err := exampleCaddyfile(doc)
	if err != nil {
		return "", err
	}
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return "", fmt.Errorf("the Caddyfile example does not adapt (fix the example by hand): %v", err)
	}
	var config any
	if err := json.Unmarshal(adapted, &config); err != nil {
		return "", err
	}
	handler := findHandler(config)
	if handler == nil {
		return "", fmt.Errorf("the Caddyfile example adapts to no mcp_gateway handler")
	}
	b, err := json.Marshal(handler)
	if err != nil {
		return "", err
	}
	// Through the Go type, so the members come in the structs' order.
	var h caddymodule.Handler
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return "", fmt.Errorf("the adapted handler does not decode into caddymodule.Handler: %v", err)
	}
	out, err := json.MarshalIndent(struct {
		Kind string `json:"handler"`
		*caddymodule.Handler
	}{"mcp_gateway", &h}, "", "  ")
	if err != nil {
		return "", err
	}
	return "```json\n" + string(out) + "\n```\n", nil
}

// exampleCaddyfile returns the first caddyfile code block of the full
// example's section.
func exampleCaddyfile(doc string) (string, error) {
	lines := strings.Split(doc, "\n")
	start := slices.Index(lines, exampleHeading)
	if start < 0 {
		return "", fmt.Errorf("no %q heading: the full Caddyfile example goes in that section", exampleHeading)
	}
	var block []string
	in := false
	for _, l := range lines[start+1:] {
		switch {
		case !in && strings.HasPrefix(l, "## "):
			return "", fmt.Errorf("the %q section has no ```caddyfile block", exampleHeading)
		case !in && strings.TrimSpace(l) == "```caddyfile":
			in = true
		case in && strings.TrimSpace(l) == "```":
			return strings.Join(block, "\n") + "\n", nil
		case in:
			block = append(block, l)
		}
	}
	return "", fmt.Errorf("the %q section has no complete ```caddyfile block", exampleHeading)
}

func findHandler(v any) map[string]any {
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == "mcp_gateway" {
			delete(v, "handler")
			return v
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if h := findHandler(v[k]); h != nil {
				return h
			}
		}
	case []any:
		for _, e := range v {
			if h := findHandler(e); h != nil {
				return h
			}
		}
	}
	return nil
}

// caddyfileSyntax returns the syntax block of parseCaddyfile's doc comment
// as a caddyfile code block.
func (src *configSource) caddyfileSyntax() (string, error) {
	for _, f := range src.files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Name.Name != "parseCaddyfile" || fn.Recv != nil {
				continue
			}
			var block []string
			for _, l := range strings.Split(fn.Doc.Text(), "\n") {
				code, ok := strings.CutPrefix(l, "\t")
				if !ok && l != "" && len(block) > 0 {
					break // the text after the block
				}
				if ok || len(block) > 0 {
					block = append(block, code) // a blank line inside the block is ""
				}
			}
			for len(block) > 0 && strings.TrimSpace(block[len(block)-1]) == "" {
				block = block[:len(block)-1]
			}
			if len(block) == 0 {
				return "", fmt.Errorf("parseCaddyfile's doc comment has no indented syntax block; docs/configuration.md takes the Caddyfile syntax from it")
			}
			return "```caddyfile\n" + strings.Join(block, "\n") + "\n```\n", nil
		}
	}
	return "", fmt.Errorf("no func parseCaddyfile in the package source; docs/configuration.md takes the Caddyfile syntax from its doc comment")
}

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

// checkDirectives compares the keywords of the directives table with the
// parser's.
func checkDirectives(t *testing.T, handWritten string, parser map[string]*keyword) {
	t.Helper()
	lines := strings.Split(handWritten, "\n")
	start := slices.Index(lines, directivesHeading)
	if start < 0 {
		t.Errorf("docs/configuration.md has no %q section: it holds the table of Caddyfile keywords (one row per keyword, in backticks in the first column)", directivesHeading)
		return
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
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "docs/configuration.md's %q table is out of date with the Caddyfile parser (caddymodule/caddyfile.go).\n", directivesHeading)
	if len(missing) > 0 {
		fmt.Fprintf(&b, "  keywords the parser accepts that the table lacks: %s\n", strings.Join(missing, ", "))
	}
	if len(obsolete) > 0 {
		fmt.Fprintf(&b, "  keywords the table lists that the parser does not accept: %s\n", strings.Join(obsolete, ", "))
	}
	fmt.Fprintf(&b, "The table is hand-written (-update does not touch it): add a row for each missing keyword, in backticks in the first column, and remove the rows of obsolete ones. "+
		"If the full example uses the keyword, change it too and regenerate its JSON with\n\t%s", regenerateCmd)
	t.Error(b.String())
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
func checkPathReferences(t *testing.T, name, text string, paths map[string]bool) {
	t.Helper()
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
				t.Errorf("%s:%d names the JSON field `%s`, which the config does not have (see the field reference in docs/configuration.md); fix the text by hand", name, i+1, span)
			}
		}
	}
}

// metric is one of a gateway's Prometheus metrics.
type metric struct {
	name, kind, help string
	labels           []string
}

// gatewayMetrics reads the metrics newGatewayMetrics defines: calls of a
// local helper that wraps a prometheus constructor, and direct constructor
// calls, with their names, help and labels.
func (src *configSource) gatewayMetrics() ([]metric, error) {
	consts := src.stringConsts()
	str := func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			v, err := strconv.Unquote(e.Value)
			return v, err == nil && e.Kind == token.STRING
		case *ast.Ident:
			v, ok := consts[e.Name]
			return v, ok
		}
		return "", false
	}
	for _, f := range src.files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Name.Name != "newGatewayMetrics" || fn.Body == nil {
				continue
			}
			// Local label sets: x := prometheus.Labels{"gateway": ...}.
			labelSets := map[string][]string{}
			// Local helpers: x := func(name, help string, ...) { return prometheus.NewXVec(opts, variable) }.
			type helper struct {
				kind                 string
				namespace, subsystem string
				constLabels          []string
			}
			helpers := map[string]helper{}
			// opts reads a prometheus.*Opts literal.
			opts := func(cl *ast.CompositeLit) (fields map[string]ast.Expr) {
				fields = map[string]ast.Expr{}
				for _, e := range cl.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok {
							fields[k.Name] = kv.Value
						}
					}
				}
				return fields
			}
			constLabels := func(e ast.Expr) []string {
				switch e := e.(type) {
				case *ast.Ident:
					return labelSets[e.Name]
				case *ast.CompositeLit:
					var out []string
					for _, el := range e.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok {
							if k, ok := str(kv.Key); ok {
								out = append(out, k)
							}
						}
					}
					return out
				}
				return nil
			}
			// constructor recognises prometheus.NewX(opts, ...) and
			// returns the metric's kind and its opts.
			constructor := func(call *ast.CallExpr) (kind string, o map[string]ast.Expr, ok bool) {
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || types.ExprString(sel.X) != "prometheus" || !strings.HasPrefix(sel.Sel.Name, "New") || len(call.Args) == 0 {
					return "", nil, false
				}
				cl, ok := call.Args[0].(*ast.CompositeLit)
				if !ok {
					return "", nil, false
				}
				for _, k := range []string{"Counter", "Gauge", "Histogram", "Summary"} {
					if strings.HasPrefix(sel.Sel.Name, "New"+k) {
						return strings.ToLower(k), opts(cl), true
					}
				}
				return "", nil, false
			}
			fullName := func(namespace, subsystem, name string) string {
				var parts []string
				for _, p := range []string{namespace, subsystem, name} {
					if p != "" {
						parts = append(parts, p)
					}
				}
				return strings.Join(parts, "_")
			}
			var out []metric
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.AssignStmt:
					if len(n.Lhs) != 1 || len(n.Rhs) != 1 {
						return true
					}
					id, ok := n.Lhs[0].(*ast.Ident)
					if !ok {
						return true
					}
					switch rhs := n.Rhs[0].(type) {
					case *ast.CompositeLit:
						if types.ExprString(rhs.Type) == "prometheus.Labels" {
							labelSets[id.Name] = constLabels(rhs)
						}
					case *ast.FuncLit:
						ast.Inspect(rhs.Body, func(m ast.Node) bool {
							if call, ok := m.(*ast.CallExpr); ok {
								if kind, o, ok := constructor(call); ok {
									ns, _ := str(o["Namespace"])
									sub, _ := str(o["Subsystem"])
									helpers[id.Name] = helper{kind: kind, namespace: ns, subsystem: sub, constLabels: constLabels(o["ConstLabels"])}
									return false
								}
							}
							return true
						})
						return false
					}
				case *ast.CallExpr:
					if id, ok := n.Fun.(*ast.Ident); ok {
						h, ok := helpers[id.Name]
						if !ok || len(n.Args) < 2 {
							return true
						}
						name, ok1 := str(n.Args[0])
						help, ok2 := str(n.Args[1])
						if !ok1 || !ok2 {
							return true
						}
						labels := slices.Clone(h.constLabels)
						for _, a := range n.Args[2:] {
							if l, ok := str(a); ok {
								labels = append(labels, l)
							}
						}
						out = append(out, metric{name: fullName(h.namespace, h.subsystem, name), kind: h.kind, help: help, labels: labels})
						return false
					}
					kind, o, ok := constructor(n)
					if !ok {
						return true
					}
					name, ok1 := str(o["Name"])
					help, ok2 := str(o["Help"])
					if !ok1 || !ok2 {
						return true
					}
					ns, _ := str(o["Namespace"])
					sub, _ := str(o["Subsystem"])
					labels := constLabels(o["ConstLabels"])
					if len(n.Args) > 1 {
						if cl, ok := n.Args[1].(*ast.CompositeLit); ok {
							for _, e := range cl.Elts {
								if l, ok := str(e); ok {
									labels = append(labels, l)
								}
							}
						}
					}
					out = append(out, metric{name: fullName(ns, sub, name), kind: kind, help: help, labels: labels})
					return false
				}
				return true
			})
			if len(out) == 0 {
				return nil, fmt.Errorf("newGatewayMetrics defines no metric this test can read; docs/operations.md lists the metrics from it")
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("no func newGatewayMetrics in the package source; docs/operations.md lists the metrics from it")
}

// stringConsts returns the package's string constants given as literals.
func (src *configSource) stringConsts() map[string]string {
	out := map[string]string{}
	for _, f := range src.files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if bl, ok := vs.Values[i].(*ast.BasicLit); ok && bl.Kind == token.STRING {
							if v, err := strconv.Unquote(bl.Value); err == nil {
								out[n.Name] = v
							}
						}
					}
				}
			}
		}
	}
	return out
}

// renderMetrics writes the metrics table in Markdown.
func renderMetrics(metrics []metric) string {
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning |\n|---|---|---|---|\n")
	for _, m := range metrics {
		labels := make([]string, len(m.labels))
		for i, l := range m.labels {
			labels[i] = "`" + l + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", m.name, m.kind, strings.Join(labels, ", "), cell(escapeText(m.help)))
	}
	return b.String()
}

var metricRef = regexp.MustCompile(`^(caddy_mcp_gateway_[a-z0-9_]+)(\{.*\})?$`)

// checkMetricReferences checks that every metric a text names in code
// exists (a histogram also has its _bucket, _sum and _count series).
func checkMetricReferences(t *testing.T, name, text string, metrics []metric) {
	t.Helper()
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
				t.Errorf("%s:%d names the metric %s, which metrics.go does not define; fix the text by hand", name, i+1, m[1])
			}
		}
	}
}
