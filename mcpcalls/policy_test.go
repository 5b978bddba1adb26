package mcpcalls

import (
	"testing"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

func opsPolicy(listAll bool) *Policy {
	return NewPolicy(Rules{
		Tools: map[string]scopes.Set{"restart_service": scopes.MustParse("admin.read tickets.write")},
		Resources: map[string]scopes.Set{
			"file:///":             scopes.MustParse("tickets.read"),
			"file:///ops/secrets/": scopes.MustParse("admin.read"),
		},
		Prompts: map[string]scopes.Set{"incident_report": scopes.MustParse("tickets.write")},
		ListAll: listAll,
	})
}

func TestPolicyNeeds(t *testing.T) {
	p := opsPolicy(false)
	for _, tc := range []struct {
		m    Message
		want string
	}{
		{Message{Method: MethodCallTool, Name: "restart_service"}, "admin.read tickets.write"},
		{Message{Method: MethodCallTool, Name: "whoami"}, ""},
		{Message{Method: MethodGetPrompt, Name: "incident_report"}, "tickets.write"},
		// The longest prefix decides.
		{Message{Method: MethodReadResource, Name: "file:///ops/secrets/db.txt"}, "admin.read"},
		{Message{Method: MethodSubscribeResource, Name: "file:///ops/readme"}, "tickets.read"},
		{Message{Method: MethodReadResource, Name: "https://example.com/"}, ""},
		// Completing a prompt's arguments needs what getting it does, and
		// a resource template's what the URIs under its literal start do.
		{Message{Method: MethodComplete, Ref: RefPrompt, Name: "incident_report"}, "tickets.write"},
		{Message{Method: MethodComplete, Ref: RefResource, Name: "file:///ops/secrets/{name}"}, "admin.read"},
		{Message{Method: MethodComplete, Ref: RefResource, Name: "file:///ops/{dir}/x"}, "tickets.read"},
		// Lists and other methods need nothing beyond the server's scopes.
		{Message{Method: MethodListTools}, ""},
		{Message{Method: "ping"}, ""},
	} {
		if got := p.Needs(tc.m).String(); got != tc.want {
			t.Errorf("Needs(%s %s) = %q, want %q", tc.m.Method, tc.m.Name, got, tc.want)
		}
	}
	if NewPolicy(Rules{ListAll: true}) != nil {
		t.Error("rules that name nothing made a policy; a server without call scopes must not have its requests read")
	}
}

func TestPolicyMissing(t *testing.T) {
	p := opsPolicy(false)
	batch := []Message{
		{Method: MethodCallTool, Name: "whoami", ID: []byte("1")},
		{Method: MethodReadResource, Name: "file:///ops/secrets/db.txt", ID: []byte("2")},
		{Method: MethodCallTool, Name: "restart_service", ID: []byte("3")},
	}
	missing, first := p.Missing(batch, scopes.MustParse("tickets.read tickets.write"))
	if first == nil || first.Name != "file:///ops/secrets/db.txt" || missing.String() != "admin.read" {
		t.Errorf("Missing = %q, first refused %+v", missing, first)
	}
	if missing, first := p.Missing(batch, scopes.MustParse("admin.read tickets.read tickets.write")); first != nil {
		t.Errorf("a token with every scope was refused for %q (%+v)", missing, first)
	}
	missing, _ = p.Missing([]Message{{Method: MethodCallTool, Name: "restart_service"}, {Method: MethodGetPrompt, Name: "incident_report"}},
		scopes.MustParse("tickets.read"))
	if missing.String() != "admin.read tickets.write" {
		t.Errorf("the scopes missing for a batch are %q, want every refused message's", missing)
	}
}

func TestPolicyLists(t *testing.T) {
	granted := scopes.MustParse("tickets.read")
	list := []Message{{Method: MethodListTools, ID: []byte("1")}}
	if opsPolicy(true).Lists(list, granted) != nil {
		t.Error("list_all still filters lists")
	}
	if opsPolicy(false).Lists([]Message{{Method: MethodCallTool, Name: "whoami", ID: []byte("1")}}, granted) != nil {
		t.Error("a request without a list request is filtered")
	}
	onlyTools := NewPolicy(Rules{Tools: map[string]scopes.Set{"restart_service": scopes.MustParse("admin.read")}})
	if onlyTools.Lists([]Message{{Method: MethodListPrompts, ID: []byte("1")}}, granted) != nil {
		t.Error("prompts/list is filtered though no prompt has scopes")
	}
	l := opsPolicy(false).Lists(list, granted)
	if l == nil || l.methodOf([]byte(`"whatever"`)) != MethodListTools {
		t.Error("the reply to a request's only list request is not recognised whatever its id")
	}
	l = opsPolicy(false).Lists([]Message{{Method: MethodCallTool, Name: "whoami", ID: []byte("1")}, {Method: MethodListPrompts, ID: []byte(`"p\u0031"`)}}, granted)
	if l.methodOf([]byte(`"p1"`)) != MethodListPrompts || l.methodOf([]byte("1")) != "" {
		t.Error("in a batch, list replies are not matched by id")
	}
}

func TestPolicyConcerns(t *testing.T) {
	p := opsPolicy(false)
	for _, tc := range []struct {
		msgs []Message
		want bool
	}{
		{[]Message{{Method: MethodCallTool, Name: "whoami", ID: []byte("1")}}, false},
		{[]Message{{Method: "notifications/initialized"}, {ID: []byte("1")}}, false},
		{[]Message{{Method: MethodCallTool, Name: "whoami", ID: []byte("1")}, {Method: MethodCallTool, Name: "restart_service", ID: []byte("2")}}, true},
		{[]Message{{Method: MethodListTools, ID: []byte("1")}}, true},
		{[]Message{{Method: MethodListTools}}, false}, // a notification gets no result
	} {
		if got := p.Concerns(tc.msgs); got != tc.want {
			t.Errorf("Concerns(%+v) = %v, want %v", tc.msgs, got, tc.want)
		}
	}
	if opsPolicy(true).Concerns([]Message{{Method: MethodListTools, ID: []byte("1")}}) {
		t.Error("with list_all a list request concerns the policy")
	}
}

func TestPolicyBodyLimit(t *testing.T) {
	if got := opsPolicy(false).BodyLimit(); got != MaxBodyBytes {
		t.Errorf("default body limit %d, want %d", got, MaxBodyBytes)
	}
	p := NewPolicy(Rules{Tools: map[string]scopes.Set{"restart_service": scopes.MustParse("admin.read")}, MaxBodyBytes: 4096})
	if got := p.BodyLimit(); got != 4096 {
		t.Errorf("body limit %d, want the rules' 4096", got)
	}
}
