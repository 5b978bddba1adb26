package configdoc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"maps"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard" // the modules the example uses

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/caddymodule"
)

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
