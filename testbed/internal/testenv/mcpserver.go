package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Names of the two MCP servers of the shared-gateway example; each gets its
// own domain tool besides the common ones.
const (
	SupportAssistant = "support-assistant"
	OpsConsole       = "ops-console"
)

// Defaults of MCPServerConfig.
const (
	DefaultMCPServerName = "mcp-server"
	DefaultMCPServerAddr = "127.0.0.1:0"
)

// Bounds of stream_progress, so one call cannot hold a server for long.
const (
	maxProgressCount    = 100
	maxProgressInterval = 10 * time.Second
	maxProgressHold     = 5 * time.Minute
)

// MCPServerConfig configures StartMCPServer.
type MCPServerConfig struct {
	// Name is the server's implementation name, reported by whoami. The
	// names SupportAssistant and OpsConsole add the tools list_tickets and
	// restart_service. Default DefaultMCPServerName.
	Name string
	// Addr is the TCP address to listen on; default DefaultMCPServerAddr.
	Addr string
	// JSONResponse answers each call with one application/json response
	// instead of an SSE stream (text/event-stream), which is the SDK's
	// default.
	JSONResponse bool
	// Resumable keeps every SSE event in memory under an event ID, so
	// that a client whose stream broke resumes it with a GET carrying
	// Last-Event-ID and misses nothing.
	Resumable bool
}

// MCPServer is a running MCP server on the streamable HTTP transport. It
// does no authorization: a gateway in front of it does. Its methods are safe
// for concurrent use.
type MCPServer struct {
	name   string
	url    string
	server *http.Server
	// closed ends the stream_progress calls still running when Close is
	// called; the SDK would otherwise let them run on.
	closed context.Context
	close  context.CancelFunc

	mu                sync.Mutex
	lastAuthorization string
	lastPath          string
	requests          int
	resumedFrom       []string                   // Last-Event-ID of each GET that resumed a stream
	streams           map[string]*sessionStreams // by MCP session ID
}

// sessionStreams lets the end of an MCP session end the stream_progress
// calls it still has running. The SDK ends a session (on DELETE) only after
// its calls return, and a held call returns only when cancelled: the client's
// cancellation is best effort and may lose the race with its DELETE.
type sessionStreams struct {
	ctx    context.Context
	cancel context.CancelFunc
	calls  int
}

// WhoAmI is the structured result of the whoami tool.
type WhoAmI struct {
	Server        string `json:"server" jsonschema:"name of the MCP server that answered"`
	Authorization string `json:"authorization" jsonschema:"raw Authorization header of the HTTP request that carried the call"`
	// XHeaders maps each X- header that arrived, in canonical form, to its
	// values joined by ", ".
	XHeaders map[string]string `json:"x_headers" jsonschema:"headers starting with X- that arrived, with their values"`
	// SessionID is the Mcp-Session-Id header of the request, as this
	// server received it.
	SessionID string `json:"session_id,omitempty" jsonschema:"Mcp-Session-Id header of the HTTP request that carried the call"`
}

// StreamProgressArgs are the arguments of the stream_progress tool.
type StreamProgressArgs struct {
	Count      int `json:"count,omitempty" jsonschema:"number of progress notifications, default 3, at most 100"`
	IntervalMS int `json:"interval_ms,omitempty" jsonschema:"milliseconds between notifications, default 100, at most 10000"`
	// Hold keeps the call open after the last notification until the
	// client cancels it, its session ends or the server closes (or
	// maxProgressHold passes). A test that receives
	// every notification while the call is held has proved, without
	// timing, that nothing on the way buffered the stream.
	Hold bool `json:"hold,omitempty" jsonschema:"after the last notification, wait for the client to cancel instead of answering"`
}

// Ticket is one support ticket of the list_tickets tool.
type Ticket struct {
	ID      string `json:"id"`
	Subject string `json:"subject"`
	Status  string `json:"status"`
}

// TicketList is the structured result of the list_tickets tool.
type TicketList struct {
	Tickets []Ticket `json:"tickets"`
}

// RestartServiceArgs are the arguments of the restart_service tool.
type RestartServiceArgs struct {
	Service string `json:"service" jsonschema:"name of the service to restart"`
}

// StartMCPServer starts an MCP server on cfg.Addr and returns once it
// accepts connections. It serves MCP at every path, so a gateway reaches it
// whether or not it strips its own path prefix; URL names /mcp.
func StartMCPServer(cfg MCPServerConfig) (*MCPServer, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultMCPServerName
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultMCPServerAddr
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("testenv: MCP server %s listen: %w", cfg.Name, err)
	}
	s := &MCPServer{
		name:    cfg.Name,
		url:     "http://" + dialableAddr(ln.Addr()) + "/mcp",
		streams: make(map[string]*sessionStreams),
	}
	s.closed, s.close = context.WithCancel(context.Background())

	var serverOpts *mcp.ServerOptions
	if cfg.Name == OpsConsole {
		serverOpts = &mcp.ServerOptions{CompletionHandler: completeOps}
	}
	server := mcp.NewServer(&mcp.Implementation{Name: cfg.Name, Version: "1.0.0"}, serverOpts)
	mcp.AddTool(server, &mcp.Tool{
		Name:        "whoami",
		Description: "Reports this server's name and the Authorization, Mcp-Session-Id and X- headers of the request that carried the call.",
	}, s.whoami)
	mcp.AddTool(server, &mcp.Tool{
		Name:        "stream_progress",
		Description: "Sends count progress notifications, interval_ms apart, then answers done; with hold it waits to be cancelled instead.",
	}, s.streamProgress)
	switch cfg.Name {
	case SupportAssistant:
		mcp.AddTool(server, &mcp.Tool{
			Name:        "list_tickets",
			Description: "Lists the open support tickets.",
		}, listTickets)
	case OpsConsole:
		mcp.AddTool(server, &mcp.Tool{
			Name:        "restart_service",
			Description: "Restarts a service.",
		}, restartService)
		server.AddPrompt(&mcp.Prompt{
			Name:        "incident_report",
			Description: "Drafts an incident report for a service.",
			Arguments:   []*mcp.PromptArgument{{Name: "service", Required: true}},
		}, incidentReport)
		for _, t := range opsTemplates {
			server.AddResourceTemplate(&mcp.ResourceTemplate{Name: t.name, URITemplate: t.uriTemplate}, readOpsFile)
		}
	}

	opts := &mcp.StreamableHTTPOptions{
		// Behind a gateway the Host header names the gateway, not this
		// loopback listener; DNS-rebinding protection would refuse that.
		DisableLocalhostProtection: true,
		// A call ends when its HTTP request does: a client or gateway that
		// goes away does not leave a tool running.
		PropagateRequestCancellation: true,
		JSONResponse:                 cfg.JSONResponse,
	}
	if cfg.Resumable {
		opts.EventStore = mcp.NewMemoryEventStore(nil)
	}
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, opts)
	s.server = &http.Server{Handler: s.record(handler), ReadHeaderTimeout: 10 * time.Second}
	go s.server.Serve(ln)
	return s, nil
}

// record notes the Authorization header and the path of every request
// before the SDK sees it, counts the requests, and ends the streams of a session that is
// being deleted.
func (s *MCPServer) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.lastAuthorization = r.Header.Get("Authorization")
		s.lastPath = r.URL.EscapedPath()
		s.requests++
		if id := r.Header.Get("Last-Event-ID"); r.Method == http.MethodGet && id != "" {
			s.resumedFrom = append(s.resumedFrom, id)
		}
		if id := r.Header.Get("Mcp-Session-Id"); r.Method == http.MethodDelete && id != "" {
			if st := s.streams[id]; st != nil {
				st.cancel()
				delete(s.streams, id)
			}
		}
		s.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// trackStream returns a context for a stream_progress call of session that
// ends with the call's own context, the session, or the server, and a
// function to call when the call returns.
func (s *MCPServer) trackStream(ctx context.Context, session string) (context.Context, func()) {
	s.mu.Lock()
	st := s.streams[session]
	if st == nil {
		st = &sessionStreams{}
		st.ctx, st.cancel = context.WithCancel(s.closed)
		s.streams[session] = st
	}
	st.calls++
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(st.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		if st.calls--; st.calls == 0 && s.streams[session] == st {
			delete(s.streams, session)
			st.cancel()
		}
	}
}

// URL returns the MCP endpoint, http://<listen address>/mcp.
func (s *MCPServer) URL() string { return s.url }

// Name returns the server's implementation name.
func (s *MCPServer) Name() string { return s.name }

// LastAuthorization returns the Authorization header of the most recent
// HTTP request, "" if it had none or no request arrived yet.
func (s *MCPServer) LastAuthorization() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastAuthorization
}

// LastPath returns the path, as escaped on the wire, of the most recent
// HTTP request, "" if no request arrived yet.
func (s *MCPServer) LastPath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastPath
}

// Requests returns how many HTTP requests have reached the server, so a
// test can tell that a gateway refused one before passing it on.
func (s *MCPServer) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// ResumedFrom returns the Last-Event-ID of every GET that asked to resume
// a stream, in order of arrival.
func (s *MCPServer) ResumedFrom() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.resumedFrom)
}

// Close stops the server at once, ending open SSE streams and running
// calls, which would otherwise keep a graceful shutdown waiting.
func (s *MCPServer) Close() error {
	s.close()
	return s.server.Close()
}

func (s *MCPServer) whoami(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, WhoAmI, error) {
	out := WhoAmI{Server: s.name, XHeaders: map[string]string{}}
	if req.Extra != nil {
		out.Authorization = req.Extra.Header.Get("Authorization")
		out.SessionID = req.Extra.Header.Get("Mcp-Session-Id")
		for name, values := range req.Extra.Header {
			if strings.HasPrefix(strings.ToLower(name), "x-") {
				out.XHeaders[http.CanonicalHeaderKey(name)] = strings.Join(values, ", ")
			}
		}
	}
	return nil, out, nil
}

func (s *MCPServer) streamProgress(ctx context.Context, req *mcp.CallToolRequest, args StreamProgressArgs) (*mcp.CallToolResult, any, error) {
	count, interval := args.Count, time.Duration(args.IntervalMS)*time.Millisecond
	if count == 0 {
		count = 3
	}
	if args.IntervalMS == 0 {
		interval = 100 * time.Millisecond
	}
	if count < 0 || count > maxProgressCount || interval < 0 || interval > maxProgressInterval {
		return nil, nil, fmt.Errorf("count must be 1..%d and interval_ms 1..%d", maxProgressCount, maxProgressInterval.Milliseconds())
	}
	ctx, done := s.trackStream(ctx, req.Session.ID())
	defer done()
	token := req.Params.GetProgressToken()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 1; i <= count; i++ {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-timer.C:
		}
		if token != nil {
			err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
				ProgressToken: token,
				Progress:      float64(i),
				Total:         float64(count),
				Message:       fmt.Sprintf("step %d of %d", i, count),
			})
			if err != nil {
				return nil, nil, err
			}
		}
		timer.Reset(interval)
	}
	if args.Hold {
		timer.Reset(maxProgressHold)
	}
	// The last interval separates the last notification from the result.
	select {
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-timer.C:
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
}

func listTickets(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, TicketList, error) {
	return nil, TicketList{Tickets: []Ticket{
		{ID: "T-1001", Subject: "Cannot reset password", Status: "open"},
		{ID: "T-1002", Subject: "Invoice shows the wrong address", Status: "open"},
		{ID: "T-1003", Subject: "Export to CSV times out", Status: "pending"},
	}}, nil
}

// OpsServices are the services whose names the ops-console server
// completes (completion/complete) for incident_report's service argument and
// the name in its secret template.
var OpsServices = []string{"billing", "search", "sessions"}

// opsTemplates are the ops-console server's resource templates: one under
// a prefix that call scopes typically guard, one not.
var opsTemplates = []struct{ name, uriTemplate string }{
	{"secret", "file:///ops/secrets/{name}"},
	{"log", "file:///ops/logs/{day}.log"},
}

func incidentReport(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{
		Role:    "user",
		Content: &mcp.TextContent{Text: "Write an incident report for " + req.Params.Arguments["service"] + "."},
	}}}, nil
}

func readOpsFile(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: "contents of " + req.Params.URI}}}, nil
}

// completeOps completes service names for the incident_report prompt and
// the secret template, whatever the argument.
func completeOps(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	ref := req.Params.Ref
	if (ref.Type == "ref/prompt" && ref.Name == "incident_report") || (ref.Type == "ref/resource" && ref.URI == opsTemplates[0].uriTemplate) {
		var values []string
		for _, name := range OpsServices {
			if strings.HasPrefix(name, req.Params.Argument.Value) {
				values = append(values, name)
			}
		}
		return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: values, Total: len(values)}}, nil
	}
	return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{}}}, nil
}

func restartService(_ context.Context, _ *mcp.CallToolRequest, args RestartServiceArgs) (*mcp.CallToolResult, any, error) {
	if args.Service == "" || len(args.Service) > 64 {
		return nil, nil, fmt.Errorf("service must be a name of 1 to 64 characters")
	}
	return &mcp.CallToolResult{Content: []mcp.Content{
		&mcp.TextContent{Text: fmt.Sprintf("service %s restarted", args.Service)},
	}}, nil, nil
}
