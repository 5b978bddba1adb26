package caddymodule_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/internal/configdoc"
)

// TestConfigurationDoc checks that the generated sections of
// docs/configuration.md and docs/operations.md are what the code generates
// now (see package configdoc), and that the hand-written text names only
// keywords, JSON fields and metrics the code has. It writes nothing:
// go generate ./caddymodule regenerates the docs.
func TestConfigurationDoc(t *testing.T) {
	res, err := configdoc.Generate(".", "../docs")
	if err != nil {
		t.Fatalf("generating the docs: %v (see %s)", err, configdoc.RegenerateCmd)
	}
	for _, p := range res.Problems {
		t.Error(p)
	}
	for _, d := range res.Docs {
		current, err := os.ReadFile(d.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(current, d.Content) {
			t.Errorf("%s", d.Stale(current))
		}
	}
}
