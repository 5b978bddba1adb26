package testenv

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// headerTransport adds fixed headers to every request, as a gateway or an
// authenticated client would.
type headerTransport struct {
	header http.Header
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range t.header {
		r.Header[k] = v
	}
	return http.DefaultTransport.RoundTrip(r)
}

func startMCPServer(t *testing.T, name string) *MCPServer {
	t.Helper()
	s, err := StartMCPServer(MCPServerConfig{Name: name})
	if err != nil {
		t.Fatalf("StartMCPServer: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// connect opens a client session with the go-sdk client.
func connect(t *testing.T, ctx context.Context, s *MCPServer, header http.Header, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "testenv-test", Version: "1.0.0"}, opts)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:   s.URL(),
		HTTPClient: &http.Client{Transport: headerTransport{header}},
	}, nil)
	if err != nil {
		t.Fatalf("connect to %s: %v", s.URL(), err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func TestMCPServerTools(t *testing.T) {
	tests := []struct {
		name       string
		domainTool string
		otherTool  string
		args       map[string]any
	}{
		{SupportAssistant, "list_tickets", "restart_service", nil},
		{OpsConsole, "restart_service", "list_tickets", map[string]any{"service": "billing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := startMCPServer(t, tt.name)
			cs := connect(t, ctx, s, http.Header{
				"Authorization": {"Bearer xyz"},
				"X-Trace-Id":    {"trace-1"},
			}, nil)

			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
			if err != nil || res.IsError {
				t.Fatalf("whoami: %v %+v", err, res)
			}
			var who WhoAmI
			raw, _ := json.Marshal(res.StructuredContent)
			if err := json.Unmarshal(raw, &who); err != nil {
				t.Fatal(err)
			}
			if who.Server != tt.name || who.Authorization != "Bearer xyz" || who.XHeaders["X-Trace-Id"] != "trace-1" {
				t.Errorf("whoami = %+v, want server %s, Bearer xyz and X-Trace-Id", who, tt.name)
			}
			if len(res.Content) == 0 {
				t.Error("whoami has no text content")
			}
			if got := s.LastAuthorization(); got != "Bearer xyz" {
				t.Errorf("LastAuthorization = %q, want Bearer xyz", got)
			}

			var names []string
			for tool, err := range cs.Tools(ctx, nil) {
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, tool.Name)
			}
			for _, want := range []string{"whoami", "stream_progress", tt.domainTool} {
				if !slices.Contains(names, want) {
					t.Errorf("tools %v lack %s", names, want)
				}
			}
			if slices.Contains(names, tt.otherTool) {
				t.Errorf("tools %v include the other server's %s", names, tt.otherTool)
			}

			res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: tt.domainTool, Arguments: tt.args})
			if err != nil || res.IsError || len(res.Content) == 0 {
				t.Fatalf("%s: %v %+v", tt.domainTool, err, res)
			}
		})
	}
}

// progressRecorder collects progress notifications in the order the client
// handles them.
type progressRecorder chan *mcp.ProgressNotificationParams

func (r progressRecorder) options() *mcp.ClientOptions {
	return &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			r <- req.Params
		},
	}
}

func TestMCPServerStreamProgress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := startMCPServer(t, SupportAssistant)
	progress := make(progressRecorder, 10)
	cs := connect(t, ctx, s, nil, progress.options())

	params := &mcp.CallToolParams{Name: "stream_progress", Arguments: map[string]any{"count": 4, "interval_ms": 1}}
	params.SetProgressToken("p-1")
	res, err := cs.CallTool(ctx, params)
	if err != nil || res.IsError {
		t.Fatalf("stream_progress: %v %+v", err, res)
	}
	if text, ok := res.Content[0].(*mcp.TextContent); !ok || text.Text != "done" {
		t.Errorf("result %+v, want done", res.Content)
	}
	// The client hands notifications to the handler asynchronously, in
	// order: all four were read before the result, but may still be queued.
	for i := 1; i <= 4; i++ {
		select {
		case p := <-progress:
			if p.ProgressToken != "p-1" || p.Progress != float64(i) || p.Total != 4 {
				t.Errorf("notification %d = %+v", i, p)
			}
		case <-ctx.Done():
			t.Fatalf("received %d of 4 notifications", i-1)
		}
	}
}

// TestMCPServerStreamsBeforeResult proves, without timing, that each
// notification reaches the client while the call is still open: with hold
// the server answers nothing until the client cancels.
func TestMCPServerStreamsBeforeResult(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := startMCPServer(t, OpsConsole)
	progress := make(progressRecorder, 10)
	cs := connect(t, ctx, s, nil, progress.options())

	callCtx, cancelCall := context.WithCancel(ctx)
	params := &mcp.CallToolParams{Name: "stream_progress", Arguments: map[string]any{"count": 3, "interval_ms": 1, "hold": true}}
	params.SetProgressToken("p-2")
	ended := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(callCtx, params)
		ended <- err
	}()
	for i := 1; i <= 3; i++ {
		select {
		case p := <-progress:
			if p.Progress != float64(i) {
				t.Errorf("notification %d has progress %v", i, p.Progress)
			}
		case err := <-ended:
			t.Fatalf("call ended before notification %d: %v", i, err)
		case <-ctx.Done():
			t.Fatalf("received %d of 3 notifications", i-1)
		}
	}
	cancelCall()
	if err := <-ended; err == nil {
		t.Error("cancelled held call returned no error")
	}
}

func TestMCPServerStreamProgressBounds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := connect(t, ctx, startMCPServer(t, ""), nil, nil)
	for _, args := range []map[string]any{
		{"count": maxProgressCount + 1},
		{"count": -1},
		{"interval_ms": maxProgressInterval.Milliseconds() + 1},
	} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "stream_progress", Arguments: args})
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !res.IsError {
			t.Errorf("%v: accepted, want a tool error", args)
		}
	}
}

func TestMCPServerSessionEndEndsStreams(t *testing.T) {
	s := startMCPServer(t, "")
	a1, doneA1 := s.trackStream(context.Background(), "session-a")
	a2, doneA2 := s.trackStream(context.Background(), "session-a")
	b, doneB := s.trackStream(context.Background(), "session-b")

	del := httptest.NewRequest(http.MethodDelete, "/mcp", nil)
	del.Header.Set("Mcp-Session-Id", "session-a")
	s.record(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(httptest.NewRecorder(), del)
	// Each call's context ends once its session's does; a hang here is
	// the failure.
	<-a1.Done()
	<-a2.Done()
	if b.Err() != nil {
		t.Fatal("deleting one session ended another's call")
	}
	doneA1()
	doneA2()

	s.Close()
	<-b.Done()
	doneB()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.streams) != 0 {
		t.Errorf("%d sessions still tracked after their calls returned", len(s.streams))
	}
}
