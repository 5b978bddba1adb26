package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The three proxies under test, each its own Caddy process built from the
// same binary, so that they differ only by their configuration. Each site
// has a route per upstream: /<route name> (see routes).

// baselineCaddyfile is a plain reverse proxy that swaps in a static token:
// the least any proxy in front of an MCP server does. The token is "x", or
// with -token-baseline the very header the gateway sent upstream, so that
// the upstream requests are the same size.
const baselineCaddyfile = `{
	admin {{admin}}
	persist_config off
	storage file_system {{storage}}
}

http://{{addr}} {
{{routes}}}
`

const baselineRoute = `	handle /{{name}}* {
		reverse_proxy {{upstream}} {
			header_up Authorization "{{auth}}"
		}
	}
`

// forwardAuthCaddyfile asks an auth service about every request before
// proxying it (the usual way to add authorization to a Caddy site), and
// takes the downstream token from the service's answer.
const forwardAuthCaddyfile = `{
	admin {{admin}}
	persist_config off
	storage file_system {{storage}}
}

http://{{addr}} {
	forward_auth {{auth}} {
		uri /verify
		copy_headers X-Downstream-Authorization>Authorization
	}
{{routes}}}
`

const forwardAuthRoute = `	handle /{{name}}* {
		reverse_proxy {{upstream}}
	}
`

// gatewayCaddyfile is the gateway: one gateway, a server per route. Rate
// limits are off because the benchmark is one client address sending
// thousands of token requests a second.
const gatewayCaddyfile = `{
	admin {{admin}}
	persist_config off
	storage file_system {{storage}}
}

http://{{addr}} {
	mcp_gateway {
		public_url http://{{addr}}
		rate_limit off
		gateway acme {
			authorization_server {{issuer}}
			client_id {{client_id}}
			client_secret {{client_secret}}
			resource https://api.example.com
			scopes tickets.read tickets.write accounts.read admin.read
			encryption_key {{key}}
		}
{{routes}}	}
}
`

const gatewayRoute = `		server {{name}} /{{name}} {
			scopes tickets.read accounts.read
			reverse_proxy {{upstream}}
		}
`

// siteRoutes expands routeTmpl for each route, with {{auth}} from auth
// (by route name) if given.
func siteRoutes(routeTmpl string, routes []route, auth map[string]string) string {
	var b strings.Builder
	for _, r := range routes {
		b.WriteString(expand(routeTmpl, map[string]string{"name": r.name, "upstream": r.upstream, "auth": auth[r.name]}))
	}
	return b.String()
}

// expand replaces each {{name}} of tmpl.
func expand(tmpl string, vars map[string]string) string {
	pairs := make([]string, 0, 2*len(vars))
	for k, v := range vars {
		pairs = append(pairs, "{{"+k+"}}", v)
	}
	return strings.NewReplacer(pairs...).Replace(tmpl)
}

// caddyProcess is a Caddy started from the binary under test.
type caddyProcess struct {
	name     string
	addr     string // where it serves
	admin    string // its admin endpoint, for profiles and heap figures
	cmd      *exec.Cmd
	done     chan error
	log      string
	stopOnce sync.Once
}

// startCaddy writes caddyfile into dir and runs it. ready is a path that
// answers 2xx or 4xx once the config is loaded.
func startCaddy(ctx context.Context, bin, dir, name, addr, admin, caddyfile, ready string) (*caddyProcess, error) {
	cfg := filepath.Join(dir, name+".Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Caddy's default for GOMAXPROCS and GOGC, like a real deployment;
	// only HOME is pinned so that nothing lands in the user's Caddy data.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &caddyProcess{name: name, addr: addr, admin: admin, cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() {
		p.done <- cmd.Wait()
		logFile.Close()
	}()
	if err := p.waitReady(ctx, "http://"+addr+ready); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *caddyProcess) waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("%s exited while starting (%v); see %s", p.name, err, p.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer at %s within 30s; see %s", p.name, url, p.log)
		}
	}
}

// stop ends the process: gracefully, or killed after five seconds. Calls
// after the first do nothing.
func (p *caddyProcess) stop() {
	if p == nil {
		return
	}
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// profile writes a CPU profile of the next d to path, through the admin
// endpoint's pprof handlers.
func (p *caddyProcess) profile(ctx context.Context, d time.Duration, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.admin, max(1, int(d.Seconds()))), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profiling %s: status %d", p.name, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// clockTick is the unit of the CPU times in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpu returns the CPU time (user and system) the process has used.
func (p *caddyProcess) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields
	// counted from it on start after its closing parenthesis.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("unreadable /proc stat of %s", p.name)
	}
	// utime and stime are fields 14 and 15 of stat; rest starts at 3.
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unreadable CPU times in /proc stat of %s", p.name)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// selfCPU returns the CPU time this process has used: the upstream MCP
// servers, the auth service and the provider all run in it.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rss returns the resident set size of the process and its peak, in
// bytes, from /proc.
func (p *caddyProcess) rss() (current, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("reading %s of %s: %w", name, p.name, err)
		}
		if name == "VmRSS" {
			current = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if current == 0 {
		return 0, 0, errors.New("no VmRSS in /proc status")
	}
	return current, peak, sc.Err()
}
