// Package configdoc generates the parts of the operator docs that the code
// defines, so that they cannot drift from it:
//
//   - docs/configuration.md's Caddyfile syntax (between the GENERATED
//     CADDYFILE SYNTAX markers) is the syntax block of parseCaddyfile's
//     doc comment;
//   - its field reference (GENERATED FIELDS) is generated from the config
//     structs reachable from Handler and their doc comments;
//   - its JSON example (GENERATED JSON EXAMPLE) is the hand-written
//     Caddyfile example adapted by the real adapter;
//   - docs/operations.md's metrics table (GENERATED METRICS) is generated
//     from newGatewayMetrics in metrics.go.
//
// It also checks what it cannot generate: that the hand-written table of
// Caddyfile directives lists exactly the keywords the Caddyfile parser
// accepts (read from the switch cases, map keys and comparisons of the
// functions that read Caddyfile tokens), and that every JSON path and
// metric the hand-written text names exists.
//
// The configdoc program (internal/cmd/configdoc, run by go generate
// ./caddymodule) writes the docs Generate returns; caddymodule's
// TestConfigurationDoc checks that the committed docs are those. The
// hand-written parts are never rewritten.
package configdoc

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// RegenerateCmd is how the generated sections are brought up to date.
const RegenerateCmd = "go generate ./caddymodule"

const (
	configDoc     = "configuration.md"
	operationsDoc = "operations.md"
	// troubleshootingDoc is only checked: its references to JSON fields
	// and metrics must exist.
	troubleshootingDoc = "troubleshooting.md"

	// directivesHeading opens the hand-written table of Caddyfile keywords.
	directivesHeading = "## Caddyfile directives"
	// exampleHeading opens the section whose first caddyfile block is the
	// full example, and whose generated JSON is that example adapted.
	exampleHeading = "## Full example"
)

// Doc is a document with its generated sections as the code makes them.
type Doc struct {
	Name    string // as the messages name it, e.g. docs/configuration.md
	Path    string // the file it was read from, and is written to
	Content []byte
}

// Result is what Generate makes of the source and the docs.
type Result struct {
	// Docs are docs/configuration.md and docs/operations.md, generated.
	Docs []Doc
	// Problems are what regenerating cannot fix: config fields without a
	// doc comment, and hand-written text that names keywords, JSON fields
	// or metrics the code does not have, or lacks keywords it has.
	Problems []string
}

// Generate reads the Go source of the caddymodule package in srcDir and
// the docs in docsDir, and returns the docs with their generated sections
// as the code makes them. It fails when a section cannot be generated at
// all: unreadable source, missing markers, a Caddyfile example that does
// not adapt.
func Generate(srcDir, docsDir string) (*Result, error) {
	src, err := parseConfigSource(srcDir)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	config, err := readDoc(docsDir, configDoc)
	if err != nil {
		return nil, err
	}
	sections, problems := src.configSections("Handler")
	res.Problems = append(res.Problems, problems...)
	syntax, err := src.caddyfileSyntax()
	if err != nil {
		return nil, err
	}
	example, err := exampleJSON(string(config.Content))
	if err != nil {
		return nil, fmt.Errorf("%s: the full example: %v", config.Name, err)
	}
	if err := config.regenerate(map[string]string{
		"FIELDS":           renderSections(sections),
		"CADDYFILE SYNTAX": syntax,
		"JSON EXAMPLE":     example,
	}); err != nil {
		return nil, err
	}

	metrics, err := src.gatewayMetrics()
	if err != nil {
		return nil, err
	}
	ops, err := readDoc(docsDir, operationsDoc)
	if err != nil {
		return nil, err
	}
	if err := ops.regenerate(map[string]string{"METRICS": renderMetrics(metrics)}); err != nil {
		return nil, err
	}
	res.Docs = []Doc{*config, *ops}

	paths := map[string]bool{}
	for _, s := range sections {
		for _, r := range s.rows {
			paths[r.path] = true
		}
	}
	handWritten := stripGenerated(string(config.Content))
	res.Problems = append(res.Problems, checkDirectives(config.Name, handWritten, src.caddyfileKeywords())...)
	res.Problems = append(res.Problems, checkPathReferences(config.Name, handWritten, paths)...)
	troubleshooting, err := readDoc(docsDir, troubleshootingDoc)
	if err != nil {
		return nil, err
	}
	for _, d := range []*Doc{troubleshooting, ops} {
		text := stripGenerated(string(d.Content))
		res.Problems = append(res.Problems, checkPathReferences(d.Name, text, paths)...)
		res.Problems = append(res.Problems, checkMetricReferences(d.Name, text, metrics)...)
	}
	return res, nil
}

func readDoc(dir, name string) (*Doc, error) {
	path := filepath.Join(dir, name)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %v", path, err)
	}
	return &Doc{Name: "docs/" + name, Path: path, Content: raw}, nil
}

// regenerate puts the generated sections into the doc.
func (d *Doc) regenerate(generated map[string]string) error {
	doc := string(d.Content)
	for _, section := range slices.Sorted(maps.Keys(generated)) {
		var err error
		if doc, err = replaceGenerated(doc, section, generated[section]); err != nil {
			return fmt.Errorf("%s: %v", d.Name, err)
		}
	}
	d.Content = []byte(doc)
	return nil
}
