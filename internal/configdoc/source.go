package configdoc

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"maps"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

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

// parseConfigSource parses the package's non-test Go source in dir.
func parseConfigSource(dir string) (*configSource, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	src := &configSource{fset: token.NewFileSet(), types: map[string]*typeDecl{}}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(src.fset, name, nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %v", name, err)
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
		return nil, fmt.Errorf("no Go source in %s", dir)
	}
	return src, nil
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
				problems = append(problems, fmt.Sprintf("%s.%s (JSON %s) has no doc comment: write one; it is the field's description in docs/configuration.md (then run %s)", typeName, f.goName, p, RegenerateCmd))
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
