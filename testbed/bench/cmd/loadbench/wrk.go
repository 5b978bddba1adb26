package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkScript drives one MCP session: every request is a tools/call with its
// own JSON-RPC id (the SDK refuses an id already in flight on a session),
// and done prints the figures in a form this program parses.
const wrkScript = `
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Protocol-Version"] = [==[{{version}}]==]
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "list_tickets"
wrk.headers["Mcp-Session-Id"] = [==[{{session}}]==]
wrk.headers["Authorization"] = [==[{{authorization}}]==]

local template = [==[{{template}}]==]
local counter = 0
local prefix = ""
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  prefix = tostring(tid) .. "-"
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format(template, prefix .. counter))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d mean_us=%d errors=%d\n",
    summary.requests, summary.duration, math.floor(latency:percentile(50)), math.floor(latency:percentile(99)), math.floor(latency.mean),
    e.connect + e.read + e.write + e.status + e.timeout))
end
`

// wrkResult is one wrk run.
type wrkResult struct {
	requests int64
	duration time.Duration
	p50, p99 time.Duration
	mean     time.Duration
	errors   int64

	// CPU time used during the run by wrk, by the proxy's process, and by
	// this process (the upstream MCP servers and the auth service).
	wrkCPU, proxyCPU, hostCPU time.Duration
}

// perRequest is a CPU time divided by the number of requests.
func (r wrkResult) perRequest(d time.Duration) time.Duration {
	return d / time.Duration(r.requests)
}

func (r wrkResult) rate() float64 { return float64(r.requests) / r.duration.Seconds() }

// wrkRunner runs wrk with the benchmark's load shape.
type wrkRunner struct {
	bin         string
	dir         string
	threads     int
	connections int
}

// run loads s for d and returns wrk's figures.
func (w *wrkRunner) run(ctx context.Context, s *session, d time.Duration) (wrkResult, error) {
	script := expand(wrkScript, map[string]string{
		"version":       protocolVersion,
		"session":       s.id,
		"authorization": s.authorization,
		"template":      callTemplate(),
	})
	f, err := os.CreateTemp(w.dir, "wrk-*.lua")
	if err != nil {
		return wrkResult{}, err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(script); err != nil {
		f.Close()
		return wrkResult{}, err
	}
	if err := f.Close(); err != nil {
		return wrkResult{}, err
	}
	args := []string{
		"-t" + strconv.Itoa(w.threads), "-c" + strconv.Itoa(w.connections),
		"-d" + strconv.Itoa(max(1, int(d.Round(time.Second).Seconds()))) + "s",
		"--timeout", "10s", "-s", filepath.Clean(f.Name()), s.url,
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w: %s", strings.Join(args, " "), err, out.String())
	}
	r, err := parseWRK(out.String())
	r.wrkCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, err
}

// parseWRK reads the RESULT line the script prints.
func parseWRK(out string) (wrkResult, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "RESULT ")
		if !ok {
			continue
		}
		v := map[string]int64{}
		for field := range strings.FieldsSeq(line) {
			name, num, _ := strings.Cut(field, "=")
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil {
				return wrkResult{}, fmt.Errorf("wrk result %q: %w", field, err)
			}
			v[name] = n
		}
		r := wrkResult{
			requests: v["requests"],
			duration: time.Duration(v["duration_us"]) * time.Microsecond,
			p50:      time.Duration(v["p50_us"]) * time.Microsecond,
			p99:      time.Duration(v["p99_us"]) * time.Microsecond,
			mean:     time.Duration(v["mean_us"]) * time.Microsecond,
			errors:   v["errors"],
		}
		if r.requests == 0 || r.duration == 0 {
			return wrkResult{}, fmt.Errorf("wrk made no requests:\n%s", out)
		}
		return r, nil
	}
	return wrkResult{}, fmt.Errorf("no RESULT line in wrk's output:\n%s", out)
}
