package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/gateway"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// gatewayPool holds each gateway's runtime across config reloads: Caddy
// provisions a new config before it cleans up the old one, and both must
// share one set of caches, keys and in-flight refreshes.
var gatewayPool = caddy.NewUsagePool()

// pooledGateway is a gateway's entry in the usage pool: its runtime, and
// its metrics, which live as long so that counts survive reloads.
type pooledGateway struct {
	*gateway.Runtime
	metrics *gatewayMetrics
}

// Destruct implements caddy.Destructor: the last config using the gateway
// is gone.
func (p *pooledGateway) Destruct() error { return p.Close() }

// acquireGateway returns the pooled runtime of the gateway of s on
// storage (named storageID), making it if no running config has it yet,
// and the pool key it was taken under.
func acquireGateway(storageID string, s gateway.Settings) (*pooledGateway, string, error) {
	sum := sha256.Sum256([]byte(storageID + "\x00" + s.Fingerprint()))
	key := "mcp_gateway:" + s.Name + ":" + hex.EncodeToString(sum[:16])
	val, _, err := gatewayPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		p := &pooledGateway{}
		p.metrics = newGatewayMetrics(s.Name, func() float64 { return float64(p.GrantCount()) })
		s.OnRefresh = p.metrics.observeRefresh
		p.Runtime = gateway.New(s)
		return p, nil
	})
	if err != nil {
		return nil, "", err
	}
	return val.(*pooledGateway), key, nil
}

// resolveGateway resolves the runtime placeholders of gateway gw of the
// site at publicURL into its runtime's settings, and checks what they
// resolved to.
func resolveGateway(repl *caddy.Replacer, publicURL string, gw *Gateway, storage store.Store, logger *zap.Logger) (gateway.Settings, error) {
	resolve := func(s string) string { return repl.ReplaceKnown(s, "") }
	s := gateway.Settings{
		Name:                          gw.Name,
		PublicURL:                     publicURL,
		Storage:                       storage,
		EncryptionKey:                 resolve(gw.EncryptionKey),
		AllowPrivateMetadataDocuments: gw.AllowPrivateMetadataDocuments,
		Clients:                       map[string]*grants.Client{},
		ScopeDescriptions:             gw.ScopeDescriptions,
		Machines:                      map[string]*gateway.Machine{},
		Logger:                        logger,
	}
	for _, h := range gw.TrustedClientHosts {
		s.TrustedClientHosts = append(s.TrustedClientHosts, strings.ToLower(h))
	}
	if gw.EncryptionKey != "" && len(s.EncryptionKey) < 16 {
		return s, fmt.Errorf("encryption_key must resolve to at least 16 bytes")
	}
	for _, k := range gw.PreviousEncryptionKeys {
		s.PreviousEncryptionKeys = append(s.PreviousEncryptionKeys, resolve(k))
	}
	dc, err := resolveDownstream(resolve, gw)
	if err != nil {
		return s, err
	}
	s.Downstream = dc
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
			secret := resolve(c.Secret)
			if secret == "" {
				return s, fmt.Errorf("client %q: secret resolved to an empty value", c.ID)
			}
			client.SecretHash = grants.HashSecret(secret)
			client.TokenEndpointAuthMethod = "client_secret_basic"
		}
		if c.ClientCredentials != nil {
			m, err := resolveMachine(resolve, c, client)
			if err != nil {
				return s, err
			}
			s.Machines[c.ID] = m
		}
		s.Clients[c.ID] = client
	}
	resolveEnterpriseIdPs(gw, &s)
	return s, nil
}

// resolveDownstream builds the downstream client's config with its
// placeholders resolved, and checks it again: a placeholder may have
// resolved to anything.
func resolveDownstream(resolve func(string) string, gw *Gateway) (downstream.Config, error) {
	if ca := gw.ClientAuth; ca != nil && ca.Method == downstream.AuthPrivateKeyJWT {
		if resolve(ca.PrivateKey) == "" {
			return downstream.Config{}, fmt.Errorf("client_auth key resolved to an empty value; is the file or environment variable set?")
		}
		if ca.Certificate != "" && resolve(ca.Certificate) == "" {
			return downstream.Config{}, fmt.Errorf("client_auth certificate resolved to an empty value; is the file or environment variable set?")
		}
	}
	dc, err := gw.downstreamConfig("", fmt.Sprintf("gateway %q", gw.Name), resolve)
	if err != nil {
		return dc, err
	}
	switch {
	case dc.ClientAuth.Method == downstream.AuthPrivateKeyJWT && dc.ClientAuth.Key == nil:
		return dc, fmt.Errorf("client_auth key still holds a placeholder once resolved; is the file or environment variable set?")
	case dc.Issuer == "" || hasPlaceholder(dc.Issuer):
		return dc, fmt.Errorf("authorization_server %q (after placeholders) must be an absolute http(s) URL", dc.Issuer)
	case dc.ClientID == "":
		return dc, fmt.Errorf("client_id %q resolved to an empty value; is the environment variable set?", gw.ClientID)
	case gw.ClientSecret != "" && dc.ClientAuth.Secret == "":
		return dc, fmt.Errorf("client_secret resolved to an empty value; is the environment variable or file set?")
	case (gw.AuthorizationEndpoint != "") != (dc.Endpoints.AuthorizationEndpoint != "") ||
		(gw.TokenEndpoint != "") != (dc.Endpoints.TokenEndpoint != ""):
		return dc, fmt.Errorf("authorization_endpoint or token_endpoint resolved to an empty value; is the environment variable set?")
	case gw.Identity != nil && gw.Identity.Endpoint != "" && dc.UserinfoURL == "":
		return dc, fmt.Errorf("the identity endpoint resolved to an empty value; is the environment variable set?")
	}
	if err := dc.Validate(); err != nil {
		return dc, fmt.Errorf("after placeholders: %w", err)
	}
	return dc, nil
}
