package mcpcalls

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// looksNaming is what Message.Unjudged says of params, by encoding/json.
func looksNaming(params json.RawMessage) bool {
	var v any
	_ = json.Unmarshal(params, &v)
	switch v := v.(type) {
	case nil:
		return false
	case []any:
		return len(v) > 0
	case map[string]any:
		for key := range v {
			for _, naming := range []string{"name", "uri", "uriTemplate", "ref"} {
				if strings.EqualFold(key, naming) {
					return true
				}
			}
		}
		return false
	}
	return true
}

// FuzzParse checks the method and name Parse reads against what
// encoding/json reads, which matches member names without regard to case
// and lets the last of two members win: on every body Parse accepts, the
// two must agree, so no upstream decoder of either kind could run a tool
// other than the one the gateway checked. It also checks that every request
// id accepted is a string or an int64 written as such, that no two requests
// of a batch share one, and that a message of a method the rules do not
// judge is marked Unjudged exactly when its params seem to name something.
// The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		msgs, err := Parse(body)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("Parse returned a %T: %v", err, err)
			}
			if msgs != nil {
				t.Fatalf("Parse returned messages with error %v", err)
			}
			return
		}
		var raws []json.RawMessage
		if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && trimmed[0] == '[' {
			if err := json.Unmarshal(body, &raws); err != nil {
				t.Fatalf("Parse accepted a batch encoding/json refuses: %v", err)
			}
		} else {
			raws = []json.RawMessage{body}
		}
		if len(raws) != len(msgs) {
			t.Fatalf("Parse read %d messages, encoding/json %d", len(msgs), len(raws))
		}
		ids := map[string]bool{}
		for i, raw := range raws {
			var loose struct {
				Method any             `json:"method"`
				ID     json.RawMessage `json:"id"`
				Params json.RawMessage `json:"params"`
			}
			if err := json.Unmarshal(raw, &loose); err != nil {
				t.Fatalf("Parse accepted message %d, which encoding/json refuses: %v", i, err)
			}
			method, _ := loose.Method.(string)
			if loose.Method != nil && method == "" && msgs[i].Method == "" {
				// A method that is not a string is refused by Parse.
				t.Fatalf("message %d: method %v accepted", i, loose.Method)
			}
			if method != msgs[i].Method {
				t.Fatalf("message %d: Parse read method %q, encoding/json %q", i, msgs[i].Method, method)
			}
			id := msgs[i].ID
			if string(loose.ID) != "null" && !bytes.Equal(bytes.TrimSpace(loose.ID), id) {
				t.Fatalf("message %d: Parse read id %s, encoding/json %s", i, id, loose.ID)
			}
			if method != "" && id != nil {
				var text string
				var n int64
				switch {
				case json.Unmarshal(id, &text) == nil:
				case json.Unmarshal(id, &n) == nil && strconv.FormatInt(n, 10) == string(id):
					text = string(id)
				default:
					t.Fatalf("message %d: Parse accepted the request id %s", i, id)
				}
				if ids[text] {
					t.Fatalf("message %d: Parse accepted a second request with the id %s", i, id)
				}
				ids[text] = true
			}
			if method == MethodListen {
				var params struct {
					Notifications *struct {
						ResourceSubscriptions []string `json:"resourceSubscriptions"`
					} `json:"notifications"`
				}
				if err := json.Unmarshal(loose.Params, &params); err != nil {
					t.Fatalf("message %d: Parse accepted a subscriptions/listen encoding/json cannot read: %v", i, err)
				}
				var want []string
				if params.Notifications != nil {
					want = params.Notifications.ResourceSubscriptions
				}
				if !slices.Equal(want, msgs[i].Subscriptions) {
					t.Fatalf("message %d: Parse read subscriptions %q, encoding/json %q", i, msgs[i].Subscriptions, want)
				}
				continue
			}
			if method != "" && !Judged(method) {
				if want := looksNaming(loose.Params) && method != MethodUnsubscribeResource; msgs[i].Unjudged != want {
					t.Fatalf("message %d: %s with params %s: Unjudged %v, want %v", i, method, loose.Params, msgs[i].Unjudged, want)
				}
			} else if msgs[i].Unjudged {
				t.Fatalf("message %d: %s marked Unjudged", i, method)
			}
			if method == MethodComplete {
				var params struct {
					Ref *struct {
						Type *string `json:"type"`
						Name *string `json:"name"`
						URI  *string `json:"uri"`
					} `json:"ref"`
				}
				if err := json.Unmarshal(loose.Params, &params); err != nil || params.Ref == nil || params.Ref.Type == nil {
					t.Fatalf("message %d: Parse accepted a completion encoding/json reads no ref type of (%v)", i, err)
				}
				want := map[string]*string{RefPrompt: params.Ref.Name, RefResource: params.Ref.URI}[*params.Ref.Type]
				if *params.Ref.Type != msgs[i].Ref || want == nil || *want != msgs[i].Name {
					t.Fatalf("message %d: Parse read ref %q %q, encoding/json %q %v", i, msgs[i].Ref, msgs[i].Name, *params.Ref.Type, want)
				}
				continue
			}
			if nameMember(method) == "" {
				if msgs[i].Name != "" || msgs[i].Ref != "" {
					t.Fatalf("message %d: %s names nothing, but Parse read %q", i, method, msgs[i].Name)
				}
				continue
			}
			var params struct {
				Name *string `json:"name"`
				URI  *string `json:"uri"`
			}
			if err := json.Unmarshal(loose.Params, &params); err != nil {
				t.Fatalf("message %d: Parse accepted params encoding/json cannot read: %v", i, err)
			}
			want := params.Name
			if method == MethodReadResource || method == MethodSubscribeResource {
				want = params.URI
			}
			if want == nil || *want != msgs[i].Name {
				t.Fatalf("message %d: Parse read name %q, encoding/json %v", i, msgs[i].Name, want)
			}
		}
	})
}
