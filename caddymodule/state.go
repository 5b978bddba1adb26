package caddymodule

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// gatewayPool holds each gateway's live state across config reloads: Caddy
// provisions a new config before it cleans up the old one, and both must
// share one set of caches, keys and in-flight refreshes.
var gatewayPool = caddy.NewUsagePool()

// resolvedGateway is a gateway's config with runtime placeholders resolved.
type resolvedGateway struct {
	name                  string
	encryptionKey         string
	previousKeys          []string
	allowPrivateDocuments bool
	trustedClientHosts    []string // lower case
	clients               map[string]*grants.Client

	// downstream is the downstream client's config but for its HTTP
	// client and redirect URL.
	downstream downstream.Config
	// settings fingerprints every downstream setting (secrets and keys by
	// digest), for the usage pool's key.
	settings string
}

func resolveGateway(repl *caddy.Replacer, gw *Gateway) (*resolvedGateway, error) {
	r := &resolvedGateway{
		name:                  gw.Name,
		encryptionKey:         repl.ReplaceKnown(gw.EncryptionKey, ""),
		allowPrivateDocuments: gw.AllowPrivateMetadataDocuments,
		clients:               map[string]*grants.Client{},
	}
	for _, h := range gw.TrustedClientHosts {
		r.trustedClientHosts = append(r.trustedClientHosts, strings.ToLower(h))
	}
	if gw.EncryptionKey != "" && len(r.encryptionKey) < 16 {
		return nil, fmt.Errorf("encryption_key must resolve to at least 16 bytes")
	}
	for _, k := range gw.PreviousEncryptionKeys {
		r.previousKeys = append(r.previousKeys, repl.ReplaceKnown(k, ""))
	}
	if err := r.resolveDownstream(repl, gw); err != nil {
		return nil, err
	}
	for _, c := range gw.Clients {
		client := &grants.Client{
			ID:            c.ID,
			Name:          c.Name,
			RedirectURIs:  c.RedirectURIs,
			GrantTypes:    []string{"authorization_code", "refresh_token"},
			ResponseTypes: []string{"code"},
			Servers:       c.Servers,
			Source:        grants.SourceConfig,
		}
		client.TokenEndpointAuthMethod = "none"
		if c.Secret != "" {
			secret := repl.ReplaceKnown(c.Secret, "")
			if secret == "" {
				return nil, fmt.Errorf("client %q: secret resolved to an empty value", c.ID)
			}
			client.SecretHash = grants.HashSecret(secret)
			client.TokenEndpointAuthMethod = "client_secret_basic"
		}
		r.clients[c.ID] = client
	}
	return r, nil
}

// resolveDownstream builds the downstream client's config.
func (r *resolvedGateway) resolveDownstream(repl *caddy.Replacer, gw *Gateway) error {
	// The gateway asks the downstream server for its whole scope set once,
	// plus what it needs for identity and refresh; each MCP server's
	// downstream token is then narrowed to that server's subset.
	login := downstream.DefaultLoginScopes()
	if gw.LoginScopes != nil {
		login = slices.Clone(gw.LoginScopes)
	}
	dc := downstream.Config{
		Issuer:   strings.TrimSuffix(repl.ReplaceKnown(gw.AuthorizationServer, ""), "/"),
		ClientID: repl.ReplaceKnown(gw.ClientID, ""),
		Endpoints: downstream.Metadata{
			AuthorizationEndpoint: repl.ReplaceKnown(gw.AuthorizationEndpoint, ""),
			TokenEndpoint:         repl.ReplaceKnown(gw.TokenEndpoint, ""),
		},
		ClientAuth:     downstream.ClientAuth{Secret: repl.ReplaceKnown(gw.ClientSecret, "")},
		Resource:       repl.ReplaceKnown(gw.Resource, ""),
		ResourceParam:  gw.ResourceParameter,
		Scopes:         slices.Clone(gw.Scopes),
		ScopeMap:       gw.ScopeMap,
		LoginScopes:    login,
		AuthParams:     make(map[string]string, len(gw.AuthorizationParams)),
		IdentitySource: downstream.SourceIDToken,
		IdentityClaim:  "sub",
	}
	if err := checkAbsoluteURL(dc.Issuer); err != nil || dc.Issuer == "" {
		return fmt.Errorf("authorization_server %q (after placeholders) must be an absolute http(s) URL", dc.Issuer)
	}
	if dc.ClientID == "" {
		return fmt.Errorf("client_id %q resolved to an empty value; is the environment variable set?", gw.ClientID)
	}
	if gw.ClientSecret != "" && dc.ClientAuth.Secret == "" {
		return fmt.Errorf("client_secret resolved to an empty value; is the environment variable or file set?")
	}
	if id := gw.Identity; id != nil {
		dc.IdentitySource = cmp.Or(id.Source, dc.IdentitySource)
		dc.IdentityClaim = cmp.Or(id.Claim, dc.IdentityClaim)
	}
	if (gw.AuthorizationEndpoint != "") != (dc.Endpoints.AuthorizationEndpoint != "") ||
		(gw.TokenEndpoint != "") != (dc.Endpoints.TokenEndpoint != "") {
		return fmt.Errorf("authorization_endpoint or token_endpoint resolved to an empty value; is the environment variable set?")
	}
	for k, v := range gw.AuthorizationParams {
		dc.AuthParams[k] = repl.ReplaceKnown(v, "")
	}
	if id := gw.Identity; id != nil && id.Endpoint != "" {
		if dc.UserinfoURL = repl.ReplaceKnown(id.Endpoint, ""); dc.UserinfoURL == "" {
			return fmt.Errorf("the identity endpoint resolved to an empty value; is the environment variable set?")
		}
	}
	keyDigest, keyID := "", ""
	if ca := gw.ClientAuth; ca != nil {
		dc.ClientAuth.Method = ca.Method
		dc.ClientAuth.AssertionAudience = repl.ReplaceKnown(ca.AssertionAudience, "")
		if ca.Method == downstream.AuthPrivateKeyJWT {
			if repl.ReplaceKnown(ca.PrivateKey, "") == "" {
				return fmt.Errorf("client_auth key resolved to an empty value; is the file or environment variable set?")
			}
			if ca.Certificate != "" && repl.ReplaceKnown(ca.Certificate, "") == "" {
				return fmt.Errorf("client_auth certificate resolved to an empty value; is the file or environment variable set?")
			}
			keyID = repl.ReplaceKnown(ca.KeyID, "")
			pemText := ca.keyPEM(func(s string) string { return repl.ReplaceKnown(s, "") })
			key, err := downstream.ParseClientKey([]byte(pemText), keyID)
			if err != nil {
				return fmt.Errorf("client_auth key: %w", err)
			}
			dc.ClientAuth.Key = key
			sum := sha256.Sum256([]byte(pemText))
			keyDigest = hex.EncodeToString(sum[:])
		}
	}
	secretDigest := sha256.Sum256([]byte(dc.ClientAuth.Secret))
	settings, err := json.Marshal(map[string]any{
		"issuer":      dc.Issuer,
		"client_id":   dc.ClientID,
		"endpoints":   dc.Endpoints,
		"client_auth": []string{dc.ClientAuth.Method, dc.ClientAuth.AssertionAudience, hex.EncodeToString(secretDigest[:]), keyDigest, keyID},
		"resource":    []string{dc.Resource, dc.ResourceParam},
		"scopes":      [][]string{dc.LoginScopes, dc.Scopes},
		"scope_map":   dc.ScopeMap,
		"auth_params": dc.AuthParams,
		"identity":    []string{dc.IdentitySource, dc.IdentityClaim, dc.UserinfoURL},
	})
	if err != nil {
		return err
	}
	r.downstream, r.settings = dc, string(settings)
	return nil
}

// narrowing returns how server name, offering the scopes offered of the
// gateway's full set, gets its downstream token under gw's config: nil
// (the full token) when per_server_tokens is off. Otherwise each request's
// token is narrowed to what its client was granted of offered, in the
// downstream server's names with the login scopes; a client granted the
// gateway's whole set gets the full token, which carries exactly that.
func (st *gatewayState) narrowing(gw *Gateway, name string, offered, full scopes.Set) *grants.Narrowing {
	p := gw.PerServerTokens
	if p == nil {
		p = &PerServerTokens{}
	}
	if p.Mode == "off" {
		return nil
	}
	gateway := gw.Name
	return &grants.Narrowing{
		Key: name,
		Scopes: func(granted string) []string {
			// A verified token's scope parses. What the server no longer
			// offers (a reload narrowed it) is not passed on.
			set, _ := scopes.Parse(granted)
			set = set.Intersect(offered)
			if set.Equal(full) {
				return nil
			}
			return st.downstream.ScopesFor(set.Tokens())
		},
		Exchange: p.Mode == "token_exchange",
		Refuse:   p.Fallback == "refuse",
		Warn: func(reason error) {
			if p.Fallback == "refuse" {
				st.logger.Warn("the downstream server cannot narrow tokens to the scopes granted for this server; its requests are refused with 503 for the next hour, then it is asked again (per_server_tokens fallback refuse)",
					zap.String("gateway", gateway), zap.String("server", name), zap.Error(reason))
				return
			}
			st.logger.Warn("the downstream server cannot narrow tokens to the scopes granted for this server; the server gets the full token (set per_server_tokens fallback refuse to refuse instead)",
				zap.String("gateway", gateway), zap.String("server", name), zap.Error(reason))
		},
	}
}

// gatewayState is the part of a gateway that outlives a config: its durable
// state's handles and its in-memory caches.
type gatewayState struct {
	storage store.Store
	// boundary is what the gateway's state belongs to; prefix, set once
	// loaded, is where that state is stored (storagePrefix).
	boundary  boundary
	prefix    string
	cfg       *resolvedGateway
	documents *authserver.MetadataDocumentFetcher

	downstream *downstream.Client
	httpClient *http.Client

	mu       sync.Mutex
	ledger   *grants.Ledger
	broker   *grants.Broker
	keys     *accesstoken.Keyset
	verifier *accesstoken.Verifier
	sessions *sessionIDs

	// inventory is what the latest config attached, for the admin API.
	inventory gatewayInventory

	metrics    *gatewayMetrics
	grantCount atomic.Int64 // users with a stored grant, at the last count

	// stopSweeping ends the sweep of expired records and the polling of
	// revocations; set once loaded.
	stopSweeping context.CancelFunc
	logger       *zap.Logger
}

// sweepInterval is how often expired codes, pending authorizations,
// refresh families and browser records are deleted. Every instance sweeps;
// sweeping concurrently is harmless (grants.Ledger.Prune).
const sweepInterval = time.Hour

// sweep deletes expired records until ctx ends. The first sweep waits a
// random part of the interval, so instances started together spread out.
func (st *gatewayState) sweep(ctx context.Context, ledger *grants.Ledger) {
	wait := time.Duration(mathrand.Int64N(int64(sweepInterval)))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = sweepInterval
		sweepCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		n, err := ledger.Prune(sweepCtx)
		cancel()
		if err != nil {
			st.logger.Warn("sweeping expired records", zap.String("gateway", st.cfg.name), zap.Error(err))
			continue
		}
		st.logger.Debug("swept expired records", zap.String("gateway", st.cfg.name), zap.Int("deleted", n))
		st.countGrants(ctx)
	}
}

func newGatewayState(storage store.Store, publicURL string, cfg *resolvedGateway, logger *zap.Logger) *gatewayState {
	httpClient := &http.Client{Timeout: 10 * time.Second}
	st := &gatewayState{
		logger:     logger,
		storage:    storage,
		boundary:   boundaryOf(publicURL, cfg),
		cfg:        cfg,
		documents:  authserver.NewMetadataDocumentFetcher(authserver.MetadataDocumentOptions{AllowPrivate: cfg.allowPrivateDocuments}),
		httpClient: httpClient,
		downstream: downstream.New(withTransport(cfg.downstream, publicURL+authserver.CallbackPath, httpClient)),
	}
	st.metrics = newGatewayMetrics(cfg.name, func() float64 { return float64(st.grantCount.Load()) })
	return st
}

// boundaryOf is the auth boundary of gateway cfg at publicURL.
func boundaryOf(publicURL string, cfg *resolvedGateway) boundary {
	return boundary{
		PublicURL:           publicURL,
		AuthorizationServer: cfg.downstream.Issuer,
		ClientID:            cfg.downstream.ClientID,
		Resource:            cfg.downstream.Resource,
	}
}

// countGrants updates the grant count the metrics show.
func (st *gatewayState) countGrants(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := st.ledger.CountGrants(ctx)
	if err != nil {
		st.logger.Warn("counting grants", zap.String("gateway", st.cfg.name), zap.Error(err))
		return
	}
	st.grantCount.Store(int64(n))
}

// load finds the gateway's storage directory and reads (or creates, once
// across every instance sharing the storage) the sealing key and the
// signing keys. It is retried until it succeeds.
func (st *gatewayState) load(ctx context.Context) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.verifier != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	prefix, err := storagePrefix(ctx, st.storage, st.cfg.name, st.boundary, st.logger)
	if err != nil {
		return fmt.Errorf("gateway %q: finding its storage: %w", st.cfg.name, err)
	}
	st.prefix = prefix
	sealer, sealingKey, err := st.sealer(ctx)
	if err != nil {
		return fmt.Errorf("gateway %q: loading its encryption key: %w", st.cfg.name, err)
	}
	sessionsKey, err := sessionKey(sealingKey, st.prefix)
	if err != nil {
		return fmt.Errorf("gateway %q: deriving its session-ID key: %w", st.cfg.name, err)
	}
	keys, err := accesstoken.LoadKeyset(ctx, st.storage, st.prefix+"/signing_keys", sealer, nil)
	if err != nil {
		return fmt.Errorf("gateway %q: loading its signing keys: %w", st.cfg.name, err)
	}
	st.ledger = grants.NewLedger(st.storage, st.prefix, sealer, nil)
	st.broker = &grants.Broker{
		Ledger:    st.ledger,
		Issuer:    st.cfg.downstream.Issuer,
		Refresher: st.downstream,
		OnRefresh: st.metrics.observeRefresh,
	}
	st.keys = keys
	st.verifier = accesstoken.NewVerifier(keys, accesstoken.VerifierOptions{})
	st.sessions = newSessionIDs(sessionsKey)
	sweepCtx, stop := context.WithCancel(context.Background())
	st.stopSweeping = stop
	go st.sweep(sweepCtx, st.ledger)
	// The first poll runs now, before any request: an instance that starts
	// after a revocation refuses the family's access tokens from the start.
	seen := map[string]bool{}
	st.applyRevocations(ctx, seen)
	// Counting lists every grant: not on the first request's time.
	go st.countGrants(sweepCtx)
	go st.poll(sweepCtx, seen)
	return nil
}

// pollInterval is how often an instance reads what every instance sharing
// its storage may have changed: the revocations (an access token of a
// family revoked elsewhere is refused here at most this long after) and
// the signing keys (a rotation elsewhere is signed with and published here
// at most this long after; a token signed with the new key verifies at
// once, see accesstoken.Verifier).
const pollInterval = 5 * time.Second

// poll follows other instances' revocations and key rotations until ctx
// ends.
func (st *gatewayState) poll(ctx context.Context, seen map[string]bool) {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			st.applyRevocations(ctx, seen)
			st.reloadKeys(ctx)
		}
	}
}

// reloadKeys re-reads the signing keys, to sign with and publish a key
// another instance rotated in, and to stop publishing retired ones. On
// error the keys in memory stay in use.
func (st *gatewayState) reloadKeys(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, pollInterval)
	defer cancel()
	before := signingKid(st.keys)
	if err := st.keys.Reload(ctx); err != nil {
		st.logger.Warn("re-reading the signing keys; signing and verifying with the keys already loaded", zap.String("gateway", st.cfg.name), zap.Error(err))
		return
	}
	if after := signingKid(st.keys); after != before {
		st.logger.Info("signing with the key another instance rotated in", zap.String("gateway", st.cfg.name), zap.String("kid", after), zap.String("previous_kid", before))
	}
}

// signingKid returns the kid of the key that signs, the newest.
func signingKid(keys *accesstoken.Keyset) string {
	return keys.Keys()[0].Kid
}

// applyRevocations makes the verifier refuse the access tokens of every
// family revoked since the last call.
func (st *gatewayState) applyRevocations(ctx context.Context, seen map[string]bool) {
	ctx, cancel := context.WithTimeout(ctx, pollInterval)
	defer cancel()
	revocations, err := st.ledger.Revocations(ctx, seen)
	if err != nil {
		st.logger.Warn("reading revocations", zap.String("gateway", st.cfg.name), zap.Error(err))
	}
	for _, r := range revocations {
		st.verifier.RevokeFamily(r.Ref, r.ExpiresAt)
	}
}

// sealer returns the gateway's sealer and its primary key, from which the
// keys of other purposes are derived.
func (st *gatewayState) sealer(ctx context.Context) (*store.Sealer, []byte, error) {
	var primary []byte
	var err error
	if st.cfg.encryptionKey != "" {
		primary, err = store.KeyFromSecret(st.cfg.encryptionKey)
	} else {
		primary, err = store.LoadOrCreateKey(ctx, st.storage, st.prefix+"/encryption_key")
	}
	if err != nil {
		return nil, nil, err
	}
	var older [][]byte
	for _, s := range st.cfg.previousKeys {
		k, err := store.KeyFromSecret(s)
		if err != nil {
			return nil, nil, err
		}
		older = append(older, k)
	}
	if st.cfg.encryptionKey != "" {
		// A key generated before an encryption_key was configured still
		// opens the records sealed under it.
		if k, err := st.storage.Load(ctx, st.prefix+"/encryption_key"); err == nil && len(k) == 32 {
			older = append(older, k)
		}
	}
	sealer, err := store.NewSealer(primary, older...)
	return sealer, primary, err
}

// withTransport completes a downstream config with the gateway's callback
// URL and HTTP client.
func withTransport(dc downstream.Config, redirectURL string, client *http.Client) downstream.Config {
	dc.RedirectURL, dc.HTTPClient = redirectURL, client
	return dc
}

// Destruct implements caddy.Destructor: the last config using this gateway
// is gone.
func (st *gatewayState) Destruct() error {
	st.mu.Lock()
	if st.stopSweeping != nil {
		st.stopSweeping()
	}
	st.mu.Unlock()
	st.httpClient.CloseIdleConnections()
	return nil
}
