package caddymodule

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/mcpcalls"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// unmarshalCallScope parses, in a server block:
//
//	tool <name> <scope...>
//	resource <uri prefix> <scope...>
//	prompt <name> <scope...>
func unmarshalCallScope(d *caddyfile.Dispenser, srv *Server, record func(string, *caddyfile.Dispenser)) error {
	kind := d.Val()
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.Errf("server %q: %s needs a %s and at least one scope: %s <%s> <scope...>", srv.Name, kind, callNoun[kind], kind, callNoun[kind])
	}
	if srv.CallScopes == nil {
		srv.CallScopes = new(CallScopes)
	}
	target := map[string]*map[string][]string{
		"tool":     &srv.CallScopes.Tools,
		"resource": &srv.CallScopes.Resources,
		"prompt":   &srv.CallScopes.Prompts,
	}[kind]
	if *target == nil {
		*target = map[string][]string{}
	}
	name := args[0]
	if _, dup := (*target)[name]; dup {
		return d.Errf("server %q: %s %q is given twice; list all its scopes on one line", srv.Name, kind, name)
	}
	var list []string
	for _, a := range args[1:] {
		list = append(list, strings.Fields(a)...)
	}
	(*target)[name] = list
	record(callScopesPath(kind, name), d)
	return nil
}

// unmarshalMaxCallBody parses: max_call_body <size>, a size as Caddy's
// request_body max_size takes it (1MiB, 512KB, 2000000).
func unmarshalMaxCallBody(d *caddyfile.Dispenser, srv *Server, record func(string, *caddyfile.Dispenser)) error {
	var size string
	if err := oneArg(d, &size); err != nil {
		return err
	}
	n, err := humanize.ParseBytes(size)
	if err != nil || n == 0 || n > maxCallBody {
		return d.Errf("server %q: max_call_body %q must be a size from 1B to 64MiB, such as 4MiB", srv.Name, size)
	}
	if srv.CallScopes == nil {
		srv.CallScopes = new(CallScopes)
	}
	srv.CallScopes.MaxBodyBytes = int64(n)
	record("call_scopes/max_body_bytes", d)
	return nil
}

// unmarshalUncheckedMethods parses: unchecked_methods <method...>, which
// may be repeated.
func unmarshalUncheckedMethods(d *caddyfile.Dispenser, srv *Server, record func(string, *caddyfile.Dispenser)) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("server %q: unchecked_methods needs at least one JSON-RPC method: unchecked_methods <method...>", srv.Name)
	}
	if srv.CallScopes == nil {
		srv.CallScopes = new(CallScopes)
	}
	for _, m := range args {
		record(fmt.Sprintf("call_scopes/unchecked_methods/%d", len(srv.CallScopes.UncheckedMethods)), d)
		srv.CallScopes.UncheckedMethods = append(srv.CallScopes.UncheckedMethods, m)
	}
	return nil
}

// maxCallBody bounds max_call_body: bodies are held in memory.
const maxCallBody = 64 << 20

// unmarshalFilterLists parses: filter_lists off.
func unmarshalFilterLists(d *caddyfile.Dispenser, srv *Server) error {
	args := d.RemainingArgs()
	if len(args) != 1 || args[0] != "off" {
		return d.Errf("server %q: filter_lists takes one value, off, to show every tool, resource and prompt in lists and refuse only their use (lists are filtered by default)", srv.Name)
	}
	if srv.CallScopes == nil {
		srv.CallScopes = new(CallScopes)
	}
	srv.CallScopes.ListAll = true
	return nil
}

var callNoun = map[string]string{"tool": "tool name", "resource": "URI prefix", "prompt": "prompt name"}

// callScopesPath is the JSON path, below a server, of one call scope rule.
func callScopesPath(kind, name string) string {
	return "call_scopes/" + kind + "s/" + name
}

// checkCallScopes checks a server's call scopes against the scopes it
// offers: a rule needing a scope the server cannot grant could never be
// met, and the step-up challenge would ask for it in vain.
func checkCallScopes(path, who string, cs *CallScopes, offered scopes.Set) error {
	if cs == nil {
		return nil
	}
	switch {
	case cs.MaxBodyBytes < 0 || cs.MaxBodyBytes > maxCallBody:
		return &ConfigError{path + "/max_body_bytes", fmt.Sprintf("%s: max_body_bytes %d must be from 1 to %d (64 MiB)", who, cs.MaxBodyBytes, maxCallBody)}
	case cs.MaxBodyBytes != 0 && len(cs.Tools)+len(cs.Resources)+len(cs.Prompts) == 0:
		return &ConfigError{path + "/max_body_bytes", who + ": max_body_bytes (max_call_body) limits the bodies read to judge tool, resource and prompt rules, and this server has none: add rules or remove it"}
	case len(cs.UncheckedMethods) != 0 && len(cs.Tools)+len(cs.Resources)+len(cs.Prompts) == 0:
		return &ConfigError{path + "/unchecked_methods/0", who + ": unchecked_methods lets methods pass that tool, resource and prompt rules could not judge, and this server has no rules (so nothing is refused): add rules or remove it"}
	}
	for i, m := range cs.UncheckedMethods {
		p := fmt.Sprintf("%s/unchecked_methods/%d", path, i)
		switch {
		case m == "":
			return &ConfigError{p, who + ": unchecked_methods has an empty method"}
		case mcpcalls.Judged(m):
			return &ConfigError{p, fmt.Sprintf("%s: %s is judged by the tool, resource and prompt rules and cannot be unchecked: remove it from unchecked_methods", who, m)}
		case slices.Contains(cs.UncheckedMethods[:i], m):
			return &ConfigError{p, fmt.Sprintf("%s: unchecked_methods names %s twice; name it once", who, m)}
		}
	}
	for _, kind := range []struct {
		word  string
		rules map[string][]string
	}{{"tool", cs.Tools}, {"resource", cs.Resources}, {"prompt", cs.Prompts}} {
		for _, name := range slices.Sorted(maps.Keys(kind.rules)) {
			p := path + "/" + strings.TrimPrefix(callScopesPath(kind.word, name), "call_scopes/")
			if name == "" {
				return &ConfigError{p, fmt.Sprintf("%s: a %s rule needs a %s", who, kind.word, callNoun[kind.word])}
			}
			needs, err := scopes.New(kind.rules[name]...)
			if err != nil {
				return &ConfigError{p, fmt.Sprintf("%s: %s %q: %v", who, kind.word, name, err)}
			}
			if needs.IsEmpty() {
				return &ConfigError{p, fmt.Sprintf("%s: %s %q needs at least one scope; remove the rule if the server's own scopes are enough", who, kind.word, name)}
			}
			if extra := needs.Minus(offered); !extra.IsEmpty() {
				return &ConfigError{p, fmt.Sprintf("%s: %s %q needs scope(s) %s, which the server does not offer (%s): add them to the server's scopes, or name only offered scopes",
					who, kind.word, name, extra, offered)}
			}
		}
	}
	return nil
}

// callPolicy builds the runtime policy of a server's call scopes; nil when
// it names nothing, so that the server's requests are not read.
func callPolicy(cs *CallScopes) *mcpcalls.Policy {
	if cs == nil {
		return nil
	}
	parse := func(rules map[string][]string) map[string]scopes.Set {
		if len(rules) == 0 {
			return nil
		}
		out := make(map[string]scopes.Set, len(rules))
		for name, list := range rules {
			out[name], _ = scopes.New(list...) // checked by checkCallScopes
		}
		return out
	}
	return mcpcalls.NewPolicy(mcpcalls.Rules{
		Tools:     parse(cs.Tools),
		Resources: parse(cs.Resources),
		Prompts:   parse(cs.Prompts),
		ListAll:   cs.ListAll,

		MaxBodyBytes:     cs.MaxBodyBytes,
		UncheckedMethods: cs.UncheckedMethods,
	})
}
