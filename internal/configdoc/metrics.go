package configdoc

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"slices"
	"strconv"
	"strings"
)

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
				return nil, fmt.Errorf("newGatewayMetrics defines no metric the generator can read; docs/operations.md lists the metrics from it")
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
