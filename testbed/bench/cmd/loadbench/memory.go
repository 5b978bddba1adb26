package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
)

// seedStore writes records in certmagic.FileStorage's layout, which the
// gateway then reads with Caddy's file_system storage, but without the
// fsync FileStorage does for every file: seeding 100 000 grants through it
// takes minutes of disk flushes that say nothing about the gateway.
type seedStore struct {
	*certmagic.FileStorage
}

func (s seedStore) Store(_ context.Context, key string, value []byte) error {
	name := s.Filename(key)
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return err
	}
	return os.WriteFile(name, value, 0o600)
}

// seedUser is the name of the i-th seeded user.
func seedUser(i int) string { return fmt.Sprintf("seed-user-%06d", i) }

// seedGrants stores n users' downstream grants, as n sign-ins would have,
// with tokens the size a provider's JWT access token and opaque refresh
// token have. Each also holds the token narrowed to the scopes the json
// server's clients are granted, which the gateway (per_server_tokens refresh, the default) would
// otherwise obtain by a refresh at the provider on the user's first
// request. They expire in a day, so no request refreshes them.
func seedGrants(ctx context.Context, ledger *grants.Ledger, n, workers int) error {
	now := time.Now()
	exp := now.Add(24 * time.Hour)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs firstError
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				user := seedUser(i)
				err := ledger.SaveGrant(ctx, &grants.Grant{
					User: user,
					Token: &oauth2.Token{
						AccessToken:  user + "." + strings.Repeat("a", 800),
						TokenType:    "Bearer",
						RefreshToken: user + "." + strings.Repeat("r", 43),
						Expiry:       exp,
					},
					Scopes: "openid offline_access tickets.read tickets.write accounts.read admin.read",
					// The json server's clients are granted all it offers:
					// its token's scope is those and the login scopes,
					// sorted, as the gateway asks for it.
					Narrowed: []*grants.NarrowedToken{{
						Server:   "json",
						Token:    &oauth2.Token{AccessToken: user + ".json." + strings.Repeat("n", 800), TokenType: "Bearer", Expiry: exp},
						Scopes:   "accounts.read offline_access openid tickets.read",
						IssuedAt: now,
					}},
				})
				if err != nil {
					errs.set(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errs.get(); err != nil {
		return err
	}
	return ctx.Err()
}

// memorySample is the gateway process's memory at one point.
type memorySample struct {
	label     string
	rss, peak int64 // bytes
	heapInuse int64 // bytes in use by the Go heap after a GC
}

// sampleMemory reads the process's RSS and, through Caddy's admin API,
// the Go heap in use after a forced GC.
func sampleMemory(hc *http.Client, p *caddyProcess, label string) (memorySample, error) {
	m := memorySample{label: label}
	// The heap profile's debug form ends with the runtime's MemStats;
	// gc=1 collects first, so garbage does not count.
	resp, err := hc.Get("http://" + p.admin + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return m, fmt.Errorf("heap profile: status %d: %.200s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapInuse = "); ok {
			m.heapInuse, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	m.rss, m.peak, err = p.rss()
	return m, err
}

// memoryRun is the memory part of the benchmark: a fresh gateway over a
// storage holding many users' grants, sampled after one user's request and
// after many users have made one each.
type memoryRun struct {
	grants  int
	seeding time.Duration
	samples []memorySample
	serve   rateResult // the first requests of the users, all cold
}

// measureMemory seeds n grants into a fresh storage, starts a gateway on
// it and samples its memory while users of them each make one request
// with an access token of their own.
func measureMemory(ctx context.Context, cfg *config, env *environment, n, users int) (*memoryRun, error) {
	run := &memoryRun{grants: n}
	dir := filepath.Join(cfg.workdir, "memory-storage")
	store := seedStore{&certmagic.FileStorage{Path: dir}}
	st, err := loadGatewayState(ctx, store, legacyGatewayDir, env.encryptionKey)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := seedGrants(ctx, st.ledger, n, 4); err != nil {
		return nil, fmt.Errorf("seeding grants: %w", err)
	}
	run.seeding = time.Since(start)
	fmt.Printf("  seeded %d grants in %s\n", n, run.seeding.Round(time.Millisecond))

	addr, admin := mustFreeAddr(), mustFreeAddr()
	p, err := startCaddy(ctx, cfg.caddy, cfg.workdir, "gateway-memory", addr, admin, expand(gatewayCaddyfile, map[string]string{
		"admin": admin, "storage": dir, "addr": addr, "issuer": env.provider.Issuer(),
		"client_id": env.clientID, "client_secret": env.clientSecret, "key": env.encryptionKey,
		"routes": siteRoutes(gatewayRoute, env.routes, nil),
	}), "/.well-known/oauth-protected-resource/json")
	if err != nil {
		return nil, err
	}
	defer p.stop()

	public := "http://" + addr
	issue := func(i int) (string, error) {
		now := time.Now()
		return st.keys.Issue(accesstoken.Claims{
			Issuer:    public + "/oauth/json",
			Subject:   seedUser(i),
			Audience:  public + "/json",
			Scope:     "accounts.read tickets.read",
			ClientID:  "loadbench",
			IssuedAt:  now,
			NotBefore: now,
			ExpiresAt: now.Add(time.Hour),
		})
	}
	first, err := issue(0)
	if err != nil {
		return nil, err
	}
	s, err := openSession(env.http, public+"/json", "Bearer "+first)
	if err != nil {
		return nil, err
	}
	sample := func(label string) error {
		m, err := sampleMemory(env.http, p, label)
		if err != nil {
			return fmt.Errorf("sampling memory: %w", err)
		}
		run.samples = append(run.samples, m)
		return nil
	}
	if err := sample("1 user served"); err != nil {
		return nil, err
	}

	// Each user's first request: a cold token and a grant read from
	// storage, which fills both caches up to their bounds.
	var lat latencies
	serveStart := time.Now()
	serve := func(from, to int) error {
		var (
			next atomic.Int64
			wg   sync.WaitGroup
			errs firstError
		)
		next.Store(int64(from))
		for range cfg.connections / 2 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= to || ctx.Err() != nil {
						return
					}
					tok, err := issue(i)
					if err != nil {
						errs.set(err)
						return
					}
					t0 := time.Now()
					// A session belongs to the user who opened it: each
					// user's first request opens one of its own.
					resp, body, err := post(env.http, s.url, "Bearer "+tok, "", "initialize", "",
						`{"jsonrpc":"2.0","id":"u`+strconv.Itoa(i)+`","method":"initialize","params":{"protocolVersion":"`+protocolVersion+`","capabilities":{},"clientInfo":{"name":"loadbench","version":"1"}}}`)
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("initialize as %s: status %d: %.200s", seedUser(i), resp.StatusCode, body)
					}
					if err != nil {
						errs.set(err)
						return
					}
					lat.add(time.Since(t0))
				}
			})
		}
		wg.Wait()
		if err := errs.get(); err != nil {
			return err
		}
		return ctx.Err()
	}
	checkpoints := []int{min(users, 10_000), users}
	from := 1
	for _, to := range checkpoints {
		if to <= from {
			continue
		}
		if err := serve(from, to); err != nil {
			return nil, err
		}
		from = to
		if err := sample(fmt.Sprintf("%d users served", to)); err != nil {
			return nil, err
		}
	}
	run.serve = lat.result(time.Since(serveStart))
	return run, nil
}
