package caddymodule

import (
	"context"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
)

// gatewayPool holds each gateway's live state across config reloads: Caddy
// provisions a new config before it cleans up the old one, and both must
// share one set of caches, keys and in-flight refreshes.
var gatewayPool = caddy.NewUsagePool()

// resolvedGateway is a gateway's config with runtime placeholders resolved.
type resolvedGateway struct {
	name, issuer, clientID, clientSecret, resource string
	downstreamScopes                               []string
	identitySource, identityClaim                  string
	encryptionKey                                  string
	previousKeys                                   []string
	allowPrivateDocuments                          bool
	clients                                        map[string]*grants.Client
}

func resolveGateway(repl *caddy.Replacer, gw *Gateway) (*resolvedGateway, error) {
	r := &resolvedGateway{
		name:                  gw.Name,
		issuer:                strings.TrimSuffix(repl.ReplaceKnown(gw.AuthorizationServer, ""), "/"),
		clientID:              repl.ReplaceKnown(gw.ClientID, ""),
		clientSecret:          repl.ReplaceKnown(gw.ClientSecret, ""),
		resource:              repl.ReplaceKnown(gw.Resource, ""),
		encryptionKey:         repl.ReplaceKnown(gw.EncryptionKey, ""),
		allowPrivateDocuments: gw.AllowPrivateMetadataDocuments,
		identitySource:        downstream.SourceIDToken,
		identityClaim:         "sub",
		clients:               map[string]*grants.Client{},
	}
	if err := checkAbsoluteURL(r.issuer); err != nil || r.issuer == "" {
		return nil, fmt.Errorf("authorization_server %q (after placeholders) must be an absolute http(s) URL", r.issuer)
	}
	if r.clientID == "" {
		return nil, fmt.Errorf("client_id %q resolved to an empty value; is the environment variable set?", gw.ClientID)
	}
	if gw.ClientSecret != "" && r.clientSecret == "" {
		return nil, fmt.Errorf("client_secret resolved to an empty value; is the environment variable or file set?")
	}
	if gw.EncryptionKey != "" && len(r.encryptionKey) < 16 {
		return nil, fmt.Errorf("encryption_key must resolve to at least 16 bytes")
	}
	for _, k := range gw.PreviousEncryptionKeys {
		r.previousKeys = append(r.previousKeys, repl.ReplaceKnown(k, ""))
	}
	if id := gw.Identity; id != nil {
		if id.Source != "" {
			r.identitySource = id.Source
		}
		if id.Claim != "" {
			r.identityClaim = id.Claim
		}
	}
	// The gateway asks the downstream server for its whole scope set once,
	// plus what it needs for identity and refresh; each MCP server's tokens
	// then carry only that server's subset.
	r.downstreamScopes = append([]string{"openid", "offline_access"}, gw.Scopes...)
	for _, c := range gw.Clients {
		client := &grants.Client{
			ID:            c.ID,
			Name:          c.Name,
			RedirectURIs:  c.RedirectURIs,
			GrantTypes:    []string{"authorization_code", "refresh_token"},
			ResponseTypes: []string{"code"},
			Servers:       c.Servers,
			Source:        "config",
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

// gatewayState is the part of a gateway that outlives a config: its durable
// state's handles and its in-memory caches.
type gatewayState struct {
	storage   grants.Store
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

	// inventory is what the latest config attached, for the admin API.
	inventory gatewayInventory

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
	}
}

func newGatewayState(storage grants.Store, publicURL string, cfg *resolvedGateway, logger *zap.Logger) *gatewayState {
	httpClient := &http.Client{Timeout: 10 * time.Second}
	return &gatewayState{
		logger:     logger,
		storage:    storage,
		prefix:     "mcp_gateway/" + cfg.name,
		cfg:        cfg,
		documents:  authserver.NewMetadataDocumentFetcher(authserver.MetadataDocumentOptions{AllowPrivate: cfg.allowPrivateDocuments}),
		httpClient: httpClient,
		downstream: downstream.New(downstream.Config{
			Issuer:         cfg.issuer,
			ClientID:       cfg.clientID,
			ClientSecret:   cfg.clientSecret,
			Resource:       cfg.resource,
			Scopes:         cfg.downstreamScopes,
			RedirectURL:    publicURL + authserver.CallbackPath,
			IdentitySource: cfg.identitySource,
			IdentityClaim:  cfg.identityClaim,
			HTTPClient:     httpClient,
		}),
	}
}

// load reads (or creates, once across every instance sharing the storage)
// the sealing key and the signing keys. It is retried until it succeeds.
func (st *gatewayState) load(ctx context.Context) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.verifier != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	sealer, err := st.sealer(ctx)
	if err != nil {
		return fmt.Errorf("gateway %q: loading its encryption key: %w", st.cfg.name, err)
	}
	keys, err := accesstoken.LoadKeyset(ctx, st.storage, st.prefix+"/signing_keys", sealer, nil)
	if err != nil {
		return fmt.Errorf("gateway %q: loading its signing keys: %w", st.cfg.name, err)
	}
	st.ledger = grants.NewLedger(st.storage, st.prefix, sealer, nil)
	st.broker = &grants.Broker{
		Ledger:       st.ledger,
		ConfigSource: st.downstream.OAuth2Config,
		HTTPClient:   st.httpClient,
	}
	st.keys = keys
	st.verifier = accesstoken.NewVerifier(keys, accesstoken.VerifierOptions{})
	sweepCtx, stop := context.WithCancel(context.Background())
	st.stopSweeping = stop
	go st.sweep(sweepCtx, st.ledger)
	// The first poll runs now, before any request: an instance that starts
	// after a revocation refuses the family's access tokens from the start.
	seen := map[string]bool{}
	st.applyRevocations(ctx, seen)
	go st.pollRevocations(sweepCtx, seen)
	return nil
}

// revocationPollInterval is how often an instance reads the revocations
// recorded by every instance sharing its storage. An access token of a
// family revoked elsewhere is refused here at most this long after.
const revocationPollInterval = 5 * time.Second

// pollRevocations applies other instances' revocations until ctx ends.
func (st *gatewayState) pollRevocations(ctx context.Context, seen map[string]bool) {
	ticker := time.NewTicker(revocationPollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			st.applyRevocations(ctx, seen)
		}
	}
}

// applyRevocations makes the verifier refuse the access tokens of every
// family revoked since the last call.
func (st *gatewayState) applyRevocations(ctx context.Context, seen map[string]bool) {
	ctx, cancel := context.WithTimeout(ctx, revocationPollInterval)
	defer cancel()
	revocations, err := st.ledger.Revocations(ctx, seen)
	if err != nil {
		st.logger.Warn("reading revocations", zap.String("gateway", st.cfg.name), zap.Error(err))
	}
	for _, r := range revocations {
		st.verifier.RevokeFamily(r.FamilyID, r.ExpiresAt)
	}
}

func (st *gatewayState) sealer(ctx context.Context) (*grants.Sealer, error) {
	var primary []byte
	var err error
	if st.cfg.encryptionKey != "" {
		primary, err = grants.KeyFromSecret(st.cfg.encryptionKey)
	} else {
		primary, err = grants.LoadOrCreateKey(ctx, st.storage, st.prefix+"/encryption_key")
	}
	if err != nil {
		return nil, err
	}
	var older [][]byte
	for _, s := range st.cfg.previousKeys {
		k, err := grants.KeyFromSecret(s)
		if err != nil {
			return nil, err
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
	return grants.NewSealer(primary, older...)
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
