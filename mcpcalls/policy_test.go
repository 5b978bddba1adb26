package mcpcalls

import (
	"net/http"
	"strings"
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
		// subscriptions/listen needs what subscribing to each URI does.
		{Message{Method: MethodListen, Subscriptions: []string{"file:///ops/readme", "file:///ops/secrets/db.txt"}}, "admin.read tickets.read"},
		{Message{Method: MethodListen, Subscriptions: []string{"https://example.com/"}}, ""},
		{Message{Method: MethodListen}, ""},
		// Unsubscribing reveals nothing.
		{Message{Method: MethodUnsubscribeResource, Name: "file:///ops/secrets/db.txt"}, ""},
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
	if first != "resources/read file:///ops/secrets/db.txt" || missing.String() != "admin.read" {
		t.Errorf("Missing = %q, first refused %q", missing, first)
	}
	if missing, first := p.Missing(batch, scopes.MustParse("admin.read tickets.read tickets.write")); first != "" {
		t.Errorf("a token with every scope was refused for %q (%s)", missing, first)
	}
	// A subscriptions/listen is refused for the first resource the token
	// may not subscribe to.
	listen := []Message{{Method: MethodListen, ID: []byte("1"), Subscriptions: []string{"file:///ops/readme", "file:///ops/secrets/db.txt", "file:///ops/secrets/key"}}}
	if missing, first := p.Missing(listen, scopes.MustParse("tickets.read")); first != "subscriptions/listen file:///ops/secrets/db.txt" || missing.String() != "admin.read" {
		t.Errorf("Missing(subscriptions/listen) = %q, first refused %q", missing, first)
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
	if l == nil {
		t.Fatal("a tools/list is not filtered")
	}
	if method, known := l.methodOf([]byte(`"whatever"`)); method != MethodListTools || !known {
		t.Error("the reply to a request's only list request is not recognised whatever its id")
	}
	l = opsPolicy(false).Lists([]Message{{Method: MethodCallTool, Name: "whoami", ID: []byte("1")}, {Method: MethodListPrompts, ID: []byte(`"p\u0031"`)}, {Method: "notifications/initialized"}}, granted)
	for _, tc := range []struct {
		id     string
		method string
		known  bool
	}{
		{`"p1"`, MethodListPrompts, true},
		{`"p\u0031"`, MethodListPrompts, true},
		{"1", "", true},   // the call: its result stays as it is
		{`"1"`, "", true}, // the call, its id turned into a string
		// Ids that name no request: the reply is judged by its shape.
		{"2", "", false},
		{"1.0", "", false},
		{"null", "", false},
		{"", "", false},
	} {
		if method, known := l.methodOf([]byte(tc.id)); method != tc.method || known != tc.known {
			t.Errorf("in a batch, methodOf(%s) = %q, %v, want %q, %v", tc.id, method, known, tc.method, tc.known)
		}
	}
}

func TestPolicyUnjudged(t *testing.T) {
	p := NewPolicy(Rules{Tools: map[string]scopes.Set{"restart_service": scopes.MustParse("admin.read")}, UncheckedMethods: []string{"acme/run"}})
	for _, tc := range []struct {
		name string
		msgs []Message
		want string // the method refused, or ""
	}{
		{"nothing unjudged", []Message{{Method: MethodCallTool, Name: "whoami", ID: []byte("1")}, {Method: "ping", ID: []byte("2")}}, ""},
		{"unjudged", []Message{{Method: "tools/execute", Unjudged: true, ID: []byte("1")}}, "tools/execute"},
		{"unjudged in a batch", []Message{{Method: "ping", ID: []byte("1")}, {Method: "tools/execute", Unjudged: true, ID: []byte("2")}}, "tools/execute"},
		{"unjudged notification", []Message{{Method: "notifications/tools/run", Unjudged: true}}, "notifications/tools/run"},
		{"unchecked by the rules", []Message{{Method: "acme/run", Unjudged: true, ID: []byte("1")}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Unjudged(tc.msgs)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || err.Status != http.StatusForbidden || err.Code != CodeMethodNotFound || !strings.Contains(err.Message, tc.want)):
				t.Errorf("got %+v, want a 403 with JSON-RPC error %d naming %s", err, CodeMethodNotFound, tc.want)
			}
		})
	}
	for _, m := range []string{MethodCallTool, MethodGetPrompt, MethodReadResource, MethodSubscribeResource, MethodListen, MethodComplete} {
		if !Judged(m) {
			t.Errorf("Judged(%s) = false", m)
		}
	}
	for _, m := range []string{MethodListTools, MethodUnsubscribeResource, "ping", "acme/run"} {
		if Judged(m) {
			t.Errorf("Judged(%s) = true", m)
		}
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
