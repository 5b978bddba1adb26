package mcpcalls

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// Rules say which scopes single tools, resources and prompts of one MCP
// server need. Whatever they do not list needs only what the server itself
// needs of every request.
type Rules struct {
	// Tools maps tool names to the scopes a token needs, all of them, to
	// call the tool (tools/call) or see it in tools/list.
	Tools map[string]scopes.Set
	// Resources maps resource URI prefixes to the scopes a token needs to
	// read or subscribe to a resource under the prefix (resources/read,
	// resources/subscribe, subscriptions/listen), or see it in
	// resources/list. Of several prefixes of one URI the longest decides.
	// Prefixes are compared with the URI as the client sends it, byte for
	// byte. A URI template (resources/templates/list, completion/complete)
	// is judged by its literal start, up to its first '{': a template that
	// can only expand under a prefix needs the prefix's scopes.
	Resources map[string]scopes.Set
	// Prompts maps prompt names to the scopes a token needs to get the
	// prompt (prompts/get), complete its arguments (completion/complete)
	// or see it in prompts/list.
	Prompts map[string]scopes.Set
	// ListAll leaves list results whole: a client sees every tool, resource
	// and prompt, and is refused only when it uses one its token does not
	// cover.
	ListAll bool
	// MaxBodyBytes is the largest request body read (see Read); zero means
	// MaxBodyBytes.
	MaxBodyBytes int64
	// UncheckedMethods are methods that pass though they seem to name a
	// tool, resource or prompt (Message.Unjudged), needing only the
	// server's own scopes. Other such methods are refused (see Unjudged).
	UncheckedMethods []string
}

// Policy decides per message. It is immutable and safe for concurrent use.
type Policy struct {
	tools, prompts map[string]scopes.Set
	resources      []prefixRule // longest prefix first
	listAll        bool
	bodyLimit      int64
	unchecked      []string
}

type prefixRule struct {
	prefix string
	needs  scopes.Set
}

// NewPolicy returns the policy of rules; nil if the rules name nothing, so
// that callers can skip reading requests that no rule could concern.
func NewPolicy(r Rules) *Policy {
	if len(r.Tools)+len(r.Resources)+len(r.Prompts) == 0 {
		return nil
	}
	p := &Policy{tools: r.Tools, prompts: r.Prompts, listAll: r.ListAll, bodyLimit: cmp.Or(r.MaxBodyBytes, MaxBodyBytes),
		unchecked: slices.Clone(r.UncheckedMethods)}
	for prefix, needs := range r.Resources {
		p.resources = append(p.resources, prefixRule{prefix, needs})
	}
	slices.SortFunc(p.resources, func(a, b prefixRule) int {
		return cmp.Or(cmp.Compare(len(b.prefix), len(a.prefix)), strings.Compare(a.prefix, b.prefix))
	})
	return p
}

// BodyLimit is the largest request body the policy's server accepts.
func (p *Policy) BodyLimit() int64 { return p.bodyLimit }

// Needs returns the scopes m needs beyond the server's own: those of the
// tool, prompt or resource it names. Other messages need none.
func (p *Policy) Needs(m Message) scopes.Set {
	switch m.Method {
	case MethodCallTool:
		return p.tools[m.Name]
	case MethodGetPrompt:
		return p.prompts[m.Name]
	case MethodReadResource, MethodSubscribeResource:
		return p.resource(m.Name)
	case MethodListen:
		var needs scopes.Set
		for _, uri := range m.Subscriptions {
			needs = needs.Union(p.resource(uri))
		}
		return needs
	case MethodComplete:
		switch m.Ref {
		case RefPrompt:
			return p.prompts[m.Name]
		case RefResource:
			return p.template(m.Name)
		}
	}
	return scopes.Set{}
}

// template returns the scopes of a URI template: those of its literal
// start, which every URI it expands to begins with.
func (p *Policy) template(uriTemplate string) scopes.Set {
	literal, _, _ := strings.Cut(uriTemplate, "{")
	return p.resource(literal)
}

func (p *Policy) resource(uri string) scopes.Set {
	for _, r := range p.resources {
		if strings.HasPrefix(uri, r.prefix) {
			return r.needs
		}
	}
	return scopes.Set{}
}

// Concerns reports whether any of msgs uses a tool, resource or prompt
// with scopes of its own, or lists what results must be filtered of: only
// then do the token's scopes matter.
func (p *Policy) Concerns(msgs []Message) bool {
	for _, m := range msgs {
		if !p.Needs(m).IsEmpty() || (!p.listAll && m.ID != nil && p.filters(m.Method)) {
			return true
		}
	}
	return false
}

// Missing returns the scopes that granted lacks for msgs, and names the
// first use it lacks them for, such as "tools/call restart_service" ("" when
// every message may go on). For a batch the scopes of every refused message
// are joined, so that one new authorization covers the whole batch.
func (p *Policy) Missing(msgs []Message, granted scopes.Set) (scopes.Set, string) {
	var missing scopes.Set
	var first string
	for _, m := range msgs {
		needs := p.Needs(m)
		if granted.ContainsAll(needs) {
			continue
		}
		if first == "" {
			first = m.Method + " " + p.refused(m, granted)
		}
		missing = missing.Union(needs.Minus(granted))
	}
	return missing, first
}

// refused names what of m granted does not cover: its tool, prompt or
// resource, or the first resource of a subscriptions/listen it lacks
// scopes for.
func (p *Policy) refused(m Message, granted scopes.Set) string {
	for _, uri := range m.Subscriptions {
		if !granted.ContainsAll(p.resource(uri)) {
			return uri
		}
	}
	return m.Name
}

// Unjudged returns the refusal of the first of msgs that no rule can judge,
// nil when there is none: a method outside MCP's that seems to name a tool,
// resource or prompt (Message.Unjudged) and that the rules do not let pass
// (Rules.UncheckedMethods). The gateway cannot tell which scopes it needs,
// and passing it would let a method that MCP adds later, or an upstream's
// own, reach what the rules guard.
func (p *Policy) Unjudged(msgs []Message) *Error {
	for _, m := range msgs {
		if m.Unjudged && !slices.Contains(p.unchecked, m.Method) {
			return &Error{Status: http.StatusForbidden, Code: CodeMethodNotFound, ID: m.ID,
				Message: "the gateway refuses method " + quoteShort(m.Method) + ": its params seem to name a tool, resource or prompt (a name, uri, uriTemplate or ref member, " +
					"or params that are not an object), and the gateway cannot tell which scopes that needs; the server's operator can let it pass with unchecked_methods"}
		}
	}
	return nil
}

// Judged reports whether the gateway judges the MCP method by the rules,
// that is, it names a tool, resource or prompt whose scopes it checks.
func Judged(method string) bool {
	switch method {
	case MethodCallTool, MethodGetPrompt, MethodReadResource, MethodSubscribeResource, MethodListen, MethodComplete:
		return true
	}
	return false
}

// Lists returns what a response filter needs to know of the list requests
// among msgs, or nil when no list result needs filtering: there is no list
// request, no rule concerns its kind, or the rules list all.
func (p *Policy) Lists(msgs []Message, granted scopes.Set) *Lists {
	if p.listAll {
		return nil
	}
	lists := false
	for _, m := range msgs {
		lists = lists || (m.ID != nil && p.filters(m.Method))
	}
	if !lists {
		return nil
	}
	l := &Lists{policy: p, granted: granted, requests: make(map[string]string, len(msgs))}
	for _, m := range msgs {
		if m.Method == "" || m.ID == nil {
			continue
		}
		method := m.Method
		if !p.filters(method) {
			method = "" // its result is left as it is
		}
		l.requests[canonicalID(m.ID)] = method // Parse refused duplicates
		l.only = method
	}
	if len(l.requests) > 1 {
		l.only = "" // only is for a lone request
	}
	return l
}

// Replays returns what a response filter needs for a stream that carries
// replies to earlier requests, whose methods are unknown: a GET stream that
// a client resumes (Last-Event-ID) may replay them from the upstream's
// store, unfiltered. List results on it are recognised by their shape (a
// result with a tools, resources, resourceTemplates or prompts array), as
// are those of any reply whose id names no request.
// Nil when the rules list all.
func (p *Policy) Replays(granted scopes.Set) *Lists {
	if p.listAll {
		return nil
	}
	return &Lists{policy: p, granted: granted}
}

// filters reports whether results of the list method need filtering.
func (p *Policy) filters(method string) bool {
	switch method {
	case MethodListTools:
		return len(p.tools) > 0
	case MethodListPrompts:
		return len(p.prompts) > 0
	case MethodListResources, MethodListResourceTemplates:
		return len(p.resources) > 0
	}
	return false
}

// visible reports whether an entry of a list result of method may be shown
// to a token with granted scopes.
func (p *Policy) visible(method, name string, granted scopes.Set) bool {
	var needs scopes.Set
	switch method {
	case MethodListTools:
		needs = p.tools[name]
	case MethodListPrompts:
		needs = p.prompts[name]
	case MethodListResources:
		needs = p.resource(name)
	case MethodListResourceTemplates:
		needs = p.template(name)
	}
	return granted.ContainsAll(needs)
}

// Lists are the requests of one HTTP request, whose list results a
// [Filter] rewrites for the token's scopes.
type Lists struct {
	policy  *Policy
	granted scopes.Set
	// requests maps the canonical id of every request to its method if its
	// result is filtered, or "".
	requests map[string]string
	// only is the method of the request's only JSON-RPC request, when that
	// is a list request: every response in the reply then answers it,
	// whatever id the upstream wrote.
	only string
}

// methodOf returns the list method a response with the raw id answers ("" if
// it answers a request whose result is not filtered), and whether the id
// names a request at all. The reply to an id that names none, which no
// upstream should send, is judged by its shape: it might answer a list
// request under another spelling of its id.
func (l *Lists) methodOf(id json.RawMessage) (string, bool) {
	if l.only != "" {
		return l.only, true
	}
	if !validID(id) {
		return "", false
	}
	method, known := l.requests[canonicalID(id)]
	return method, known
}
