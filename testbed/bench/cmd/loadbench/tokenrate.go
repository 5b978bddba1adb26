package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// rateResult is the throughput and latency of one kind of token request.
type rateResult struct {
	requests int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (r rateResult) rate() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// latencies collects request durations from several goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) result(elapsed time.Duration) rateResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.d)
	r := rateResult{requests: len(l.d), elapsed: elapsed}
	if len(l.d) > 0 {
		r.p50 = l.d[len(l.d)*50/100]
		r.p99 = l.d[min(len(l.d)-1, len(l.d)*99/100)]
	}
	return r
}

// firstError keeps the first of the errors of several goroutines.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// pendingCode is an authorization code waiting to be redeemed.
type pendingCode struct{ code, verifier string }

// collectCodes runs the browser flow n times, with a few browsers at once,
// and returns the codes. Each flow passes the consent page (remembered
// after a browser's first approval) and the provider's sign-in, so it is
// far slower than the exchange it feeds; codes are gathered first and
// redeemed together.
func collectCodes(ctx context.Context, c *testenv.OAuthClient, server string, n, browsers int) ([]pendingCode, error) {
	var (
		mu    sync.Mutex
		codes []pendingCode
		next  atomic.Int64
		wg    sync.WaitGroup
		errs  = make(chan error, browsers)
	)
	for range browsers {
		wg.Go(func() {
			own := c.WithNewBrowser()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				code, verifier, err := own.Code(server, nil)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				codes = append(codes, pendingCode{code, verifier})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return codes, ctx.Err()
}

// exchangeRate redeems the codes with workers concurrent clients and
// returns the rate with the refresh tokens obtained.
func exchangeRate(c *testenv.OAuthClient, server string, codes []pendingCode, workers int) (rateResult, []string, error) {
	var (
		lat      latencies
		mu       sync.Mutex
		refresh  []string
		next     atomic.Int64
		failures atomic.Int64
		firstErr firstError
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(codes)) {
					return
				}
				t0 := time.Now()
				tok, err := granted(c.Exchange(server, codes[i].code, codes[i].verifier))
				if err != nil {
					failures.Add(1)
					firstErr.set(err)
					continue
				}
				lat.add(time.Since(t0))
				mu.Lock()
				refresh = append(refresh, tok.RefreshToken)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r := lat.result(time.Since(start))
	if n := failures.Load(); n > 0 {
		return r, refresh, fmt.Errorf("%d of %d code exchanges failed, the first with: %v", n, len(codes), firstErr.get())
	}
	return r, refresh, nil
}

// refreshRate refreshes for d: each worker holds one refresh family and
// redeems its newest refresh token again and again, as a client does.
func refreshRate(c *testenv.OAuthClient, server string, families []string, d time.Duration) (rateResult, error) {
	var (
		lat      latencies
		failures atomic.Int64
		firstErr firstError
		wg       sync.WaitGroup
	)
	start := time.Now()
	stop := start.Add(d)
	for _, token := range families {
		wg.Go(func() {
			for time.Now().Before(stop) {
				t0 := time.Now()
				tok, err := granted(c.Refresh(server, token))
				if err != nil {
					failures.Add(1)
					firstErr.set(err)
					return
				}
				lat.add(time.Since(t0))
				token = tok.RefreshToken
			}
		})
	}
	wg.Wait()
	r := lat.result(time.Since(start))
	if n := failures.Load(); n > 0 {
		return r, fmt.Errorf("%d refresh families failed, the first with: %v", n, firstErr.get())
	}
	return r, nil
}
