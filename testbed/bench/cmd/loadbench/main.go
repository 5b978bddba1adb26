// Command loadbench measures the gateway under load on this machine,
// against the two usual ways of putting a proxy in front of an MCP server:
// a plain Caddy reverse_proxy that swaps in a static token (the baseline)
// and Caddy's forward_auth asking an auth service about every request.
//
// In one run, all on 127.0.0.1, it starts an OpenID provider, two MCP
// servers of the test environment built with the official SDK (one
// answering calls with SSE streams, one with JSON bodies) and two bare MCP
// servers that answer the same calls with the same bytes at a fraction of
// the cost, the three proxies as separate Caddy processes of the same
// binary, and obtains the gateway's tokens through the real flow
// (registration, consent, sign-in, code exchange). It then loads each
// proxy in turn with wrk, over several rounds, and measures the token
// endpoint's code and refresh rates and the memory of a gateway with many
// grants in storage.
//
// testbed/bench/run.sh builds the binaries and runs it; docs/performance.md
// explains the figures.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// config is the command line.
type config struct {
	caddy, wrk  string
	workdir     string
	keep        bool
	quick       bool
	rounds      int
	duration    time.Duration
	warmup      time.Duration
	threads     int
	connections int
	codes       int
	refreshFor  time.Duration
	grants      int
	users       int
	profiles    string
	tokenBase   bool
	upstreams   []string
}

func parseFlags() (*config, error) {
	cfg := &config{}
	flag.StringVar(&cfg.caddy, "caddy", "", "the Caddy binary with the mcp_gateway module (go build ./cmd/caddy); required")
	flag.StringVar(&cfg.wrk, "wrk", "wrk", "the wrk binary")
	flag.StringVar(&cfg.workdir, "workdir", "", "directory for configs, storage and logs; default a new temporary one")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory (logs, configs) after the run")
	flag.BoolVar(&cfg.quick, "quick", false, "a short run: 1 round of 3s, 150 codes, 10 000 grants, 5 000 users")
	flag.IntVar(&cfg.rounds, "rounds", 4, "rounds over the proxies")
	flag.DurationVar(&cfg.duration, "duration", 4*time.Second, "length of each wrk run")
	flag.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "length of the wrk run that warms each proxy up, not counted")
	flag.IntVar(&cfg.threads, "threads", 2, "wrk threads")
	flag.IntVar(&cfg.connections, "connections", 32, "wrk connections, and concurrent clients of the token endpoint")
	flag.IntVar(&cfg.codes, "codes", 600, "authorization codes to redeem for the code rate")
	flag.DurationVar(&cfg.refreshFor, "refresh-for", 5*time.Second, "how long to refresh for the refresh rate")
	flag.IntVar(&cfg.grants, "grants", 100_000, "grants in the storage of the gateway whose memory is measured")
	flag.BoolVar(&cfg.tokenBase, "token-baseline", false, "also load a baseline that sends upstream the gateway's own downstream token header, to tell the cost of its size from the gateway's")
	flag.StringVar(&cfg.profiles, "profiles", "", "write CPU profiles of the proxies, taken in the last round, to this directory")
	upstreams := flag.String("upstreams", "sdk,bare", "the upstream MCP servers to load the proxies' routes of: sdk (the official Go SDK's server), bare (the cheapest MCP server), or both")
	flag.IntVar(&cfg.users, "users", 20_000, "users (of those grants) who each make one request before memory is measured again; twice the caches' bound shows they stay bounded")
	flag.Parse()
	for u := range strings.SplitSeq(*upstreams, ",") {
		switch u = strings.TrimSpace(u); {
		case u != "sdk" && u != "bare":
			return nil, fmt.Errorf("-upstreams: unknown upstream %q: want sdk, bare or sdk,bare", u)
		case !slices.Contains(cfg.upstreams, u):
			cfg.upstreams = append(cfg.upstreams, u)
		}
	}
	if cfg.quick {
		// Flags given explicitly still win.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"rounds":      func() { cfg.rounds = 1 },
			"duration":    func() { cfg.duration = 3 * time.Second },
			"warmup":      func() { cfg.warmup = time.Second },
			"codes":       func() { cfg.codes = 150 },
			"refresh-for": func() { cfg.refreshFor = 2 * time.Second },
			"grants":      func() { cfg.grants = 10_000 },
			"users":       func() { cfg.users = 5_000 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	switch {
	case cfg.tokenBase && !slices.Contains(cfg.upstreams, "sdk"):
		return nil, errors.New("-token-baseline needs the sdk upstreams (-upstreams sdk or sdk,bare): the SDK's servers record the header the gateway sends")
	case cfg.caddy == "":
		return nil, errors.New("-caddy is required: build it with go build -o caddy ./cmd/caddy")
	case cfg.rounds < 1 || cfg.duration < time.Second || cfg.connections < 2 || cfg.threads < 1 || cfg.codes < cfg.connections ||
		cfg.grants < 1 || cfg.users < 1 || cfg.users > cfg.grants:
		return nil, errors.New("need -rounds ≥ 1, -duration ≥ 1s, -connections ≥ 2, -threads ≥ 1, -codes ≥ -connections and 1 ≤ -users ≤ -grants")
	}
	return cfg, nil
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

// environment is what every part of the run shares: the real parts
// around the proxies.
type environment struct {
	http          *http.Client
	provider      *testenv.Provider
	routes        []route // every proxy's routes, one per upstream
	clientID      string  // the gateway's client at the provider
	clientSecret  string
	encryptionKey string
}

// route is a route of every proxy, /<name>, to one upstream MCP server.
type route struct {
	name     string // the path and the gateway's server name
	upstream string // host:port of the MCP server
	direct   string // its MCP endpoint, for loading it without a proxy
	sse      bool   // it answers calls with an SSE stream, not JSON
	bare     bool   // it is a bare MCP server, not the SDK's
}

// label describes r's upstream in the report.
func (r route) label() string {
	kind := map[bool]string{false: "JSON responses", true: "SSE responses"}[r.sse]
	if r.bare {
		return kind + ", bare MCP server"
	}
	return kind + ", the SDK's MCP server"
}

// target is one proxy under load, or the upstream itself.
type target struct {
	name     string
	proc     *caddyProcess       // nil for the upstream
	sessions map[string]*session // by route name
	results  map[string][]wrkResult
}

func run(ctx context.Context, cfg *config) (err error) {
	if cfg.workdir == "" {
		if cfg.workdir, err = os.MkdirTemp("", "mcp-gateway-bench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(cfg.workdir, 0o700); err != nil {
		return err
	}
	if cfg.profiles != "" {
		if err := os.MkdirAll(cfg.profiles, 0o700); err != nil {
			return err
		}
	}
	if cfg.keep {
		fmt.Printf("work directory (kept): %s\n", cfg.workdir)
	} else {
		defer os.RemoveAll(cfg.workdir)
	}
	printMachine(cfg)

	env := &environment{
		http:          newHTTPClient(),
		clientID:      testenv.DefaultClientID,
		clientSecret:  testenv.DefaultClientSecret,
		encryptionKey: rand.Text(),
	}
	sse, err := testenv.StartMCPServer(testenv.MCPServerConfig{Name: testenv.SupportAssistant})
	if err != nil {
		return err
	}
	defer sse.Close()
	jsonServer, err := testenv.StartMCPServer(testenv.MCPServerConfig{Name: testenv.SupportAssistant, JSONResponse: true})
	if err != nil {
		return err
	}
	defer jsonServer.Close()
	result, err := callResult(env.http, jsonServer.URL())
	if err != nil {
		return err
	}
	bareJSON, err := startBareMCPServer(result, false)
	if err != nil {
		return err
	}
	defer bareJSON.Close()
	bareSSE, err := startBareMCPServer(result, true)
	if err != nil {
		return err
	}
	defer bareSSE.Close()
	env.routes = []route{
		{name: "json", upstream: testenv.HostOf(jsonServer.URL()), direct: jsonServer.URL()},
		{name: "sse", upstream: testenv.HostOf(sse.URL()), direct: sse.URL(), sse: true},
		{name: "bare_json", upstream: testenv.HostOf(bareJSON.URL()), direct: bareJSON.URL(), bare: true},
		{name: "bare_sse", upstream: testenv.HostOf(bareSSE.URL()), direct: bareSSE.URL(), sse: true, bare: true},
	}
	// The routes loaded; every proxy has them all.
	var loaded []route
	for _, r := range env.routes {
		if slices.Contains(cfg.upstreams, map[bool]string{false: "sdk", true: "bare"}[r.bare]) {
			loaded = append(loaded, r)
		}
	}

	gwAddr, baseAddr, faAddr, authAddr := mustFreeAddr(), mustFreeAddr(), mustFreeAddr(), mustFreeAddr()
	public := "http://" + gwAddr
	env.provider, err = testenv.StartProvider(testenv.ProviderConfig{RedirectURIs: []string{public + "/oauth/callback"}})
	if err != nil {
		return err
	}
	defer env.provider.Close()

	fmt.Println("starting the gateway, the baseline and forward_auth (separate Caddy processes)")
	gwStorage := cfg.workdir + "/gateway-storage"
	gwAdmin := mustFreeAddr()
	gateway, err := startCaddy(ctx, cfg.caddy, cfg.workdir, "gateway", gwAddr, gwAdmin, expand(gatewayCaddyfile, map[string]string{
		"admin": gwAdmin, "storage": gwStorage, "addr": gwAddr, "issuer": env.provider.Issuer(),
		"client_id": env.clientID, "client_secret": env.clientSecret, "key": env.encryptionKey,
		"routes": siteRoutes(gatewayRoute, env.routes, nil),
	}), "/.well-known/oauth-protected-resource/json")
	if err != nil {
		return err
	}
	defer gateway.stop()

	// The gateway's tokens, through the real flow.
	client, err := register(env.http, public, "json")
	if err != nil {
		return err
	}
	tokenFor := map[string]string{}
	var resources []string
	for _, r := range loaded {
		tok, err := client.Login(r.name, nil)
		if err != nil {
			return fmt.Errorf("authorizing for %s: %w", r.name, err)
		}
		tokenFor[r.name] = "Bearer " + tok.AccessToken
		resources = append(resources, public+"/"+r.name)
	}

	dir, err := storageDirOf(env.http, gwAdmin, "acme")
	if err != nil {
		return err
	}
	st, err := loadGatewayState(ctx, &certmagic.FileStorage{Path: gwStorage}, dir, env.encryptionKey)
	if err != nil {
		return fmt.Errorf("reading the gateway's storage for the auth service: %w", err)
	}
	auth, err := startAuthService(st, authAddr, downstream.New(downstream.Config{
		Issuer: env.provider.Issuer(), ClientID: env.clientID, ClientAuth: downstream.ClientAuth{Secret: env.clientSecret},
	}), resources)
	if err != nil {
		return err
	}
	defer auth.close()

	baseAdmin := mustFreeAddr()
	staticToken := map[string]string{}
	for _, r := range env.routes {
		staticToken[r.name] = "Bearer x"
	}
	baseline, err := startCaddy(ctx, cfg.caddy, cfg.workdir, "baseline", baseAddr, baseAdmin, expand(baselineCaddyfile, map[string]string{
		"admin": baseAdmin, "storage": cfg.workdir + "/baseline-storage", "addr": baseAddr,
		"routes": siteRoutes(baselineRoute, env.routes, staticToken),
	}), "/")
	if err != nil {
		return err
	}
	defer baseline.stop()
	faAdmin := mustFreeAddr()
	forwardAuth, err := startCaddy(ctx, cfg.caddy, cfg.workdir, "forward_auth", faAddr, faAdmin, expand(forwardAuthCaddyfile, map[string]string{
		"admin": faAdmin, "storage": cfg.workdir + "/forward-auth-storage", "addr": faAddr, "auth": authAddr,
		"routes": siteRoutes(forwardAuthRoute, env.routes, nil),
	}), "/")
	if err != nil {
		return err
	}
	defer forwardAuth.stop()

	// Every proxy gets the same request: the gateway's token for the
	// route, which the baseline overwrites and the others exchange. The
	// upstream alone ("direct") shows the ceiling the proxies share.
	targets := []*target{
		{name: "direct"},
		{name: "baseline", proc: baseline},
		{name: "forward_auth", proc: forwardAuth},
		{name: "gateway", proc: gateway},
	}
	urlOf := func(t *target, r route) string {
		if t.proc == nil {
			return r.direct
		}
		return "http://" + t.proc.addr + "/" + r.name
	}
	open := func(t *target) error {
		t.sessions, t.results = map[string]*session{}, map[string][]wrkResult{}
		for _, r := range loaded {
			s, err := openSession(env.http, urlOf(t, r), tokenFor[r.name])
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			ct, err := s.call(env.http, "check-2")
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if want := map[bool]string{false: "application/json", true: "text/event-stream"}[r.sse]; !strings.HasPrefix(ct, want) {
				return fmt.Errorf("%s /%s answered %s, want %s", t.name, r.name, ct, want)
			}
			t.sessions[r.name] = s
		}
		return nil
	}
	for _, t := range targets {
		if err := open(t); err != nil {
			return err
		}
	}
	if cfg.tokenBase {
		// The gateway was the last to call each SDK server: what they saw
		// last is the header it sends. The gateway sends a bare server a
		// token of the same size (the same scopes, another server).
		addr, admin := mustFreeAddr(), mustFreeAddr()
		sent := map[string]string{
			"json": jsonServer.LastAuthorization(), "bare_json": jsonServer.LastAuthorization(),
			"sse": sse.LastAuthorization(), "bare_sse": sse.LastAuthorization(),
		}
		p, err := startCaddy(ctx, cfg.caddy, cfg.workdir, "baseline_token", addr, admin, expand(baselineCaddyfile, map[string]string{
			"admin": admin, "storage": cfg.workdir + "/baseline-token-storage", "addr": addr,
			"routes": siteRoutes(baselineRoute, env.routes, sent),
		}), "/")
		if err != nil {
			return err
		}
		defer p.stop()
		t := &target{name: "baseline_token", proc: p}
		if err := open(t); err != nil {
			return err
		}
		targets = append(targets, t)
		fmt.Printf("baseline_token sends upstream the gateway's header: %d bytes (json), %d (sse)\n",
			len(jsonServer.LastAuthorization()), len(sse.LastAuthorization()))
	}

	w := &wrkRunner{bin: cfg.wrk, dir: cfg.workdir, threads: cfg.threads, connections: cfg.connections}
	fmt.Printf("\nloading each proxy in turn: wrk -t%d -c%d, %d round(s) of %s per proxy and route (+%s warm-up)\n",
		cfg.threads, cfg.connections, cfg.rounds, cfg.duration, cfg.warmup)
	for _, r := range loaded {
		fmt.Printf("%s (/%s)\n", r.label(), r.name)
		for _, t := range targets {
			if _, err := w.run(ctx, t.sessions[r.name], cfg.warmup); err != nil {
				return err
			}
		}
		for round := range cfg.rounds {
			// Each round starts with another proxy, so that none always
			// runs right after the same neighbour.
			for i := range targets {
				t := targets[(i+round)%len(targets)]
				profile := ""
				if cfg.profiles != "" && round == cfg.rounds-1 && t.proc != nil {
					profile = filepath.Join(cfg.profiles, t.name+"-"+r.name+".pprof")
				}
				res, err := measure(ctx, w, t, r.name, cfg.duration, profile)
				if err != nil {
					return err
				}
				t.results[r.name] = append(t.results[r.name], res)
				fmt.Printf("  round %d %-14s %8.0f req/s  p50 %-8s p99 %-8s errors %d\n",
					round+1, t.name, res.rate(), fmtDur(res.p50), fmtDur(res.p99), res.errors)
			}
		}
	}

	fmt.Printf("\nthe token endpoint: %d codes through the browser flow, redeemed by %d clients at once\n", cfg.codes, cfg.connections)
	codes, err := collectCodes(ctx, client, "json", cfg.codes, 4)
	if err != nil {
		return fmt.Errorf("collecting codes: %w", err)
	}
	codeRate, families, err := exchangeRate(client, "json", codes, cfg.connections)
	if err != nil {
		return err
	}
	refreshResult, err := refreshRate(client, "json", families[:cfg.connections], cfg.refreshFor)
	if err != nil {
		return err
	}

	// The memory run gets the machine to itself.
	auth.close()
	for _, t := range targets {
		t.proc.stop()
	}
	fmt.Printf("\nmemory: a fresh gateway over a storage with %d grants\n", cfg.grants)
	mem, err := measureMemory(ctx, cfg, env, cfg.grants, cfg.users)
	if err != nil {
		return err
	}

	report(cfg, loaded, targets, codeRate, refreshResult, mem)
	return nil
}

// measure runs wrk against t and records the CPU time each process used
// and, if profile names a file, a CPU profile of the proxy.
func measure(ctx context.Context, w *wrkRunner, t *target, route string, d time.Duration, profile string) (wrkResult, error) {
	profiled := make(chan error, 1)
	if profile != "" {
		go func() {
			// Inside the run: started after wrk's first second, ended
			// before its last.
			time.Sleep(time.Second)
			profiled <- t.proc.profile(ctx, d-2*time.Second, profile)
		}()
	} else {
		profiled <- nil
	}
	var proxy0 time.Duration
	if t.proc != nil {
		var err error
		if proxy0, err = t.proc.cpu(); err != nil {
			return wrkResult{}, err
		}
	}
	host0 := selfCPU()
	r, err := w.run(ctx, t.sessions[route], d)
	if err != nil {
		return r, err
	}
	r.hostCPU = selfCPU() - host0
	if t.proc != nil {
		proxy1, err := t.proc.cpu()
		if err != nil {
			return r, err
		}
		r.proxyCPU = proxy1 - proxy0
	}
	return r, <-profiled
}

// report prints the summary and checks the goals.
func report(cfg *config, routes []route, targets []*target, codes, refreshes rateResult, mem *memoryRun) {
	fmt.Printf("\n=== results (median of %d round(s); min–max in brackets) ===\n", cfg.rounds)
	byName := map[string]*target{}
	for _, t := range targets {
		byName[t.name] = t
	}
	for _, r := range routes {
		fmt.Printf("\n%s: tools/call, %d-byte request, wrk -t%d -c%d\n", r.label(), callBodySize, cfg.threads, cfg.connections)
		fmt.Printf("  %-15s %-22s %-10s %-10s %-7s %s\n", "proxy", "req/s", "p50", "p99", "errors", "CPU per request: proxy / upstream+auth / wrk")
		med := map[string]summary{}
		for _, t := range targets {
			s := summarize(t.results[r.name])
			med[t.name] = s
			fmt.Printf("  %-15s %-22s %-10s %-10s %-7d %s / %s / %s\n", t.name,
				fmt.Sprintf("%.0f [%.0f–%.0f]", s.rate, s.minRate, s.maxRate), fmtDur(s.p50), fmtDur(s.p99), s.errors,
				fmtDur(s.proxyCPU), fmtDur(s.hostCPU), fmtDur(s.wrkCPU))
		}
		gw, base, fa := med["gateway"], med["baseline"], med["forward_auth"]
		fmt.Printf("  gateway/baseline:     throughput %.3f (goal ≥ 0.95: %s), p99 %.3f (goal ≤ 1.10: %s)\n",
			gw.rate/base.rate, verdict(gw.rate/base.rate >= 0.95),
			gw.p99.Seconds()/base.p99.Seconds(), verdict(gw.p99.Seconds()/base.p99.Seconds() <= 1.10))
		fmt.Printf("  gateway/forward_auth: throughput %.3f (goal ≥ 1.6: %s), p99 %.3f\n",
			gw.rate/fa.rate, verdict(gw.rate/fa.rate >= 1.6), gw.p99.Seconds()/fa.p99.Seconds())
		// Every process of a run shares the machine's cores, so a run's
		// throughput is about the inverse of the CPU time its requests
		// take in all of them; unlike req/s, that varies little with other
		// load on the machine.
		fmt.Printf("  from CPU per request (all processes): gateway/baseline %.3f, gateway/forward_auth %.3f\n",
			base.totalCPU().Seconds()/gw.totalCPU().Seconds(), fa.totalCPU().Seconds()/gw.totalCPU().Seconds())
	}

	fmt.Printf("\ntoken endpoint (file_system storage, %d concurrent clients)\n", cfg.connections)
	fmt.Printf("  authorization_code: %5d exchanges in %-8s %7.0f/s  p50 %-8s p99 %s\n",
		codes.requests, codes.elapsed.Round(time.Millisecond), codes.rate(), fmtDur(codes.p50), fmtDur(codes.p99))
	fmt.Printf("  refresh_token:      %5d refreshes in %-8s %7.0f/s  p50 %-8s p99 %s\n",
		refreshes.requests, refreshes.elapsed.Round(time.Millisecond), refreshes.rate(), fmtDur(refreshes.p50), fmtDur(refreshes.p99))

	fmt.Printf("\ngateway memory, %d grants in storage (seeded in %s)\n", mem.grants, mem.seeding.Round(time.Millisecond))
	for _, m := range mem.samples {
		fmt.Printf("  %-22s RSS %6.1f MiB (peak %6.1f MiB), Go heap in use after GC %6.1f MiB\n",
			m.label, mib(m.rss), mib(m.peak), mib(m.heapInuse))
	}
	fmt.Printf("  first requests of %d users (each an initialize: a cold token and a storage read): %.0f/s, p50 %s, p99 %s\n",
		mem.serve.requests, mem.serve.rate(), fmtDur(mem.serve.p50), fmtDur(mem.serve.p99))
}

// summary is the median of a proxy's rounds.
type summary struct {
	rate, minRate, maxRate    float64
	p50, p99                  time.Duration
	errors                    int64
	proxyCPU, hostCPU, wrkCPU time.Duration // per request, over all rounds
}

// totalCPU is the CPU time of a request in every process of the run.
func (s summary) totalCPU() time.Duration { return s.proxyCPU + s.hostCPU + s.wrkCPU }

func summarize(rs []wrkResult) summary {
	var (
		s                      summary
		requests               int64
		proxyCPU, hostCPU, wrk time.Duration
	)
	rates := make([]float64, len(rs))
	p50s := make([]time.Duration, len(rs))
	p99s := make([]time.Duration, len(rs))
	for i, r := range rs {
		rates[i], p50s[i], p99s[i] = r.rate(), r.p50, r.p99
		s.errors += r.errors
		requests += r.requests
		proxyCPU, hostCPU, wrk = proxyCPU+r.proxyCPU, hostCPU+r.hostCPU, wrk+r.wrkCPU
	}
	slices.Sort(rates)
	slices.Sort(p50s)
	slices.Sort(p99s)
	s.rate, s.minRate, s.maxRate = median(rates), rates[0], rates[len(rates)-1]
	s.p50, s.p99 = median(p50s), median(p99s)
	n := time.Duration(max(1, requests))
	s.proxyCPU, s.hostCPU, s.wrkCPU = proxyCPU/n, hostCPU/n, wrk/n
	return s
}

// median of sorted values; the mean of the middle two for an even count.
func median[T float64 | time.Duration](sorted []T) T {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// printMachine describes where the figures come from.
func printMachine(cfg *config) {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if name, value, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
				model = strings.TrimSpace(value)
				break
			}
		}
		f.Close()
	}
	load, _ := os.ReadFile("/proc/loadavg")
	wrkVersion, _ := exec.Command(cfg.wrk, "-v").CombinedOutput()
	fmt.Printf("machine: %d CPUs (%s), %s, load average %s\n", runtime.NumCPU(), model, runtime.Version(), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	fmt.Printf("wrk: %s\n", strings.TrimSpace(strings.SplitN(string(wrkVersion), "\n", 2)[0]))
}

// mustFreeAddr returns a free 127.0.0.1 address.
func mustFreeAddr() string {
	addr, err := testenv.FreeAddr()
	if err != nil {
		panic(err)
	}
	return addr
}
