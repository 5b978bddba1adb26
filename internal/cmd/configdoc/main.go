// Command configdoc regenerates the sections of docs/configuration.md and
// docs/operations.md that the code defines (see package configdoc). It is
// run by go generate in caddymodule:
//
//	go generate ./caddymodule
//
// It rewrites only the docs whose generated sections changed, and the
// hand-written text of none. What regenerating cannot fix (a config field
// without a doc comment, hand-written text that names what the code does
// not have) it reports, and then it exits with status 1.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/internal/configdoc"
)

func main() {
	src := flag.String("src", ".", "the caddymodule package's directory")
	docs := flag.String("docs", "../docs", "the docs directory")
	flag.Parse()
	if err := run(*src, *docs); err != nil {
		fmt.Fprintln(os.Stderr, "configdoc:", err)
		os.Exit(1)
	}
}

func run(src, docs string) error {
	res, err := configdoc.Generate(src, docs)
	if err != nil {
		return err
	}
	for _, d := range res.Docs {
		current, err := os.ReadFile(d.Path)
		if err != nil {
			return err
		}
		if bytes.Equal(current, d.Content) {
			continue
		}
		if err := os.WriteFile(d.Path, d.Content, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "configdoc: rewrote the generated sections of %s\n", d.Name)
	}
	for _, p := range res.Problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(res.Problems) > 0 {
		return fmt.Errorf("%d problems to fix by hand in the code or the docs", len(res.Problems))
	}
	return nil
}
