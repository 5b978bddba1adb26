package gateway

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/downstream"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// Settings are what a Runtime is made of, with every placeholder resolved
// and validated by the caller.
type Settings struct {
	// Name labels the gateway in its storage directory, logs and metrics.
	Name string

	// PublicURL is the origin MCP clients reach the site at, without a
	// trailing slash. The downstream redirect URI is
	// <PublicURL>/oauth/callback.
	PublicURL string

	// Storage holds the gateway's durable state, shared by every instance
	// of the same boundary. Fingerprint leaves it out: the caller, which
	// knows what tells two stores apart, keys it itself.
	Storage store.Store

	// Downstream is the gateway's client at the downstream server, but
	// for its HTTP client and redirect URL, which the Runtime sets.
	Downstream downstream.Config

	// EncryptionKey is the secret the sealing key is derived from; empty:
	// a random key kept in Storage. PreviousEncryptionKeys still open
	// what earlier keys sealed.
	EncryptionKey          string
	PreviousEncryptionKeys []string

	// Clients are the clients registered in the config, by client ID.
	Clients map[string]*grants.Client

	// Machines are the clients of Clients that may use the client
	// credentials grant, by client ID.
	Machines map[string]*Machine

	// EnterpriseIdPs are the identity providers whose ID-JAGs the
	// gateway's servers redeem.
	EnterpriseIdPs []EnterpriseIdP

	// TrustedClientHosts are the lower-case hosts whose client ID
	// metadata documents the operator vouches for.
	TrustedClientHosts []string

	// ScopeDescriptions say in words what each scope allows, for the
	// consent and connected-apps pages.
	ScopeDescriptions map[string]string

	// AllowPrivateMetadataDocuments lets client ID metadata documents be
	// fetched from private addresses and over http.
	AllowPrivateMetadataDocuments bool

	// Logger receives the gateway's logs; nil logs nothing.
	Logger *zap.Logger

	// OnRefresh, when set, is told of every downstream refresh (for the
	// metrics).
	OnRefresh func(took time.Duration, err error)
}

// Fingerprint identifies the settings: configs whose gateways have the
// same fingerprint (on the same storage) share one Runtime across reloads.
// Every setting counts but Storage (see there), Logger and OnRefresh;
// secrets enter only as digests.
func (s *Settings) Fingerprint() string {
	h := sha256.New()
	write := func(values ...string) {
		var n [binary.MaxVarintLen64]byte
		for _, v := range values {
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(v)))])
			h.Write([]byte(v))
		}
	}
	write(s.Name, s.PublicURL, s.Downstream.Fingerprint(), digest(s.EncryptionKey))
	write(strconv.Itoa(len(s.PreviousEncryptionKeys)))
	for _, k := range s.PreviousEncryptionKeys {
		write(digest(k))
	}
	write(strconv.Itoa(len(s.Clients)))
	for _, id := range slices.Sorted(maps.Keys(s.Clients)) {
		// A client's secret is kept as its hash already.
		raw, _ := json.Marshal(s.Clients[id])
		write(id, string(raw))
	}
	write(strconv.Itoa(len(s.Machines)))
	for _, id := range slices.Sorted(maps.Keys(s.Machines)) {
		write(id)
		s.Machines[id].fingerprint(write)
	}
	write(strconv.Itoa(len(s.EnterpriseIdPs)))
	for _, idp := range s.EnterpriseIdPs {
		write(idp.Issuer, idp.JWKSURI, idp.UserClaim, strconv.FormatBool(idp.DownstreamTokenExchange), strconv.Itoa(len(idp.Clients)))
		write(idp.Clients...)
	}
	write(strconv.Itoa(len(s.TrustedClientHosts)))
	write(s.TrustedClientHosts...)
	write(strconv.Itoa(len(s.ScopeDescriptions)))
	for _, scope := range slices.Sorted(maps.Keys(s.ScopeDescriptions)) {
		write(scope, s.ScopeDescriptions[scope])
	}
	write(strconv.FormatBool(s.AllowPrivateMetadataDocuments))
	return hex.EncodeToString(h.Sum(nil))
}

// Machine is what a client of the config that uses the client credentials
// grant may be granted, how it proves itself with a private_key_jwt
// assertion (when it has no secret), and where the downstream token its
// requests carry comes from.
type Machine struct {
	// Scopes bound what the client may be granted at any server, besides
	// each server's own scopes; empty allows every scope of the server.
	Scopes []string

	// PublicKey verifies the client's assertions (*rsa.PublicKey,
	// *ecdsa.PublicKey or ed25519.PublicKey); JWKSURI is where the client
	// publishes its keys instead. Both empty: it authenticates with its
	// secret.
	PublicKey crypto.PublicKey
	JWKSURI   string

	// AsUser makes the client act with the downstream grant of this user;
	// empty: the gateway obtains a downstream token of its own with the
	// client credentials grant at the downstream server.
	AsUser string

	// DownstreamClientID and DownstreamClientSecret replace the gateway's
	// downstream client credentials for this client's downstream tokens,
	// when set.
	DownstreamClientID     string
	DownstreamClientSecret string
}

// fingerprint writes every setting of m to a fingerprint: the key as its
// DER encoding, the secret as its digest.
func (m *Machine) fingerprint(write func(...string)) {
	write(strconv.Itoa(len(m.Scopes)))
	write(m.Scopes...)
	der := []byte(nil)
	if m.PublicKey != nil {
		// A key that does not marshal cannot verify either; it fingerprints
		// as a key nonetheless.
		der, _ = x509.MarshalPKIXPublicKey(m.PublicKey)
		der = append([]byte{1}, der...)
	}
	write(string(der), m.JWKSURI, m.AsUser, m.DownstreamClientID, digest(m.DownstreamClientSecret))
}

// EnterpriseIdP is an identity provider whose ID-JAGs (enterprise-managed
// authorization) the gateway's servers redeem.
type EnterpriseIdP struct {
	// Issuer is the iss of its ID-JAGs.
	Issuer string
	// JWKSURI is where its signing keys are; empty: found by discovery
	// of Issuer.
	JWKSURI string
	// Clients are the client IDs of Settings.Clients it may vouch for.
	Clients []string
	// UserClaim names the claim that identifies the user.
	UserClaim string
	// DownstreamTokenExchange: the provider is the downstream server, and
	// a user without a downstream grant gets one by exchanging the ID-JAG
	// there.
	DownstreamTokenExchange bool
}

// digest is the hex SHA-256 of a secret, "" for none.
func digest(secret string) string {
	if secret == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
