package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/gateway"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI serves the gateway's routes on Caddy's admin endpoint, below
// /mcp_gateway/: the gateways and their servers, the grants (refresh-token
// families) users gave to clients, and the registered clients, with
// revocation. Caddy loads it with the admin endpoint; it needs no config.
//
//	GET    /mcp_gateway/gateways
//	GET    /mcp_gateway/gateways/<gateway>/grants?user=&client_id=&server=&revoked=true&after=&limit=
//	DELETE /mcp_gateway/gateways/<gateway>/grants/<grant id>
//	DELETE /mcp_gateway/gateways/<gateway>/grants?user=<user>|client_id=<client>
//	GET    /mcp_gateway/gateways/<gateway>/clients
//	DELETE /mcp_gateway/gateways/<gateway>/clients/<client id>
//	GET    /mcp_gateway/gateways/<gateway>/keys
//	POST   /mcp_gateway/gateways/<gateway>/keys/rotate
//
// <gateway> is a gateway's name, or <name>@<host of its public_url> when
// several sites run a gateway of that name. A revocation or a key rotation
// takes effect at once on the instance that serves it and within seconds on
// every other instance sharing the storage; a revocation also forgets the
// consents it covers, so the next authorization asks the user again. No
// answer carries a token, a secret or a private key.
type AdminAPI struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mcp_gateway",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision implements caddy.Provisioner.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	return nil
}

// Routes implements caddy.AdminRouter.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/mcp_gateway/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// adminPageLimit bounds one page of a listing.
const adminPageLimit = 500

func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	rest, ok := strings.CutPrefix(r.URL.Path, "/mcp_gateway/gateways")
	if !ok {
		return adminError(http.StatusNotFound, "unknown route %s; see /mcp_gateway/gateways", r.URL.Path)
	}
	if rest == "" || rest == "/" {
		if r.Method != http.MethodGet {
			return adminError(http.StatusMethodNotAllowed, "use GET")
		}
		return writeAdminJSON(w, gatewayInventories())
	}
	name, rest, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	rt, err := liveGateway(name)
	if err != nil {
		return err
	}
	if _, err := rt.Load(r.Context()); err != nil {
		return adminError(http.StatusServiceUnavailable, "gateway %q cannot reach its storage: %v", name, err)
	}
	collection, id, _ := strings.Cut(rest, "/")
	switch {
	case collection == "grants" && id == "" && r.Method == http.MethodGet:
		return a.listGrants(w, r, rt)
	case collection == "grants" && r.Method == http.MethodDelete:
		return a.revokeGrants(w, r, rt, id)
	case collection == "clients" && id == "" && r.Method == http.MethodGet:
		return a.listClients(w, r, rt)
	case collection == "clients" && id != "" && r.Method == http.MethodDelete:
		return a.deleteClient(w, r, rt, id)
	case collection == "keys" && id == "" && r.Method == http.MethodGet:
		return writeAdminJSON(w, keysView{Keys: keyViews(rt.Gateway().Keys.Keys())})
	case collection == "keys" && id == "rotate" && r.Method == http.MethodPost:
		return a.rotateKeys(w, r, rt)
	case collection == "grants" || collection == "clients" || collection == "keys" && (id == "" || id == "rotate"):
		return adminError(http.StatusMethodNotAllowed, "%s %s is not supported", r.Method, r.URL.Path)
	}
	return adminError(http.StatusNotFound, "unknown route %s", r.URL.Path)
}

// grantView is a grant as the admin API shows it: never a token.
type grantView struct {
	ID            string    `json:"id"`
	User          string    `json:"user"`
	ClientID      string    `json:"client_id"`
	Server        string    `json:"server"`
	Scopes        string    `json:"scopes"`
	CreatedAt     time.Time `json:"created_at"`
	LastUsedAt    time.Time `json:"last_used_at"`
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
	Revoked       bool      `json:"revoked,omitempty"`
	RevokedReason string    `json:"revoked_reason,omitempty"`
}

func (a *AdminAPI) listGrants(w http.ResponseWriter, r *http.Request, rt *gateway.Runtime) error {
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > adminPageLimit {
			return adminError(http.StatusBadRequest, "limit must be 1 to %d", adminPageLimit)
		}
		limit = n
	}
	filter := grants.FamilyFilter{User: q.Get("user"), ClientID: q.Get("client_id"), Server: q.Get("server"), Revoked: q.Get("revoked") == "true"}
	families, next, err := rt.Gateway().Ledger.Families(r.Context(), filter, q.Get("after"), limit)
	if err != nil {
		return adminError(http.StatusServiceUnavailable, "listing grants: %v", err)
	}
	page := struct {
		Grants []grantView `json:"grants"`
		Next   string      `json:"next,omitempty"`
	}{Grants: make([]grantView, 0, len(families)), Next: next}
	for _, f := range families {
		page.Grants = append(page.Grants, grantView{ID: f.ID, User: f.User, ClientID: f.ClientID, Server: f.Server, Scopes: f.Scopes,
			CreatedAt: f.CreatedAt, LastUsedAt: f.RotatedAt, ExpiresAt: f.ExpiresAt, Revoked: f.Revoked, RevokedReason: f.RevokedReason})
	}
	return writeAdminJSON(w, page)
}

// revokeGrants revokes one grant by ID, or every live grant of a user or of
// a client, and forgets the consents behind them: without that, the next
// authorization of the client would pass the consent page unasked (and,
// with the user still signed in at the provider, with no page at all).
func (a *AdminAPI) revokeGrants(w http.ResponseWriter, r *http.Request, rt *gateway.Runtime, id string) error {
	ctx := r.Context()
	gw := rt.Gateway()
	const reason = "revoked by an operator"
	var (
		ids       []string
		forgotten int
	)
	if id == "" {
		q := r.URL.Query()
		filter := grants.FamilyFilter{User: q.Get("user"), ClientID: q.Get("client_id")}
		if filter.User == "" && filter.ClientID == "" {
			return adminError(http.StatusBadRequest, "name the grants to revoke: /grants/<id>, ?user=<user> or ?client_id=<client>")
		}
		var err error
		if ids, forgotten, err = authserver.RevokeGrants(ctx, gw.Ledger, gw.Verifier, filter, reason, time.Now()); err != nil {
			return adminError(http.StatusServiceUnavailable, "revoking grants (%d revoked so far; repeat the request): %v", len(ids), err)
		}
	} else {
		switch _, err := authserver.RevokeFamily(ctx, gw.Ledger, gw.Verifier, id, reason, time.Now()); {
		case errors.Is(err, grants.ErrNotFound):
			return adminError(http.StatusNotFound, "no grant %q", id)
		case err != nil:
			return adminError(http.StatusServiceUnavailable, "revoking grant %q: %v", id, err)
		}
		ids = []string{id}
		// A revoked family keeps its record: it names the consent.
		fam, err := gw.Ledger.Family(ctx, id)
		switch {
		case err == nil:
			forgotten, err = authserver.ForgetConsents(ctx, gw.Ledger, grants.FamilyFilter{User: fam.User, ClientID: fam.ClientID, Server: fam.Server})
		case errors.Is(err, grants.ErrNotFound): // pruned since: nothing to forget
			err = nil
		}
		if err != nil {
			return adminError(http.StatusServiceUnavailable, "the grant is revoked, but forgetting its consent failed (repeat the request): %v", err)
		}
	}
	a.logger.Info("grants revoked through the admin API", zap.String("gateway", rt.Name()), zap.Int("count", len(ids)), zap.Int("consents_forgotten", forgotten))
	return writeAdminJSON(w, map[string]any{"revoked": ids, "consents_forgotten": forgotten})
}

// clientView is a registered client as the admin API shows it.
type clientView struct {
	ID           string    `json:"client_id"`
	Name         string    `json:"client_name,omitempty"`
	RedirectURIs []string  `json:"redirect_uris"`
	AuthMethod   string    `json:"token_endpoint_auth_method"`
	Source       string    `json:"source,omitempty"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
}

func (a *AdminAPI) listClients(w http.ResponseWriter, r *http.Request, rt *gateway.Runtime) error {
	clients, err := rt.Gateway().Ledger.Clients(r.Context())
	if err != nil {
		return adminError(http.StatusServiceUnavailable, "listing clients: %v", err)
	}
	out := struct {
		Clients []clientView `json:"clients"`
	}{Clients: make([]clientView, 0, len(clients))}
	for _, c := range clients {
		out.Clients = append(out.Clients, clientView{ID: c.ID, Name: c.Name, RedirectURIs: c.RedirectURIs,
			AuthMethod: c.TokenEndpointAuthMethod, Source: c.Source, CreatedAt: c.CreatedAt})
	}
	return writeAdminJSON(w, out)
}

// deleteClient removes a registered client and revokes its grants, so its
// tokens stop working and it must register again.
func (a *AdminAPI) deleteClient(w http.ResponseWriter, r *http.Request, rt *gateway.Runtime, id string) error {
	ctx := r.Context()
	gw := rt.Gateway()
	if _, err := gw.Ledger.Client(ctx, id); errors.Is(err, grants.ErrNotFound) {
		return adminError(http.StatusNotFound, "no registered client %q (clients declared in the config are removed from the config)", id)
	} else if err != nil {
		return adminError(http.StatusServiceUnavailable, "reading client %q: %v", id, err)
	}
	ids, _, err := authserver.RevokeGrants(ctx, gw.Ledger, gw.Verifier, grants.FamilyFilter{ClientID: id}, "client deleted by an operator", time.Now())
	if err != nil {
		return adminError(http.StatusServiceUnavailable, "revoking the grants of client %q and forgetting its consents (repeat the request): %v", id, err)
	}
	if err := gw.Ledger.DeleteClient(ctx, id); err != nil {
		return adminError(http.StatusServiceUnavailable, "deleting client %q: %v", id, err)
	}
	a.logger.Info("client deleted through the admin API", zap.String("gateway", rt.Name()), zap.String("client_id", id), zap.Int("grants_revoked", len(ids)))
	return writeAdminJSON(w, map[string]any{"deleted": id, "revoked": ids})
}

// keyView is a signing key as the admin API shows it: its public identity.
type keyView struct {
	Kid      string    `json:"kid"`
	Created  time.Time `json:"created_at"`
	RetireAt time.Time `json:"retires_at,omitzero"`
	Signing  bool      `json:"signing,omitempty"`
}

type keysView struct {
	// Kid is the key that signs from now on, after a rotation.
	Kid  string    `json:"kid,omitempty"`
	Keys []keyView `json:"keys"`
}

func keyViews(keys []accesstoken.KeyInfo) []keyView {
	out := make([]keyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyView{Kid: k.Kid, Created: k.Created, RetireAt: k.RetireAt, Signing: k.Signing})
	}
	return out
}

// rotateKeys makes a new signing key. Tokens signed with the previous keys
// keep verifying until they retire (a day and an hour after this
// rotation, longer than any access token lives), so nothing is refused;
// the other instances sign with the new key and publish it within
// seconds, and verify its tokens at once.
func (a *AdminAPI) rotateKeys(w http.ResponseWriter, r *http.Request, rt *gateway.Runtime) error {
	if err := rt.Gateway().Keys.Rotate(r.Context()); err != nil {
		return adminError(http.StatusServiceUnavailable, "rotating the signing key: %v", err)
	}
	keys := rt.Gateway().Keys.Keys()
	a.logger.Info("signing key rotated through the admin API", zap.String("gateway", rt.Name()), zap.String("kid", keys[0].Kid), zap.Int("published", len(keys)))
	return writeAdminJSON(w, keysView{Kid: keys[0].Kid, Keys: keyViews(keys)})
}

// gatewayInventory is what the admin API shows of a running gateway.
type gatewayInventory struct {
	Name string `json:"name"`
	// QualifiedName is <name>@<host of public_url>, which names the
	// gateway in the admin API's paths when several sites run a gateway of
	// its name.
	QualifiedName string `json:"qualified_name"`
	PublicURL     string `json:"public_url"`
	// Storage is the gateway's storage directory, once it has been used.
	Storage string            `json:"storage,omitempty"`
	Scopes  string            `json:"scopes"`
	Servers []serverInventory `json:"servers"`
}

type serverInventory struct {
	Name     string `json:"name"`
	Path     string `json:"path"`
	Resource string `json:"resource"`
	Scopes   string `json:"scopes"`
}

// inventoryOf is what the admin API shows of a running gateway: the
// servers the latest config attached to it.
func inventoryOf(rt *gateway.Runtime, servers []*authserver.Server) gatewayInventory {
	publicURL := rt.Boundary().PublicURL
	inv := gatewayInventory{Name: rt.Name(), QualifiedName: qualifiedName(rt.Name(), publicURL), PublicURL: publicURL,
		Storage: rt.StoragePrefix(), Scopes: rt.Scopes().String(), Servers: []serverInventory{}}
	for _, s := range servers {
		inv.Servers = append(inv.Servers, serverInventory{Name: s.Name, Path: s.Path, Resource: s.Resource, Scopes: s.Rule.Offered.String()})
	}
	return inv
}

// gatewayInventories lists every gateway of the running configs.
func gatewayInventories() []gatewayInventory {
	out := []gatewayInventory{}
	gatewayPool.Range(func(_, value any) bool {
		rt := value.(*pooledGateway).Runtime
		if servers := rt.Servers(); servers != nil {
			out = append(out, inventoryOf(rt, servers))
		}
		return true
	})
	return out
}

// liveGateway finds the running gateway that ref names: a gateway's name,
// or <name>@<host of its public_url>. Gateways of one name and one
// boundary (handlers sharing a site's gateway, or a config and the one
// replacing it) are one gateway: they share their stored state. A name
// that two boundaries share (two sites) is refused rather than guessed,
// since a revocation at the wrong one would leave the intended grants
// alive.
func liveGateway(ref string) (*gateway.Runtime, error) {
	name, host, qualified := strings.Cut(ref, "@")
	var found []*gateway.Runtime
	gatewayPool.Range(func(_, value any) bool {
		rt := value.(*pooledGateway).Runtime
		if rt.Name() != name || qualified && hostOf(rt.Boundary().PublicURL) != host {
			return true
		}
		if !slices.ContainsFunc(found, func(f *gateway.Runtime) bool { return f.Boundary() == rt.Boundary() }) {
			found = append(found, rt)
		}
		return true
	})
	slices.SortFunc(found, func(a, b *gateway.Runtime) int { return strings.Compare(a.Boundary().ID(), b.Boundary().ID()) })
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) == 0:
		return nil, adminError(http.StatusNotFound, "no gateway %q is running in this config; GET /mcp_gateway/gateways lists them", ref)
	case qualified:
		var differ []string
		for _, rt := range found {
			differ = append(differ, rt.Boundary().String())
		}
		return nil, adminError(http.StatusConflict, "gateway %q is ambiguous: %d gateways of that name share the public URL host %s but not their downstream server, client or resource (%s); give them different names",
			ref, len(found), host, strings.Join(differ, "; "))
	}
	var names []string
	for _, rt := range found {
		names = append(names, qualifiedName(name, rt.Boundary().PublicURL))
	}
	return nil, adminError(http.StatusConflict, "gateway name %q is ambiguous: %d sites run a gateway of that name (%s); name one as <name>@<public_url host>, e.g. /mcp_gateway/gateways/%s/grants",
		ref, len(found), strings.Join(names, ", "), names[0])
}

// qualifiedName is how the admin API names gateway name of the site at
// publicURL.
func qualifiedName(name, publicURL string) string {
	return name + "@" + hostOf(publicURL)
}

// hostOf is the host (and port) of a public URL.
func hostOf(publicURL string) string {
	if u, err := url.Parse(publicURL); err == nil {
		return u.Host
	}
	return publicURL
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

func adminError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

var (
	_ caddy.Provisioner = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
