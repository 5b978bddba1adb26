package grants

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// machineEndpoint stands in for a machine client's client credentials
// grant at the downstream server: each call is a new token.
type machineEndpoint struct {
	calls atomic.Int64
}

func (e *machineEndpoint) obtain(context.Context) (*oauth2.Token, error) {
	n := e.calls.Add(1)
	return &oauth2.Token{AccessToken: fmt.Sprintf("machine-%d", n), TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}, nil
}

const machineKey = "robot\x00tag\x00tickets.read"

// TestMachineTokenOnceAcrossInstances: a machine client's token is
// obtained once however many goroutines ask, and once across instances: an
// instance that waited for the storage lock while another obtained it
// serves the other's, re-read under the lock.
func TestMachineTokenOnceAcrossInstances(t *testing.T) {
	ctx := context.Background()
	shared := store.NewMemoryStore()
	sealer := mustSealer(t, testKey(3))
	var endpoint machineEndpoint

	second := &Broker{Ledger: NewLedger(shared, testPrefix, sealer, nil)}
	var secondTok *oauth2.Token
	var secondErr error
	hooked := &hookStore{wrapped: shared, onLock: func() { secondTok, secondErr = second.MachineToken(ctx, machineKey, endpoint.obtain) }}
	first := &Broker{Ledger: NewLedger(hooked, testPrefix, sealer, nil)}

	const callers = 8
	toks := make([]*oauth2.Token, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { toks[i], errs[i] = first.MachineToken(ctx, machineKey, endpoint.obtain) })
	}
	wg.Wait()
	if secondErr != nil || secondTok.AccessToken != "machine-1" {
		t.Fatalf("second instance: MachineToken = %v, %v; want machine-1", secondTok, secondErr)
	}
	for i := range callers {
		if errs[i] != nil || toks[i].AccessToken != "machine-1" {
			t.Fatalf("first instance, caller %d: MachineToken = %v, %v; want machine-1, found under the lock", i, toks[i], errs[i])
		}
	}
	if n := endpoint.calls.Load(); n != 1 {
		t.Errorf("%d client credentials grants across two instances; want 1", n)
	}
	// A third instance reads it from storage.
	third := &Broker{Ledger: NewLedger(shared, testPrefix, sealer, nil)}
	if tok, err := third.MachineToken(ctx, machineKey, endpoint.obtain); err != nil || tok.AccessToken != "machine-1" {
		t.Fatalf("third instance: MachineToken = %v, %v; want machine-1 from storage", tok, err)
	}
	if n := endpoint.calls.Load(); n != 1 {
		t.Errorf("%d client credentials grants; want 1", n)
	}
}

// TestMachineTokenFailures: whatever goes wrong, a machine client's token
// is ErrDownstreamUnavailable (there is no grant to end) and nothing is
// stored; a refusal is named by its code and status only, as classify
// names every refusal.
func TestMachineTokenFailures(t *testing.T) {
	refusal := func(status int, code string) func(context.Context) (*oauth2.Token, error) {
		return func(context.Context) (*oauth2.Token, error) {
			return nil, fmt.Errorf("downstream: %w", &oauth2.RetrieveError{
				Response: &http.Response{StatusCode: status}, ErrorCode: code, ErrorDescription: "the server's own words",
			})
		}
	}
	for _, tc := range []struct {
		name   string
		obtain func(context.Context) (*oauth2.Token, error)
		hold   bool   // another instance holds the storage lock throughout
		want   string // in the error
	}{
		{name: "invalid_client", obtain: refusal(http.StatusUnauthorized, "invalid_client"), want: "refused the client credentials grant (HTTP 401, invalid_client)"},
		{name: "invalid_scope", obtain: refusal(http.StatusBadRequest, "invalid_scope"), want: "refused the client credentials grant (HTTP 400, invalid_scope)"},
		{name: "server error", obtain: refusal(http.StatusServiceUnavailable, "temporarily_unavailable"), want: "obtaining a machine client's downstream token"},
		{name: "network", obtain: func(context.Context) (*oauth2.Token, error) { return nil, errors.New("connection refused") }, want: "obtaining a machine client's downstream token: connection refused"},
		{name: "no access token", obtain: func(context.Context) (*oauth2.Token, error) { return &oauth2.Token{TokenType: "Bearer"}, nil }, want: "without an access token"},
		{name: "the lock held past the timeout", obtain: (&machineEndpoint{}).obtain, hold: true, want: "obtaining a machine client's downstream token did not finish within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := store.NewMemoryStore()
			l := NewLedger(s, testPrefix, mustSealer(t, testKey(3)), nil)
			b := &Broker{Ledger: l, Timeout: 50 * time.Millisecond}
			skey := l.key(kindMachine, machineKey)
			if tc.hold {
				if err := s.Lock(ctx, skey); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Unlock(ctx, skey) })
			}
			tok, err := b.MachineToken(ctx, machineKey, tc.obtain)
			if !errors.Is(err, ErrDownstreamUnavailable) {
				t.Fatalf("MachineToken = %v, %v; want ErrDownstreamUnavailable", tok, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q; want one saying %q", err, tc.want)
			}
			if strings.Contains(tc.want, "refused") && strings.Contains(err.Error(), "own words") {
				t.Errorf("err = %q quotes the server's description of its refusal", err)
			}
			if _, err := s.Load(ctx, skey); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a token was stored after the failure (err %v)", err)
			}
		})
	}
}
