package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// authService is the endpoint Caddy's forward_auth asks about every
// request: the same work as the gateway's per-request step, out of
// process. It reads the gateway's storage as another instance would, so it
// verifies the same tokens with the same Verifier (and its cache of
// verified tokens) and answers the user's downstream token from the same
// Broker (and its cache). The forward_auth figures therefore measure the
// extra hop, not a slower verification.
type authService struct {
	verifier  *accesstoken.Verifier
	broker    *grants.Broker
	resources []string
	server    *http.Server
}

// gatewayState is what another instance of the gateway loads from the
// shared storage: its sealer, signing keys and grants.
type gatewayState struct {
	sealer *store.Sealer
	keys   *accesstoken.Keyset
	ledger *grants.Ledger
}

// legacyGatewayDir is where a gateway named acme finds records kept before
// gateways recorded their auth boundary: it claims the directory as its own
// on first use (see gateway.Boundary), so records seeded there are its.
const legacyGatewayDir = "mcp_gateway/acme"

// loadGatewayState reads the gateway state kept under dir.
func loadGatewayState(ctx context.Context, s store.Store, dir, encryptionKey string) (*gatewayState, error) {
	key, err := store.KeyFromSecret(encryptionKey)
	if err != nil {
		return nil, err
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		return nil, err
	}
	keys, err := accesstoken.LoadKeyset(ctx, s, dir+"/signing_keys", sealer, nil)
	if err != nil {
		return nil, err
	}
	return &gatewayState{sealer: sealer, keys: keys, ledger: grants.NewLedger(s, dir, sealer, nil)}, nil
}

// startAuthService serves /verify on addr, refreshing downstream tokens
// with downstream.
func startAuthService(st *gatewayState, addr string, downstream grants.Refresher, resources []string) (*authService, error) {
	a := &authService{
		verifier:  accesstoken.NewVerifier(st.keys, accesstoken.VerifierOptions{}),
		broker:    &grants.Broker{Ledger: st.ledger, Refresher: downstream},
		resources: resources,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/verify", a.verify)
	a.server = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go a.server.Serve(ln)
	return a, nil
}

// verify answers 200 with the downstream token in
// X-Downstream-Authorization, which forward_auth copies into the request's
// Authorization, or 401.
func (a *authService) verify(w http.ResponseWriter, r *http.Request) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	claims, err := a.verifier.Verify(token)
	if err != nil || !slices.Contains(a.resources, claims.Audience) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	tok, err := a.broker.Token(r.Context(), claims.Subject)
	switch {
	case errors.Is(err, grants.ErrGrantDead), errors.Is(err, grants.ErrNotFound):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	case err != nil:
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("X-Downstream-Authorization", "Bearer "+tok.AccessToken)
	w.WriteHeader(http.StatusOK)
}

func (a *authService) close() { a.server.Close() }

// storageDirOf asks the admin API at admin where the running gateway named
// name keeps its records (its auth boundary's directory).
func storageDirOf(hc *http.Client, admin, name string) (string, error) {
	resp, err := hc.Get("http://" + admin + "/mcp_gateway/gateways")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var gateways []struct {
		Name    string `json:"name"`
		Storage string `json:"storage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&gateways); err != nil {
		return "", fmt.Errorf("reading the admin API's list of gateways: %w", err)
	}
	for _, g := range gateways {
		if g.Name == name && g.Storage != "" {
			return g.Storage, nil
		}
	}
	return "", fmt.Errorf("the admin API at %s names no storage directory for gateway %q", admin, name)
}
