package caddymodule

import (
	"errors"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mcp_gateway", parseCaddyfile)
	// Early enough that encode and other response-wrapping handlers do not
	// sit in front of the gateway's SSE streams; the gateway passes every
	// path it does not own to the next handler.
	httpcaddyfile.RegisterDirectiveOrder("mcp_gateway", httpcaddyfile.After, "forward_auth")
}

// parseCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mcp_gateway {
//		public_url <url>
//		access_token_lifetime <duration>
//		refresh_token_lifetime <duration>
//		refresh_grace <duration>
//		authorization_code_lifetime <duration>
//		authorization_lifetime <duration>
//		rate_limit off
//		rate_limit {
//			register <events>/<window>|off
//			authorize <events>/<window>|off
//			token <events>/<window>|off
//			client_auth_failures <events>/<window>|off
//		}
//
//		gateway <name> {
//			authorization_server <issuer url>
//			client_id <id>
//			client_secret <secret>
//			resource <downstream resource or audience>
//			scopes <scope...>
//			identity [id_token|userinfo] [claim <name>]
//			encryption_key <secret> [<previous secret>...]
//			allow_private_metadata_documents
//			client <id> {
//				secret <secret>
//				name <display name>
//				redirect_uris <uri...>
//				servers <server name...>
//			}
//		}
//
//		server <name> <path> {
//			gateway <name>
//			scopes <scope...>
//			strict_scopes
//			reverse_proxy [<upstreams...>] {
//				# all of reverse_proxy's own syntax
//			}
//		}
//	}
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	if err := handler.unmarshal(h); err != nil {
		return nil, err
	}
	return handler, nil
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. Inside a site block the
// directive is adapted by parseCaddyfile, which also gives reverse_proxy's
// handle_response blocks the adapter state they need.
func (g *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return g.unmarshal(httpcaddyfile.Helper{
		Dispenser:  d,
		State:      map[string]any{},
		BlockState: map[string]any{},
	})
}

// jsonField maps Caddyfile words to the JSON fields they set, to locate
// validation errors.
var jsonField = map[string]string{
	"authorization_server": "authorization_server",
	"client_id":            "client_id",
	"client_secret":        "client_secret",
	"resource":             "resource",
	"audience":             "resource",
	"scopes":               "scopes",
	"identity":             "identity",
	"encryption_key":       "encryption_key",
	"gateway":              "gateway",
	"reverse_proxy":        "upstream",
}

// boundaryItems are the settings that make up a gateway's auth boundary. A
// server block that sets one is refused with a pointer to the fix.
var boundaryItems = map[string]string{
	"authorization_server": "authorization server",
	"client_id":            "downstream client ID",
	"client_secret":        "downstream client ID",
	"resource":             "resource or audience",
	"audience":             "resource or audience",
	"identity":             "identity resolution rule",
}

func (g *Handler) unmarshal(h httpcaddyfile.Helper) error {
	d := h.Dispenser
	d.Next() // consume directive name
	at := locations{"": position(d)}
	if d.NextArg() {
		return d.Errf("mcp_gateway takes no arguments on its first line, got %q; settings go in its block", d.Val())
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "public_url":
			at["public_url"] = position(d)
			if err := oneArg(d, &g.PublicURL); err != nil {
				return err
			}
		case "access_token_lifetime", "refresh_token_lifetime", "refresh_grace", "authorization_code_lifetime", "authorization_lifetime":
			at["lifetimes/"+strings.TrimSuffix(d.Val(), "_lifetime")] = position(d)
			if err := g.unmarshalLifetime(d); err != nil {
				return err
			}
		case "rate_limit":
			at["rate_limits"] = position(d)
			if err := g.unmarshalRateLimits(d, at.under("rate_limits")); err != nil {
				return err
			}
		case "gateway":
			gw, err := unmarshalGateway(d, at.under(fmt.Sprintf("gateways/%d", len(g.Gateways))))
			if err != nil {
				return err
			}
			g.Gateways = append(g.Gateways, gw)
		case "server":
			srv, err := unmarshalServer(h, at.under(fmt.Sprintf("servers/%d", len(g.Servers))))
			if err != nil {
				return err
			}
			g.Servers = append(g.Servers, srv)
		default:
			return d.Errf("unrecognized mcp_gateway option %q (expected public_url, gateway, server, rate_limit or a lifetime)", d.Val())
		}
	}
	// The rules that span several blocks (a server's scopes against its
	// gateway's, overlapping paths) run here too, so that `caddy adapt` and
	// `caddy validate` point at the offending line.
	if err := g.check(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return fmt.Errorf("%s, at %s", ce.Msg, at.find(ce.Path))
		}
		return err
	}
	return nil
}

// locations maps JSON paths of the config to where the Caddyfile set them.
type locations map[string]string

func position(d *caddyfile.Dispenser) string {
	return fmt.Sprintf("%s:%d", d.File(), d.Line())
}

// under returns a recorder for the paths below prefix.
func (l locations) under(prefix string) func(field string, d *caddyfile.Dispenser) {
	return func(field string, d *caddyfile.Dispenser) {
		if field == "" {
			l[prefix] = position(d)
			return
		}
		l[prefix+"/"+field] = position(d)
	}
}

// find returns the location of path or of its nearest recorded parent.
func (l locations) find(path string) string {
	for {
		if pos, ok := l[path]; ok {
			return pos
		}
		i := strings.LastIndex(path, "/")
		if i < 0 {
			return l[""]
		}
		path = path[:i]
	}
}

func (g *Handler) unmarshalLifetime(d *caddyfile.Dispenser) error {
	name := d.Val()
	var raw string
	if err := oneArg(d, &raw); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(raw)
	if err != nil {
		return d.Errf("%s: bad duration %q: %v", name, raw, err)
	}
	if dur <= 0 {
		return d.Errf("%s must be positive, got %q", name, raw)
	}
	target := map[string]*caddy.Duration{
		"access_token_lifetime":       &g.Lifetimes.AccessToken,
		"refresh_token_lifetime":      &g.Lifetimes.RefreshToken,
		"refresh_grace":               &g.Lifetimes.RefreshGrace,
		"authorization_code_lifetime": &g.Lifetimes.AuthorizationCode,
		"authorization_lifetime":      &g.Lifetimes.Authorization,
	}[name]
	*target = caddy.Duration(dur)
	return nil
}

// unmarshalRateLimits reads "rate_limit off" or a rate_limit block.
func (g *Handler) unmarshalRateLimits(d *caddyfile.Dispenser, record func(string, *caddyfile.Dispenser)) error {
	if g.RateLimits != nil {
		return d.Err("rate_limit is given twice; put every limit in one rate_limit block")
	}
	g.RateLimits = new(RateLimits)
	if d.NextArg() {
		if d.Val() != "off" {
			return d.Errf("rate_limit takes no argument but off, got %q; limits go in its block", d.Val())
		}
		if d.NextArg() {
			return d.Errf("rate_limit off takes nothing more, got %q", d.Val())
		}
		g.RateLimits.Off = true
		if d.NextBlock(d.Nesting()) {
			return d.Err("rate_limit off takes no block")
		}
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		target := map[string]*string{
			"register":             &g.RateLimits.Register,
			"authorize":            &g.RateLimits.Authorize,
			"token":                &g.RateLimits.Token,
			"client_auth_failures": &g.RateLimits.ClientAuthFailures,
		}[d.Val()]
		if target == nil {
			return d.Errf("unrecognized rate limit %q (expected register, authorize, token or client_auth_failures)", d.Val())
		}
		record(d.Val(), d)
		if err := oneArg(d, target); err != nil {
			return err
		}
	}
	return nil
}

func unmarshalGateway(d *caddyfile.Dispenser, record func(string, *caddyfile.Dispenser)) (*Gateway, error) {
	gw := new(Gateway)
	record("", d)
	if !d.NextArg() {
		return nil, d.Err("gateway needs a name: gateway <name> { ... }")
	}
	gw.Name = d.Val()
	if d.NextArg() {
		return nil, d.Errf("gateway %q: unexpected argument %q; settings go in its block", gw.Name, d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		if field := jsonField[d.Val()]; field != "" {
			record(field, d)
		}
		if d.Val() == "client" {
			record(fmt.Sprintf("clients/%d", len(gw.Clients)), d)
		}
		switch d.Val() {
		case "authorization_server":
			err = oneArg(d, &gw.AuthorizationServer)
		case "client_id":
			err = oneArg(d, &gw.ClientID)
		case "client_secret":
			err = oneArg(d, &gw.ClientSecret)
		case "resource", "audience":
			err = oneArg(d, &gw.Resource)
		case "scopes":
			gw.Scopes, err = someArgs(d)
		case "identity":
			gw.Identity, err = unmarshalIdentity(d)
		case "encryption_key":
			var keys []string
			keys, err = someArgs(d)
			if err == nil {
				gw.EncryptionKey, gw.PreviousEncryptionKeys = keys[0], keys[1:]
			}
		case "allow_private_metadata_documents":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			gw.AllowPrivateMetadataDocuments = true
		case "client":
			var c *ClientConfig
			c, err = unmarshalClient(d)
			if err == nil {
				gw.Clients = append(gw.Clients, c)
			}
		case "server":
			return nil, d.Errf("gateway %q: server blocks go beside gateway blocks, not inside them (server <name> <path> { gateway %s ... })", gw.Name, gw.Name)
		default:
			return nil, d.Errf("gateway %q: unrecognized option %q", gw.Name, d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return gw, nil
}

// unmarshalIdentity parses: identity [id_token|userinfo] [claim <name>] or
// the shorthand identity claim <name>.
func unmarshalIdentity(d *caddyfile.Dispenser) (*IdentityRule, error) {
	rule := new(IdentityRule)
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Err("identity needs a source and/or a claim: identity [id_token|userinfo] [claim <name>]")
	}
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "id_token", "userinfo":
			if rule.Source != "" {
				return nil, d.Errf("identity: source given twice (%q and %q)", rule.Source, args[i])
			}
			rule.Source = args[i]
		case "claim":
			if i+1 >= len(args) {
				return nil, d.Err("identity: claim needs a name, e.g. identity claim sub")
			}
			i++
			rule.Claim = args[i]
		default:
			return nil, d.Errf("identity: unknown word %q (expected id_token, userinfo or claim <name>)", args[i])
		}
	}
	return rule, nil
}

func unmarshalClient(d *caddyfile.Dispenser) (*ClientConfig, error) {
	c := new(ClientConfig)
	if !d.NextArg() {
		return nil, d.Err("client needs a client ID: client <id> { redirect_uris ... }")
	}
	c.ID = d.Val()
	if d.NextArg() {
		return nil, d.Errf("client %q: unexpected argument %q", c.ID, d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "secret":
			err = oneArg(d, &c.Secret)
		case "name":
			err = oneArg(d, &c.Name)
		case "redirect_uris", "redirect_uri":
			c.RedirectURIs, err = someArgs(d)
		case "servers":
			c.Servers, err = someArgs(d)
		default:
			return nil, d.Errf("client %q: unrecognized option %q", c.ID, d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

func unmarshalServer(h httpcaddyfile.Helper, record func(string, *caddyfile.Dispenser)) (*Server, error) {
	d := h.Dispenser
	srv := new(Server)
	record("", d)
	args := d.RemainingArgs()
	if len(args) != 2 {
		return nil, d.Errf("server needs a name and a path: server <name> <path> { ... }, got %d argument(s)", len(args))
	}
	srv.Name, srv.Path = args[0], args[1]
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		if field := jsonField[d.Val()]; field != "" {
			record(field, d)
		}
		switch word := d.Val(); word {
		case "gateway":
			err = oneArg(d, &srv.Gateway)
		case "scopes":
			srv.Scopes, err = someArgs(d)
		case "strict_scopes":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			srv.StrictScopes = true
		case "reverse_proxy":
			if srv.UpstreamRaw != nil {
				return nil, d.Errf("server %q: only one reverse_proxy per server (list several upstreams in it for load balancing)", srv.Name)
			}
			segment := d.NewFromNextSegment()
			rp := new(reverseproxy.Handler)
			if err := rp.UnmarshalCaddyfile(segment); err != nil {
				return nil, err
			}
			if err := rp.FinalizeUnmarshalCaddyfile(h.WithDispenser(segment)); err != nil {
				return nil, err
			}
			srv.UpstreamRaw = caddyconfig.JSONModuleObject(rp, "handler", "reverse_proxy", nil)
		default:
			if item, ok := boundaryItems[word]; ok {
				return nil, d.Errf("server %q cannot set %s: the %s is part of the gateway's auth boundary, shared by every server attached to it. "+
					"A server that needs a different %s needs a second gateway: declare `gateway <other> { ... }` and put `gateway <other>` in this server's block",
					srv.Name, word, item, item)
			}
			return nil, d.Errf("server %q: unrecognized option %q", srv.Name, word)
		}
		if err != nil {
			return nil, err
		}
	}
	return srv, nil
}

func oneArg(d *caddyfile.Dispenser, target *string) error {
	name := d.Val()
	if !d.NextArg() {
		return d.Errf("%s needs a value", name)
	}
	*target = d.Val()
	if d.NextArg() {
		return d.Errf("%s takes one value, got another: %q", name, d.Val())
	}
	return nil
}

func someArgs(d *caddyfile.Dispenser) ([]string, error) {
	name := d.Val()
	var vals []string
	for d.NextArg() {
		// A quoted "a b" counts as two values, like the unquoted form.
		vals = append(vals, strings.Fields(d.Val())...)
	}
	if len(vals) == 0 {
		return nil, d.Errf("%s needs at least one value", name)
	}
	return vals, nil
}
