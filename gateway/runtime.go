// Package gateway is the runtime of one gateway (one auth boundary): what
// outlives a config of the Caddy module. A Runtime is made from plain
// Settings and loads its durable state lazily, on first use: it finds its
// storage directory (claiming its boundary there), reads or creates its
// sealing and signing keys, and then builds, once and whole, the
// authserver.Gateway the edge serves, with its ledger, broker, keyset and
// verifier. It runs the background work of an instance (sweeping expired
// records, following other instances' revocations and key rotations)
// until it is closed.
package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// Runtime is one gateway's live state: its downstream client, its caches
// and, once loaded, its durable state's handles. It is safe for concurrent
// use.
type Runtime struct {
	settings   Settings
	boundary   Boundary
	scopes     scopes.Set // the gateway's full set
	logger     *zap.Logger
	httpClient *http.Client
	downstream *downstream.Client
	documents  *authserver.MetadataDocumentFetcher

	// ctx ends with Close; the background work runs under it.
	ctx   context.Context
	close context.CancelFunc

	// loadMu serializes loading, which loaded publishes: once it is set, a
	// request costs one atomic load.
	loadMu sync.Mutex
	loaded atomic.Pointer[state]

	// servers are the servers the latest config attached (Attach).
	servers atomic.Pointer[[]*authserver.Server]
	// grantCount is the number of users with a stored grant, at the last
	// count.
	grantCount atomic.Int64
}

// state is what loading makes.
type state struct {
	prefix   string // the storage directory
	gateway  *authserver.Gateway
	sessions *SessionIDs
}

// New returns the runtime of the gateway of s. It does no I/O.
func New(s Settings) *Runtime {
	if s.Logger == nil {
		s.Logger = zap.NewNop()
	}
	httpClient := &http.Client{Timeout: 10 * time.Second}
	dc := s.Downstream
	dc.RedirectURL, dc.HTTPClient = s.PublicURL+authserver.CallbackPath, httpClient
	ctx, cancel := context.WithCancel(context.Background())
	return &Runtime{
		settings: s,
		boundary: Boundary{
			PublicURL:           s.PublicURL,
			AuthorizationServer: s.Downstream.Issuer,
			ClientID:            s.Downstream.ClientID,
			Resource:            s.Downstream.Resource,
		},
		scopes:     scopes.MustParse(strings.Join(s.Downstream.Scopes, " ")),
		logger:     s.Logger,
		httpClient: httpClient,
		downstream: downstream.New(dc),
		documents:  authserver.NewMetadataDocumentFetcher(authserver.MetadataDocumentOptions{AllowPrivate: s.AllowPrivateMetadataDocuments}),
		ctx:        ctx,
		close:      cancel,
	}
}

// Name is the gateway's name.
func (r *Runtime) Name() string { return r.settings.Name }

// Boundary is the auth boundary the gateway's state belongs to.
func (r *Runtime) Boundary() Boundary { return r.boundary }

// Scopes is the gateway's full scope set.
func (r *Runtime) Scopes() scopes.Set { return r.scopes }

// Load loads the gateway's durable state on first use and returns the
// gateway as the edge serves it. A failed load (storage unreachable) is
// tried again by the next call.
func (r *Runtime) Load(ctx context.Context) (*authserver.Gateway, error) {
	if st := r.loaded.Load(); st != nil {
		return st.gateway, nil
	}
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	if st := r.loaded.Load(); st != nil {
		return st.gateway, nil
	}
	if r.ctx.Err() != nil {
		return nil, fmt.Errorf("gateway %q: closed", r.settings.Name)
	}
	st, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	// The first poll runs now, before any request: an instance that starts
	// after a revocation refuses the family's access tokens from the start.
	seen := map[string]bool{}
	r.applyRevocations(ctx, st.gateway, seen)
	r.loaded.Store(st)
	go r.sweep(st.gateway.Ledger)
	// Counting lists every grant: not on the first request's time.
	go r.countGrants(r.ctx, st.gateway.Ledger)
	go r.poll(st.gateway, seen)
	return st.gateway, nil
}

// Gateway returns the gateway as the edge serves it, or nil before Load
// succeeded. It is what each authserver.Server of the gateway asks.
func (r *Runtime) Gateway() *authserver.Gateway {
	if st := r.loaded.Load(); st != nil {
		return st.gateway
	}
	return nil
}

// Sessions binds the session IDs of the gateway's servers; nil before
// Load succeeded.
func (r *Runtime) Sessions() *SessionIDs {
	if st := r.loaded.Load(); st != nil {
		return st.sessions
	}
	return nil
}

// StoragePrefix is the gateway's storage directory; "" before Load
// succeeded.
func (r *Runtime) StoragePrefix() string {
	if st := r.loaded.Load(); st != nil {
		return st.prefix
	}
	return ""
}

// Attach records the servers the latest config attached to the gateway,
// for the admin API.
func (r *Runtime) Attach(servers []*authserver.Server) { r.servers.Store(&servers) }

// Servers are the servers of the latest config, or nil when none attached
// yet.
func (r *Runtime) Servers() []*authserver.Server {
	if s := r.servers.Load(); s != nil {
		return *s
	}
	return nil
}

// GrantCount is the number of users with a stored grant at the last
// count (at load, then after every sweep).
func (r *Runtime) GrantCount() int64 { return r.grantCount.Load() }

// Close stops the background work and closes idle connections. Requests
// still in flight keep working.
func (r *Runtime) Close() error {
	r.close()
	r.httpClient.CloseIdleConnections()
	return nil
}

// load finds the gateway's storage directory and reads (or creates, once
// across every instance sharing the storage) the sealing key and the
// signing keys.
func (r *Runtime) load(ctx context.Context) (*state, error) {
	name := r.settings.Name
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	prefix, err := storagePrefix(ctx, r.settings.Storage, name, r.boundary, r.logger)
	if err != nil {
		return nil, fmt.Errorf("gateway %q: finding its storage: %w", name, err)
	}
	sealer, sealingKey, err := r.sealer(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("gateway %q: loading its encryption key: %w", name, err)
	}
	sessionsKey, err := sessionKey(sealingKey, prefix)
	if err != nil {
		return nil, fmt.Errorf("gateway %q: deriving its session-ID key: %w", name, err)
	}
	keys, err := accesstoken.LoadKeyset(ctx, r.settings.Storage, prefix+"/signing_keys", sealer, nil)
	if err != nil {
		return nil, fmt.Errorf("gateway %q: loading its signing keys: %w", name, err)
	}
	ledger := grants.NewLedger(r.settings.Storage, prefix, sealer, nil)
	return &state{
		prefix: prefix,
		gateway: &authserver.Gateway{
			Name:       name,
			Scopes:     r.scopes,
			Downstream: r.downstream,
			Ledger:     ledger,
			Broker: &grants.Broker{
				Ledger:    ledger,
				Issuer:    r.settings.Downstream.Issuer,
				Refresher: r.downstream,
				OnRefresh: r.settings.OnRefresh,
			},
			Keys:               keys,
			Verifier:           accesstoken.NewVerifier(keys, accesstoken.VerifierOptions{}),
			Clients:            r.settings.Clients,
			Machines:           r.machines(),
			EnterpriseIdPs:     r.enterpriseIdPs(),
			MetadataDocuments:  r.documents,
			TrustedClientHosts: r.settings.TrustedClientHosts,
			ScopeDescriptions:  r.settings.ScopeDescriptions,
		},
		sessions: NewSessionIDs(sessionsKey),
	}, nil
}

// machines builds the edge's machine clients of the settings: their keys
// fetched with the gateway's HTTP client, their downstream tokens obtained
// with the gateway's downstream client or with the downstream credentials
// configured for them.
func (r *Runtime) machines() map[string]*authserver.MachineClient {
	out := make(map[string]*authserver.MachineClient, len(r.settings.Machines))
	for id, m := range r.settings.Machines {
		mc := &authserver.MachineClient{
			Scopes:     scopes.MustParse(strings.Join(m.Scopes, " ")),
			AsUser:     m.AsUser,
			Downstream: r.downstream,
		}
		// The client's downstream tokens are kept under a key that changes
		// with its downstream credentials, so that a token of the former
		// ones is never handed out after a change.
		tag := sha256.New()
		if m.DownstreamClientID != "" {
			mc.Downstream = r.downstream.WithCredentials(m.DownstreamClientID, downstream.ClientAuth{Secret: m.DownstreamClientSecret})
			tag.Write([]byte(m.DownstreamClientID + "\x00" + m.DownstreamClientSecret))
		}
		mc.TokenKey = id + "\x00" + hex.EncodeToString(tag.Sum(nil)[:12])
		if m.PublicKey != nil || m.JWKSURI != "" {
			mc.Keys = &authserver.ClientKeys{Key: m.PublicKey, JWKSURL: m.JWKSURI, HTTPClient: r.httpClient}
		}
		out[id] = mc
	}
	return out
}

// enterpriseIdPs builds the edge's enterprise identity providers of the
// settings, their keys fetched with the gateway's HTTP client.
func (r *Runtime) enterpriseIdPs() map[string]*authserver.EnterpriseIdP {
	out := make(map[string]*authserver.EnterpriseIdP, len(r.settings.EnterpriseIdPs))
	for _, idp := range r.settings.EnterpriseIdPs {
		keys := &authserver.ClientKeys{JWKSURL: idp.JWKSURI, HTTPClient: r.httpClient}
		if idp.JWKSURI == "" {
			keys.Discover = authserver.DiscoverJWKS(idp.Issuer)
		}
		out[idp.Issuer] = &authserver.EnterpriseIdP{Issuer: idp.Issuer, Keys: keys, Clients: idp.Clients, UserClaim: idp.UserClaim, DownstreamTokenExchange: idp.DownstreamTokenExchange}
	}
	return out
}

// sealer returns the gateway's sealer and its primary key, from which the
// keys of other purposes are derived.
func (r *Runtime) sealer(ctx context.Context, prefix string) (*store.Sealer, []byte, error) {
	storage, secret := r.settings.Storage, r.settings.EncryptionKey
	var primary []byte
	var err error
	if secret != "" {
		primary, err = store.KeyFromSecret(secret)
	} else {
		primary, err = store.LoadOrCreateKey(ctx, storage, prefix+"/encryption_key")
	}
	if err != nil {
		return nil, nil, err
	}
	var older [][]byte
	for _, s := range r.settings.PreviousEncryptionKeys {
		k, err := store.KeyFromSecret(s)
		if err != nil {
			return nil, nil, err
		}
		older = append(older, k)
	}
	if secret != "" {
		// A key generated before an encryption_key was configured still
		// opens the records sealed under it.
		if k, err := storage.Load(ctx, prefix+"/encryption_key"); err == nil && len(k) == store.KeySize {
			older = append(older, k)
		}
	}
	sealer, err := store.NewSealer(primary, older...)
	return sealer, primary, err
}

// sweepInterval is how often expired codes, pending authorizations,
// refresh families and browser records are deleted. Every instance sweeps;
// sweeping concurrently is harmless (grants.Ledger.Prune).
const sweepInterval = time.Hour

// sweep deletes expired records until Close. The first sweep waits a
// random part of the interval, so instances started together spread out.
func (r *Runtime) sweep(ledger *grants.Ledger) {
	wait := time.Duration(mathrand.Int64N(int64(sweepInterval)))
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = sweepInterval
		sweepCtx, cancel := context.WithTimeout(r.ctx, 5*time.Minute)
		n, err := ledger.Prune(sweepCtx)
		cancel()
		if err != nil {
			r.logger.Warn("sweeping expired records", zap.String("gateway", r.settings.Name), zap.Error(err))
			continue
		}
		r.logger.Debug("swept expired records", zap.String("gateway", r.settings.Name), zap.Int("deleted", n))
		r.countGrants(r.ctx, ledger)
	}
}

// countGrants updates the grant count (GrantCount).
func (r *Runtime) countGrants(ctx context.Context, ledger *grants.Ledger) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := ledger.CountGrants(ctx)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			r.logger.Warn("counting grants", zap.String("gateway", r.settings.Name), zap.Error(err))
		}
		return
	}
	r.grantCount.Store(int64(n))
}

// PollInterval is how often an instance reads what every instance sharing
// its storage may have changed: the revocations (an access token of a
// family revoked elsewhere is refused here at most this long after) and
// the signing keys (a rotation elsewhere is signed with and published here
// at most this long after; a token signed with the new key verifies at
// once, see accesstoken.Verifier).
const PollInterval = 5 * time.Second

// poll follows other instances' revocations and key rotations until Close.
func (r *Runtime) poll(gw *authserver.Gateway, seen map[string]bool) {
	ticker := time.NewTicker(PollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-ticker.C:
			r.applyRevocations(r.ctx, gw, seen)
			r.reloadKeys(r.ctx, gw.Keys)
		}
	}
}

// reloadKeys re-reads the signing keys, to sign with and publish a key
// another instance rotated in, and to stop publishing retired ones. On
// error the keys in memory stay in use.
func (r *Runtime) reloadKeys(ctx context.Context, keys *accesstoken.Keyset) {
	ctx, cancel := context.WithTimeout(ctx, PollInterval)
	defer cancel()
	before := signingKid(keys)
	if err := keys.Reload(ctx); err != nil {
		r.logger.Warn("re-reading the signing keys; signing and verifying with the keys already loaded", zap.String("gateway", r.settings.Name), zap.Error(err))
		return
	}
	if after := signingKid(keys); after != before {
		r.logger.Info("signing with the key another instance rotated in", zap.String("gateway", r.settings.Name), zap.String("kid", after), zap.String("previous_kid", before))
	}
}

// signingKid returns the kid of the key that signs, the newest.
func signingKid(keys *accesstoken.Keyset) string {
	return keys.Keys()[0].Kid
}

// applyRevocations makes the verifier refuse the access tokens of every
// family revoked since the last call.
func (r *Runtime) applyRevocations(ctx context.Context, gw *authserver.Gateway, seen map[string]bool) {
	ctx, cancel := context.WithTimeout(ctx, PollInterval)
	defer cancel()
	revocations, err := gw.Ledger.Revocations(ctx, seen)
	if err != nil {
		r.logger.Warn("reading revocations", zap.String("gateway", r.settings.Name), zap.Error(err))
	}
	for _, rev := range revocations {
		gw.Verifier.RevokeFamily(rev.Ref, rev.ExpiresAt)
	}
}

// Narrowing returns how server, offering the scopes offered of the
// gateway's full set, gets its downstream token narrowed to what each
// request's client was granted, in the downstream server's names with
// the login scopes; a client granted the gateway's whole set gets the
// full token, which carries exactly that. exchange narrows by token
// exchange rather than refresh; refuse refuses where the downstream
// server cannot narrow, rather than handing out the full token.
func (r *Runtime) Narrowing(server string, offered scopes.Set, exchange, refuse bool) *grants.Narrowing {
	full, gateway := r.scopes, r.settings.Name
	return &grants.Narrowing{
		Key: server,
		Scopes: func(granted string) []string {
			// A verified token's scope parses. What the server no longer
			// offers (a reload narrowed it) is not passed on.
			set, _ := scopes.Parse(granted)
			set = set.Intersect(offered)
			if set.Equal(full) {
				return nil
			}
			return r.downstream.ScopesFor(set.Tokens())
		},
		Exchange: exchange,
		Refuse:   refuse,
		Warn: func(reason error) {
			if refuse {
				r.logger.Warn("the downstream server cannot narrow tokens to the scopes granted for this server; its requests are refused with 503 for the next hour, then it is asked again (per_server_tokens fallback refuse)",
					zap.String("gateway", gateway), zap.String("server", server), zap.Error(reason))
				return
			}
			r.logger.Warn("the downstream server cannot narrow tokens to the scopes granted for this server; the server gets the full token (set per_server_tokens fallback refuse to refuse instead)",
				zap.String("gateway", gateway), zap.String("server", server), zap.Error(reason))
		},
	}
}
