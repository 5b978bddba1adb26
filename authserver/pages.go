package authserver

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// The pages are plain HTML with inline styles: no script, no image, no
// external resource, nothing that a strict Content-Security-Policy would
// have to allow. In particular a client's logo_uri is never shown: it is
// the client's own claim, and fetching it would tell a host of the
// client's choosing who looks at the page, and when.
var pages = template.Must(template.New("layout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}}{{with .Product}} · {{.}}{{end}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1d2330;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;max-width:30rem;width:100%;margin:1rem;padding:2rem;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.3rem;margin:0 0 1rem}
p{line-height:1.5}
.origin{margin-top:-.5rem;font-size:1.05rem}
.warn{background:#fff4e0;border-left:4px solid #d98b00;padding:.6rem .8rem;border-radius:4px}
ul{padding-left:1.2rem}
li code{background:#eef0f4;padding:.1rem .35rem;border-radius:4px}
.new{font-size:.8rem;color:#1f5fd6}
.meta{font-size:.9rem;color:#596173}
.actions{display:flex;gap:.75rem;margin-top:1.5rem}
button{flex:1;font:inherit;padding:.7rem;border-radius:8px;border:1px solid #c5cad4;background:#fff;cursor:pointer}
button.approve{background:#1f5fd6;border-color:#1f5fd6;color:#fff}
.product{margin:0 0 .5rem;font-size:.85rem;font-weight:600;color:#596173;letter-spacing:.02em}
.scope-name{font-size:.8rem;color:#596173}
.notice{background:#e8f3ea;border-left:4px solid #2e7d32;padding:.6rem .8rem;border-radius:4px}
.apps{list-style:none;padding:0;margin:0}
.app{border-top:1px solid #e3e6eb;padding:1rem 0}
.app h3{font-size:1.05rem;margin:0 0 .25rem}
.app dl{margin:.5rem 0}
.app dt{font-weight:600;margin-top:.4rem}
.app dd{margin:0}
.app dd ul{margin:.2rem 0}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.inline{margin-top:.5rem}
.inline button{flex:none;padding:.45rem .9rem}
button.danger{border-color:#b3261e;color:#b3261e}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
</style></head>
<body><main>{{with .Product}}<p class="product">{{.}}</p>{{end}}{{template "content" .}}</main></body></html>`))

// scopeTemplate shows a scope in words when the gateway describes it, with
// its name in small print, which is what the application asked for.
const scopeTemplate = `{{define "scope"}}{{if .Description}}{{.Description}} <span class="scope-name">(<code>{{.Name}}</code>)</span>{{else}}<code>{{.Name}}</code>{{end}}{{end}}`

var consentPage = template.Must(template.Must(template.Must(pages.Clone()).Parse(scopeTemplate)).Parse(`{{define "content"}}
<h1>{{.ClientName}} wants to use {{.Server}}</h1>
{{if .ClientHost}}<p class="origin" id="client-host">Name given by the application at <strong>{{.ClientHost}}</strong></p>{{end}}
{{if .Granted}}<p>It already has access to the MCP server <strong>{{.Server}}</strong> on your behalf, and now asks for more. New permissions:</p>
<ul id="new-scopes">{{range .New}}<li>{{template "scope" .}} <strong class="new">new</strong></li>{{end}}</ul>
<p class="meta">Already allowed:</p>
<ul id="granted-scopes" class="meta">{{range .Granted}}<li>{{template "scope" .}}</li>{{end}}</ul>
{{else}}<p>It asks for access to the MCP server <strong>{{.Server}}</strong> on your behalf, with these permissions:</p>
<ul id="new-scopes">{{range .New}}<li>{{template "scope" .}}</li>{{end}}</ul>{{end}}
{{if .Unverified}}<p class="warn" id="unverified">{{if .ClientHost}}The gateway has not verified this application: anyone can publish any name at their own address. Only approve it if you started this connection and expect an application at <strong>{{.ClientHost}}</strong>.{{else}}This application registered itself, and the gateway has not verified its name. Only approve it if you started this connection.{{end}}</p>{{end}}
{{if .SignedInAs}}<p id="signed-in">You are signed in as <strong>{{.SignedInAs}}</strong>.</p>
<p class="meta">After you approve, you will be sent back to <strong>{{.RedirectHost}}</strong>.</p>{{else}}<p class="meta">After you approve, you sign in at your identity provider. You will then be sent back to <strong>{{.RedirectHost}}</strong>.</p>{{end}}
<form id="consent" method="post" action="{{.Action}}">
<input type="hidden" name="handle" value="{{.Handle}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<div class="actions">
<button type="submit" name="decision" value="deny">Deny</button>
<button type="submit" name="decision" value="approve" class="approve">Approve</button>
</div></form>{{end}}`))

var accountPage = template.Must(template.Must(template.Must(pages.Clone()).Funcs(template.FuncMap{"when": when}).Parse(scopeTemplate)).Parse(`{{define "content"}}{{with .Page}}
<h1>Connected apps</h1>
{{if .Notice}}<p class="notice" role="status">{{.Notice}}</p>{{end}}
<p>The applications you allowed to use MCP servers on your behalf. Revoking one ends its access at once; {{if .Managed}}unless it is managed by your organisation, {{end}}it must ask you again before it can act for you.{{if .Managed}} An app managed by your organisation can be given access again without asking you.{{end}}</p>
{{range .Gateways}}<section aria-label="{{.Name}}">{{if $.Page.Several}}<h2>{{.Name}}</h2>{{end}}
{{if .User}}<p class="meta">Signed in as <strong>{{.User}}</strong>.</p>
{{if .Apps}}<ul class="apps">{{$gw := .Name}}{{range .Apps}}
<li class="app"><h3>{{.Name}}</h3>
<p class="meta">{{if eq .Source "config"}}Set up by the gateway's operator.{{else if eq .Source "metadata_document"}}Identified by its metadata document at <strong>{{.Host}}</strong>.{{else}}Registered itself with the gateway.{{end}}{{if .Unverified}} Its name is not verified.{{end}}</p>
{{if .Managed}}<p class="meta"><strong>Managed by your organisation:</strong> revoking ends its current access, but it can be given access again without asking you.</p>{{end}}
<dl>{{range .Servers}}<dt>{{.Name}}</dt><dd><ul>{{range .Scopes}}<li>{{template "scope" .}}</li>{{end}}</ul></dd>{{end}}</dl>
<p class="meta">Authorized {{when .Authorized}}. Last used {{when .LastUsed}}.</p>
<p class="meta scope-name">Client ID <code>{{.ClientID}}</code></p>
<form method="post" action="{{$.Page.Action}}" class="actions inline">
<input type="hidden" name="action" value="revoke"><input type="hidden" name="gateway" value="{{$gw}}"><input type="hidden" name="client_id" value="{{.ClientID}}"><input type="hidden" name="csrf" value="{{$.Page.CSRF}}">
<button type="submit" class="danger">Revoke<span class="sr"> {{.Name}}</span></button>
</form></li>{{end}}</ul>
{{else}}<p>No application holds access for you here.</p>{{end}}
{{else}}<p>Sign in to see the applications that can use {{if $.Page.Several}}this gateway's{{else}}the gateway's{{end}} MCP servers for you.</p>
<form method="post" action="{{$.Page.Action}}" class="actions">
<input type="hidden" name="action" value="signin"><input type="hidden" name="gateway" value="{{.Name}}"><input type="hidden" name="csrf" value="{{$.Page.CSRF}}">
<button type="submit" class="approve">Sign in{{if $.Page.Several}}<span class="sr"> to {{.Name}}</span>{{end}}</button>
</form>{{end}}</section>{{end}}
{{if .SignedIn}}<div class="actions">
<form method="post" action="{{.Action}}"><input type="hidden" name="action" value="revoke_all"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit" class="danger">Revoke every app</button></form>
<form method="post" action="{{.Action}}"><input type="hidden" name="action" value="signout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit">Sign out</button></form>
</div>{{end}}{{end}}{{end}}`))

// when shows a time on the connected-apps page.
func when(t time.Time) template.HTML {
	if t.IsZero() {
		return "never"
	}
	u := t.UTC()
	return template.HTML(`<time datetime="` + u.Format(time.RFC3339) + `">` + u.Format("2 Jan 2006, 15:04 UTC") + `</time>`)
}

// scopeWords is a scope as the pages show it.
type scopeWords struct {
	Name, Description string
}

// describeScopes pairs scope names with the gateway's descriptions.
func (g *Gateway) describeScopes(names []string) []scopeWords {
	out := make([]scopeWords, len(names))
	for i, n := range names {
		out[i] = scopeWords{Name: n, Description: g.ScopeDescriptions[n]}
	}
	return out
}

var errorPage = template.Must(template.Must(pages.Clone()).Parse(`{{define "content"}}<h1>{{.Title}}</h1><p>{{.Message}}</p>{{end}}`))

// setPageHeaders forbids framing (clickjacking), caching and every resource
// the pages do not need: images included, so that no markup a client got
// onto a page could make the browser fetch from another host.
func setPageHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'")
}

// renderConsent shows the consent page. earlier are the scopes the user
// already approved for this client and server: the page then lists the
// asked scopes beyond them as new, and the rest as already allowed.
// signedInAs names the user when the page is shown after the sign-in
// (empty before it).
func (e *Edge) renderConsent(w http.ResponseWriter, s *Server, client *grants.Client, req *authorizeRequest, earlier scopes.Set, handle, csrf, signedInAs string) {
	name := client.Name
	if name == "" {
		name = client.ID
	}
	title := "Authorize " + name
	host, trusted := "", false
	if client.Source == grants.SourceMetadataDocument {
		host, trusted = s.Gateway().clientHost(client.ID)
		title += " (" + host + ")"
	}
	e.render(w, http.StatusOK, consentPage, map[string]any{
		"Title":        title,
		"ClientName":   name,
		"ClientHost":   host,
		"Server":       s.Name,
		"New":          s.Gateway().describeScopes(req.scopes.Minus(earlier).Tokens()),
		"Granted":      s.Gateway().describeScopes(req.scopes.Intersect(earlier).Tokens()),
		"RedirectHost": redirectHost(req.redirectURI),
		"Unverified":   client.Source == grants.SourceRegistered || client.Source == grants.SourceMetadataDocument && !trusted,
		"Action":       s.Issuer + "/consent",
		"Handle":       handle,
		"CSRF":         csrf,
		"SignedInAs":   signedInAs,
	})
}

func (e *Edge) errorPage(w http.ResponseWriter, status int, title, message string) {
	e.render(w, status, errorPage, map[string]any{"Title": title, "Message": message})
}

func (e *Edge) render(w http.ResponseWriter, status int, t *template.Template, data map[string]any) {
	data["Product"] = e.opts.ProductName
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		e.log.Error("rendering a page", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	setPageHeaders(w.Header())
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// redirectHost is what the consent page names as the destination: the host
// of a web redirect, or the scheme of a native app's private-use redirect.
func redirectHost(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return redirectURI
	}
	if u.Host != "" {
		return u.Host
	}
	return u.Scheme + ":"
}
