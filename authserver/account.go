package authserver

import (
	"cmp"
	"context"
	"crypto/subtle"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// AccountPath is the site's connected-apps page: a person signs in there
// through each gateway's downstream provider, sees the clients that hold a
// grant of theirs, and revokes them.
const AccountPath = "/oauth/account"

// AccountSessionTTL is how long a sign-in to the connected-apps page lasts.
// It is short: the page can end every grant of the person, and nothing
// else needs the session.
const AccountSessionTTL = 15 * time.Minute

// accountLookupTimeout bounds the client lookups of one page: a client ID
// metadata document that does not answer leaves its client named by its
// host instead of holding the page.
const accountLookupTimeout = 3 * time.Second

// maxClientIDField bounds the client ID a revocation form may name; longer
// ones name no client the gateway knows.
const maxClientIDField = 2048

// The page's cookie is the session: a random value, whose hash keys a
// record in each gateway the person signed in to (grants.Ledger's
// account sessions). A new value is set at every sign-in, so a value
// planted in the browser beforehand never becomes a session.
func (e *Edge) accountCookieName() string {
	if e.secure {
		return "__Host-mcp_gateway_account"
	}
	return "mcp_gateway_account"
}

func (e *Edge) readAccountCookie(r *http.Request) string {
	if v := readCookie(r, e.accountCookieName()); isToken(v) {
		return v
	}
	return ""
}

func (e *Edge) setAccountCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     e.accountCookieName(),
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   e.secure,
		SameSite: http.SameSiteLaxMode,
	})
}

// accountCSRF is the token of the page's forms: bound to the browser
// cookie and to the session cookie (empty before any sign-in), so a form
// rendered before a sign-in, or in another browser, is refused.
func accountCSRF(browser, account string) string {
	return hashWithLabel("account csrf", browser+"\x00"+account)
}

// accountSessionHash is what a session's records are stored under.
func accountSessionHash(account string) string {
	return hashWithLabel("account", account)
}

// serveAccount serves the connected-apps page (GET) and its forms (POST).
func (e *Edge) serveAccount(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		e.showAccount(w, r)
	case http.MethodPost:
		e.answerAccount(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		e.errorPage(w, http.StatusMethodNotAllowed, "Wrong method", "Open this page in your browser.")
	}
}

// The page's views.
type (
	accountView struct {
		Gateways []*accountGateway
		Several  bool // the site has several gateways: each gets a heading
		SignedIn bool // in at least one gateway
		Managed  bool // some app listed is managed by the organisation
		Notice   string
		CSRF     string
		Action   string
	}
	accountGateway struct {
		Name string
		User string // empty: not signed in
		Apps []*accountApp
	}
	accountApp struct {
		ClientID string
		Name     string
		// Source is how the client identified itself (grants.Source*);
		// Host is the host of a metadata document's URL.
		Source     string
		Host       string
		Unverified bool
		// Managed: the client can get new tokens for the person without
		// asking them (see Gateway.managedFor), so revoking it ends only
		// its current access.
		Managed    bool
		Servers    []*accountServer
		Authorized time.Time
		LastUsed   time.Time
	}
	accountServer struct {
		Name   string
		Scopes []scopeWords
	}
)

// accountNotices are what the page says after a form's action, named by
// the redirect that follows it: fixed texts only, never the request's.
var accountNotices = map[string]string{
	"revoked":             "The app's access was revoked. It must ask you again before it can act for you.",
	"revoked_managed":     "The app's current access was revoked. It is managed by your organisation, so it can be given access again without asking you.",
	"revoked_all":         "Every app's access was revoked. Each must ask you again before it can act for you.",
	"revoked_all_managed": "Every app's access was revoked. Apps managed by your organisation can be given access again without asking you; the others must ask you again before they can act for you.",
	"signed_out":          "You signed out of this page.",
}

func (e *Edge) showAccount(w http.ResponseWriter, r *http.Request) {
	if t := take(e.limits.authorize, e.clientAddress(r), "account page"); t != nil {
		e.refuseTooMany(w, r, nil, "", t, true)
		return
	}
	ctx := r.Context()
	browser := e.browserCookie(w, r)
	account := e.readAccountCookie(r)
	view := &accountView{Notice: accountNotices[r.URL.Query().Get("done")], CSRF: accountCSRF(browser, account), Action: e.url(AccountPath, nil)}
	gateways := e.gateways()
	view.Several = len(gateways) > 1
	for _, g := range gateways {
		gv := &accountGateway{Name: g.Name}
		view.Gateways = append(view.Gateways, gv)
		user, err := e.accountUser(ctx, g, account)
		if err != nil {
			e.accountStorageError(w, g, err)
			return
		}
		if user == "" {
			continue
		}
		gv.User, view.SignedIn = user, true
		if gv.Apps, err = e.connectedApps(ctx, g, user); err != nil {
			e.accountStorageError(w, g, err)
			return
		}
		view.Managed = view.Managed || slices.ContainsFunc(gv.Apps, func(a *accountApp) bool { return a.Managed })
	}
	title := "Connected apps"
	e.render(w, http.StatusOK, accountPage, map[string]any{"Title": title, "Page": view})
}

// accountUser returns who is signed in to g under the session cookie
// account, or "" for no one.
func (e *Edge) accountUser(ctx context.Context, g *Gateway, account string) (string, error) {
	if account == "" {
		return "", nil
	}
	user, _, err := g.Ledger.AccountSession(ctx, accountSessionHash(account))
	if isNotFound(err) {
		return "", nil
	}
	return user, err
}

func (e *Edge) accountStorageError(w http.ResponseWriter, g *Gateway, err error) {
	e.log.Error("reading the connected-apps page's records", zap.String("gateway", g.Name), zap.Error(err))
	e.errorPage(w, http.StatusServiceUnavailable, "The gateway cannot read your apps right now", "Its storage is unavailable. Try again in a moment.")
}

// connectedApps lists the clients that hold a live grant of user at g, one
// entry per client with the servers and scopes granted, when it was first
// authorized and when it was last used (its grants' latest refresh, so
// within an access token's lifetime).
func (e *Edge) connectedApps(ctx context.Context, g *Gateway, user string) ([]*accountApp, error) {
	byClient := map[string]*accountApp{}
	granted := map[[2]string]scopes.Set{}
	err := eachFamily(ctx, g.Ledger, grants.FamilyFilter{User: user}, func(f *grants.Family) {
		if f.User != user { // the filter's own rule, checked where it matters
			return
		}
		app := byClient[f.ClientID]
		if app == nil {
			app = &accountApp{ClientID: f.ClientID, Authorized: f.CreatedAt}
			byClient[f.ClientID] = app
		}
		if f.CreatedAt.Before(app.Authorized) {
			app.Authorized = f.CreatedAt
		}
		if f.RotatedAt.After(app.LastUsed) {
			app.LastUsed = f.RotatedAt
		}
		set, _ := scopes.Parse(f.Scopes)
		key := [2]string{f.ClientID, f.Server}
		granted[key] = granted[key].Union(set)
	})
	if err != nil {
		return nil, err
	}
	lookups, cancel := context.WithTimeout(ctx, accountLookupTimeout)
	defer cancel()
	apps := make([]*accountApp, 0, len(byClient))
	for _, app := range byClient {
		e.describeClient(lookups, g, app)
		app.Managed = g.managedFor(app.ClientID, user)
		apps = append(apps, app)
	}
	for key, set := range granted {
		app := byClient[key[0]]
		app.Servers = append(app.Servers, &accountServer{Name: key[1], Scopes: g.describeScopes(set.Tokens())})
	}
	for _, app := range apps {
		slices.SortFunc(app.Servers, func(a, b *accountServer) int { return cmp.Compare(a.Name, b.Name) })
	}
	slices.SortFunc(apps, func(a, b *accountApp) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ClientID, b.ClientID))
	})
	return apps, nil
}

// describeClient fills in the name of app's client and how it identified
// itself, as the consent page shows them. A client that cannot be looked
// up (a registration removed since, a metadata document that fails) is
// still listed, by its ID or host, so that its grants can be revoked.
func (e *Edge) describeClient(ctx context.Context, g *Gateway, app *accountApp) {
	c, err := e.lookupClient(ctx, g, app.ClientID)
	switch {
	case err == nil:
		app.Name, app.Source = c.Name, c.Source
	case isMetadataDocumentURL(app.ClientID):
		app.Source = grants.SourceMetadataDocument
	default:
		app.Source = grants.SourceRegistered
	}
	if app.Source == grants.SourceMetadataDocument {
		var trusted bool
		app.Host, trusted = g.clientHost(app.ClientID)
		app.Unverified = !trusted
		if app.Name == "" {
			app.Name = app.Host
		}
	}
	if app.Source == grants.SourceRegistered {
		app.Unverified = true
	}
	if app.Name == "" {
		app.Name = "Unnamed application"
	}
}

// answerAccount handles the page's forms: sign in to a gateway, revoke one
// client, revoke every client, sign out. Each carries the page's CSRF
// token, and acts only for the person signed in with this browser's
// session: a revocation names a client, never a grant, and is applied to
// the signed-in user's grants alone.
func (e *Edge) answerAccount(w http.ResponseWriter, r *http.Request) {
	if t := take(e.limits.callback, e.clientAddress(r), "account page"); t != nil {
		e.refuseTooMany(w, r, nil, "", t, true)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		e.errorPage(w, http.StatusBadRequest, "The form could not be read", "Reload the page and try again.")
		return
	}
	form := r.PostForm
	for _, name := range []string{"action", "gateway", "client_id", "csrf"} {
		if len(form[name]) > 1 {
			e.errorPage(w, http.StatusBadRequest, "The form is ambiguous", "Reload the page and try again.")
			return
		}
	}
	browser, account := e.readBrowserCookie(r), e.readAccountCookie(r)
	csrf := form.Get("csrf")
	if browser == "" || csrf == "" || subtle.ConstantTimeCompare([]byte(csrf), []byte(accountCSRF(browser, account))) != 1 {
		e.audit("account form refused", nil, "", "", "", zap.String("reason", "CSRF token missing or wrong"), zap.String("address", e.clientAddress(r)))
		e.errorPage(w, http.StatusForbidden, "This form was not sent from the connected-apps page",
			"It lacks the page's security token, or the page was opened before you last signed in. Open "+e.url(AccountPath, nil)+" again.")
		return
	}
	ctx := r.Context()
	action := form.Get("action")
	if action == "signout" {
		e.signOutAccount(w, r, account)
		return
	}
	if action == "revoke_all" {
		e.revokeAll(w, r, account)
		return
	}
	var g *Gateway
	for _, gw := range e.gateways() {
		if gw.Name == form.Get("gateway") {
			g = gw
		}
	}
	if g == nil {
		e.errorPage(w, http.StatusBadRequest, "Unknown gateway", "Reload the page and try again.")
		return
	}
	switch action {
	case "signin":
		e.startAccountSignIn(w, r, g, browser)
	case "revoke":
		clientID := form.Get("client_id")
		if clientID == "" || len(clientID) > maxClientIDField {
			e.errorPage(w, http.StatusBadRequest, "The form names no app", "Reload the page and try again.")
			return
		}
		user, err := e.accountUser(ctx, g, account)
		if err != nil {
			e.accountStorageError(w, g, err)
			return
		}
		if user == "" {
			e.accountSignedOut(w)
			return
		}
		if !e.revokeForUser(w, g, user, clientID) {
			return
		}
		done := "revoked"
		if g.managedFor(clientID, user) {
			done = "revoked_managed"
		}
		http.Redirect(w, r, e.url(AccountPath, nil)+"?done="+done, http.StatusSeeOther)
	default:
		e.errorPage(w, http.StatusBadRequest, "Unknown action", "Reload the page and try again.")
	}
}

// revokeAll revokes every grant of the person at each gateway they are
// signed in to.
func (e *Edge) revokeAll(w http.ResponseWriter, r *http.Request, account string) {
	signedIn, managed := false, false
	for _, g := range e.gateways() {
		user, err := e.accountUser(r.Context(), g, account)
		if err != nil {
			e.accountStorageError(w, g, err)
			return
		}
		if user == "" {
			continue
		}
		signedIn = true
		managed = managed || g.managesAnyFor(user)
		if !e.revokeForUser(w, g, user, "") {
			return
		}
	}
	if !signedIn {
		e.accountSignedOut(w)
		return
	}
	done := "revoked_all"
	if managed {
		done = "revoked_all_managed"
	}
	http.Redirect(w, r, e.url(AccountPath, nil)+"?done="+done, http.StatusSeeOther)
}

// revokeForUser revokes user's grants at g, to clientID or, when it is
// empty, to every client, and forgets the consents behind them. It
// answers the request itself when storage fails, and then reports false.
func (e *Edge) revokeForUser(w http.ResponseWriter, g *Gateway, user, clientID string) bool {
	// The request's context is not used: a revocation the person asked
	// for finishes even if the browser goes away.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	revoked, forgotten, err := RevokeGrants(ctx, g.Ledger, g.Verifier, grants.FamilyFilter{User: user, ClientID: clientID}, "revoked by the user", e.opts.Now())
	e.audit("grants revoked by the user", nil, clientID, user, "", zap.String("gateway", g.Name),
		zap.Int("count", len(revoked)), zap.Int("consents_forgotten", forgotten), zap.Bool("complete", err == nil))
	if err != nil {
		e.log.Error("revoking a user's grants", zap.String("gateway", g.Name), zap.Error(err))
		e.errorPage(w, http.StatusServiceUnavailable, "The gateway could not revoke every grant", "Its storage is unavailable. Try again in a moment: what was revoked stays revoked.")
		return false
	}
	return true
}

// managedFor says whether clientID can get new tokens for user at g
// without asking them, whatever they revoke: a machine client of the
// config acting as user (client credentials with as_user), or a client of
// the config that an enterprise identity provider vouches for (a fresh
// ID-JAG). Revoking such a client ends its current access only, and the
// page says so rather than promise that it must ask again.
func (g *Gateway) managedFor(clientID, user string) bool {
	if m := g.Machines[clientID]; m != nil && m.AsUser != "" && m.AsUser == user {
		return true
	}
	c := g.Clients[clientID]
	return c != nil && c.Source == grants.SourceConfig && g.vouchedFor(clientID)
}

// managesAnyFor says whether some client of g is managedFor user.
func (g *Gateway) managesAnyFor(user string) bool {
	for id := range g.Machines {
		if g.managedFor(id, user) {
			return true
		}
	}
	for _, idp := range g.EnterpriseIdPs {
		if slices.ContainsFunc(idp.Clients, func(id string) bool { return g.managedFor(id, user) }) {
			return true
		}
	}
	return false
}

func (e *Edge) accountSignedOut(w http.ResponseWriter) {
	e.errorPage(w, http.StatusForbidden, "You are not signed in", "Your sign-in to this page has ended. Open "+e.url(AccountPath, nil)+" and sign in again.")
}

// startAccountSignIn sends the browser to g's downstream provider, as an
// authorization does after consent; the callback, bound to this browser,
// opens the session (finishAccountSignIn).
func (e *Edge) startAccountSignIn(w http.ResponseWriter, r *http.Request, g *Gateway, browser string) {
	now := e.opts.Now()
	p := &grants.Pending{Account: true, BrowserHash: hashWithLabel("browser", browser), CreatedAt: now, ExpiresAt: now.Add(e.opts.AuthorizationTTL)}
	authURL, err := e.downstreamSignIn(r.Context(), g, p)
	if err != nil {
		e.log.Error("starting a sign-in to the connected-apps page", zap.String("gateway", g.Name), zap.Error(err))
		e.errorPage(w, http.StatusServiceUnavailable, "The sign-in cannot start right now", "The identity provider or the gateway's storage cannot be reached. Try again in a moment.")
		return
	}
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// finishAccountSignIn completes a sign-in to the connected-apps page: the
// pending sign-in p, of gateway g, was taken by the browser that started
// it. It resolves the user and opens a session under a new cookie value,
// carrying over the sessions the browser had at the site's other
// gateways. It keeps no downstream token: the page needs the person's
// identity only.
func (e *Edge) finishAccountSignIn(w http.ResponseWriter, r *http.Request, g *Gateway, p *grants.Pending) {
	ctx := r.Context()
	q := r.URL.Query()
	if errCode := q.Get("error"); errCode != "" {
		e.audit("account sign-in refused", nil, "", "", "", zap.String("gateway", g.Name), zap.String("downstream_error", errCode))
		e.errorPage(w, http.StatusForbidden, "The sign-in did not complete", "Your identity provider did not sign you in. Open "+e.url(AccountPath, nil)+" to try again.")
		return
	}
	res, err := g.Downstream.Exchange(ctx, q.Get("code"), p.DownstreamVerifier)
	if err != nil {
		e.log.Warn("completing a sign-in to the connected-apps page", zap.String("gateway", g.Name), zap.Error(err))
		e.errorPage(w, http.StatusBadGateway, "The sign-in could not be completed", "Open "+e.url(AccountPath, nil)+" to try again.")
		return
	}
	now := e.opts.Now()
	fresh := randomToken()
	if old := e.readAccountCookie(r); old != "" {
		for _, other := range e.gateways() {
			oldHash := accountSessionHash(old)
			if other != g {
				user, expires, err := other.Ledger.AccountSession(ctx, oldHash)
				if err == nil {
					err = other.Ledger.SaveAccountSession(ctx, accountSessionHash(fresh), user, expires)
				}
				if err != nil && !isNotFound(err) {
					e.log.Warn("carrying over a connected-apps session", zap.String("gateway", other.Name), zap.Error(err))
				}
			}
			if err := other.Ledger.DeleteAccountSession(ctx, oldHash); err != nil {
				e.log.Warn("ending a replaced connected-apps session", zap.String("gateway", other.Name), zap.Error(err))
			}
		}
	}
	if err := g.Ledger.SaveAccountSession(ctx, accountSessionHash(fresh), res.User, now.Add(AccountSessionTTL)); err != nil {
		e.log.Error("saving a connected-apps session", zap.String("gateway", g.Name), zap.Error(err))
		e.errorPage(w, http.StatusServiceUnavailable, "The gateway cannot record your sign-in right now", "Its storage is unavailable. Try again in a moment.")
		return
	}
	e.setAccountCookie(w, fresh, int(AccountSessionTTL.Seconds()))
	e.audit("account signed in", nil, "", res.User, "", zap.String("gateway", g.Name))
	http.Redirect(w, r, e.url(AccountPath, nil), http.StatusSeeOther)
}

// signOutAccount ends the browser's session at every gateway.
func (e *Edge) signOutAccount(w http.ResponseWriter, r *http.Request, account string) {
	if account != "" {
		for _, g := range e.gateways() {
			if err := g.Ledger.DeleteAccountSession(r.Context(), accountSessionHash(account)); err != nil {
				e.accountStorageError(w, g, err)
				return
			}
		}
	}
	e.setAccountCookie(w, "", -1)
	http.Redirect(w, r, e.url(AccountPath, nil)+"?done=signed_out", http.StatusSeeOther)
}
