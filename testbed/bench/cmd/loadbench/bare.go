package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// bareMCPServer is the cheapest upstream an MCP server can be: it speaks
// just enough of the streamable HTTP transport for the benchmark's session
// (initialize, notifications, tools/call) and answers every call with the
// result the SDK's server gave to the same call, byte for byte, in a JSON
// body or an SSE stream.
//
// It exists to show the proxies' differences undiluted. The SDK's server
// spends about 400 µs of CPU on a call, more than any proxy in front of
// it, which shrinks every ratio between proxies towards 1; the bare server
// spends a few tens of microseconds, like the bare upstream of the
// reference figures in docs/performance.md. Both are measured.
type bareMCPServer struct {
	result []byte // the tools/call result, a JSON object
	sse    bool
	server *http.Server
	url    string
}

// bareSessionID is the session every client of a bare server gets: the
// benchmark opens one session per route.
const bareSessionID = "bare-session"

// bareInitializeResult is the bare server's answer to initialize.
const bareInitializeResult = `{"protocolVersion":"` + protocolVersion + `","capabilities":{"tools":{}},"serverInfo":{"name":"bare","version":"1"}}`

// bareMessageLimit bounds a request body; the benchmark's are 1 KB.
const bareMessageLimit = 64 << 10

// startBareMCPServer serves on a free 127.0.0.1 port. result is what every
// tools/call answers.
func startBareMCPServer(result []byte, sse bool) (*bareMCPServer, error) {
	if !json.Valid(result) {
		return nil, errors.New("bare MCP server: the tools/call result is not JSON")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &bareMCPServer{result: result, sse: sse, url: "http://" + ln.Addr().String() + "/mcp"}
	s.server = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.server.Serve(ln)
	return s, nil
}

func (s *bareMCPServer) URL() string { return s.url }

func (s *bareMCPServer) Close() error { return s.server.Close() }

// ServeHTTP answers one POSTed JSON-RPC message.
func (s *bareMCPServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "only POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, bareMessageLimit))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		http.Error(w, "not a JSON-RPC message: "+err.Error(), http.StatusBadRequest)
		return
	}
	var result []byte
	switch {
	case msg.ID == nil:
		// A notification.
		w.WriteHeader(http.StatusAccepted)
		return
	case msg.Method == "initialize":
		w.Header().Set("Mcp-Session-Id", bareSessionID)
		result = []byte(bareInitializeResult)
	case msg.Method == "tools/call" && r.Header.Get("Mcp-Session-Id") == bareSessionID:
		result = s.result
	default:
		http.Error(w, fmt.Sprintf("bare MCP server: no %q outside a session", msg.Method), http.StatusBadRequest)
		return
	}
	// The answer is assembled in one buffer and written at once, as a
	// server that had it ready would.
	out := make([]byte, 0, len(result)+len(msg.ID)+64)
	if s.sse {
		w.Header().Set("Content-Type", "text/event-stream")
		out = append(out, "event: message\ndata: "...)
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = append(out, msg.ID...)
	out = append(out, `,"result":`...)
	out = append(out, result...)
	out = append(out, '}')
	if s.sse {
		out = append(out, "\n\n"...)
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(out)
}

// callResult makes the benchmark's call on url (an MCP server, directly)
// and returns the JSON-RPC result it answered, for a bare server to repeat.
func callResult(hc *http.Client, url string) ([]byte, error) {
	s, err := openSession(hc, url, "")
	if err != nil {
		return nil, err
	}
	_, body, err := post(hc, s.url, "", s.id, "tools/call", "list_tickets", fmt.Sprintf(callTemplate(), "result-1"))
	if err != nil {
		return nil, err
	}
	if data, ok := strings.CutPrefix(body, "event: message\n"); ok {
		// One SSE event: its data line is the message.
		for line := range strings.Lines(data) {
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				body = d
				break
			}
		}
	}
	var msg struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &msg); err != nil || msg.Result == nil {
		return nil, fmt.Errorf("the call on %s answered no result: %.300s", url, body)
	}
	return msg.Result, nil
}
