package authserver

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"strconv"

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
<title>{{.Title}}</title>
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
</style></head>
<body><main>{{template "content" .}}</main></body></html>`))

var consentPage = template.Must(template.Must(pages.Clone()).Parse(`{{define "content"}}
<h1>{{.ClientName}} wants to use {{.Server}}</h1>
{{if .ClientHost}}<p class="origin" id="client-host">Name given by the application at <strong>{{.ClientHost}}</strong></p>{{end}}
{{if .Granted}}<p>It already has access to the MCP server <strong>{{.Server}}</strong> on your behalf, and now asks for more. New permissions:</p>
<ul id="new-scopes">{{range .New}}<li><code>{{.}}</code> <strong class="new">new</strong></li>{{end}}</ul>
<p class="meta">Already allowed:</p>
<ul id="granted-scopes" class="meta">{{range .Granted}}<li><code>{{.}}</code></li>{{end}}</ul>
{{else}}<p>It asks for access to the MCP server <strong>{{.Server}}</strong> on your behalf, with these permissions:</p>
<ul id="new-scopes">{{range .New}}<li><code>{{.}}</code></li>{{end}}</ul>{{end}}
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
		"New":          req.scopes.Minus(earlier).Tokens(),
		"Granted":      req.scopes.Intersect(earlier).Tokens(),
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
