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
//		product_name <name>
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
//			callback <events>/<window>|off
//			client_auth_failures <events>/<window>|off
//		}
//
//		gateway <name> {
//			authorization_server <issuer url>
//			authorization_endpoint <url>
//			token_endpoint <url>
//			client_id <id>
//			client_secret <secret>
//			client_auth client_secret_basic|client_secret_post|none
//			client_auth private_key_jwt key <pem> [certificate <pem>] [key_id <kid>] [assertion_audience token_endpoint|issuer|<url>]
//			resource <downstream resource>
//			audience <downstream audience>
//			resource_parameter resource|audience|none
//			authorization_params <name> <value> [<name> <value>...]
//			scopes <scope...>
//			scope_map <scope> <downstream scope...>
//			scope_map {
//				<scope> <downstream scope...>
//			}
//			login_scopes <scope...>|none
//			per_server_tokens refresh|token_exchange|off [fallback full_token|refuse]
//			identity [id_token|userinfo [<endpoint url>]] [claim <name>]
//			encryption_key <secret> [<previous secret>...]
//			allow_private_metadata_documents
//			trusted_client_hosts <host...>
//			scope_description <scope> <text>
//			client <id> {
//				secret <secret>
//				public_key <pem>
//				jwks_uri <url>
//				name <display name>
//				redirect_uris <uri...>
//				servers <server name...>
//				client_credentials [{
//					scopes <scope...>
//					as_user <user>
//					downstream_client <client id> <secret>
//				}]
//			}
//		}
//
//		server <name> <path> {
//			gateway <name>
//			scopes <scope...>
//			strict_scopes
//			tool <name> <scope...>
//			resource <uri prefix> <scope...>
//			prompt <name> <scope...>
//			filter_lists off
//			max_call_body <size>
//			unchecked_methods <method...>
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
	"authorization_server":   "authorization_server",
	"authorization_endpoint": "authorization_endpoint",
	"token_endpoint":         "token_endpoint",
	"client_id":              "client_id",
	"client_secret":          "client_secret",
	"client_auth":            "client_auth",
	"resource":               "resource",
	"audience":               "resource",
	"resource_parameter":     "resource_parameter",
	"authorization_params":   "authorization_params",
	"scopes":                 "scopes",
	"scope_map":              "scope_map",
	"login_scopes":           "login_scopes",
	"per_server_tokens":      "per_server_tokens",
	"identity":               "identity",
	"encryption_key":         "encryption_key",
	"trusted_client_hosts":   "trusted_client_hosts",
	"gateway":                "gateway",
	"reverse_proxy":          "upstream",
}

// boundaryItems are the settings that make up a gateway's auth boundary. A
// server block that sets one is refused with a pointer to the fix.
var boundaryItems = map[string]string{
	"authorization_server":   "authorization server",
	"authorization_endpoint": "authorization server",
	"token_endpoint":         "authorization server",
	"authorization_params":   "authorization server",
	"client_id":              "downstream client ID",
	"client_secret":          "downstream client ID",
	"client_auth":            "downstream client ID",
	"resource":               "resource or audience",
	"audience":               "resource or audience",
	"resource_parameter":     "resource or audience",
	"scope_map":              "downstream scope mapping",
	"login_scopes":           "downstream scope mapping",
	"identity":               "identity resolution rule",
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
		case "product_name":
			at["product_name"] = position(d)
			if err := oneArg(d, &g.ProductName); err != nil {
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
			return d.Errf("unrecognized mcp_gateway option %q (expected public_url, product_name, gateway, server, rate_limit or a lifetime)", d.Val())
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
			"callback":             &g.RateLimits.Callback,
			"client_auth_failures": &g.RateLimits.ClientAuthFailures,
		}[d.Val()]
		if target == nil {
			return d.Errf("unrecognized rate limit %q (expected register, authorize, token, callback or client_auth_failures)", d.Val())
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
		switch d.Val() {
		case "client":
			record(fmt.Sprintf("clients/%d", len(gw.Clients)), d)
		case "enterprise_idp":
			record(fmt.Sprintf("enterprise_idps/%d", len(gw.EnterpriseIdPs)), d)
		}
		switch d.Val() {
		case "authorization_server":
			err = oneArg(d, &gw.AuthorizationServer)
		case "authorization_endpoint":
			err = oneArg(d, &gw.AuthorizationEndpoint)
		case "token_endpoint":
			err = oneArg(d, &gw.TokenEndpoint)
		case "client_id":
			err = oneArg(d, &gw.ClientID)
		case "client_secret":
			err = oneArg(d, &gw.ClientSecret)
		case "client_auth":
			gw.ClientAuth, err = unmarshalClientAuth(d)
		case "resource":
			err = oneArg(d, &gw.Resource)
		case "audience":
			// The audience of Auth0 and the like: sent as an audience
			// parameter, not as an RFC 8707 resource.
			record("resource_parameter", d)
			err = oneArg(d, &gw.Resource)
			gw.ResourceParameter = "audience"
		case "resource_parameter":
			err = oneArg(d, &gw.ResourceParameter)
		case "authorization_params":
			err = unmarshalParams(d, gw)
		case "scopes":
			gw.Scopes, err = someArgs(d)
		case "scope_map":
			err = unmarshalScopeMap(d, gw)
		case "login_scopes":
			gw.LoginScopes, err = someArgs(d)
			if err == nil && len(gw.LoginScopes) == 1 && gw.LoginScopes[0] == "none" {
				gw.LoginScopes = []string{}
			}
		case "per_server_tokens":
			gw.PerServerTokens, err = unmarshalPerServerTokens(d)
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
		case "trusted_client_hosts":
			var hosts []string
			hosts, err = someArgs(d)
			for _, host := range hosts {
				// Each on the line that names it, for validation errors.
				record(fmt.Sprintf("trusted_client_hosts/%d", len(gw.TrustedClientHosts)), d)
				gw.TrustedClientHosts = append(gw.TrustedClientHosts, host)
			}
		case "scope_description":
			err = unmarshalScopeDescription(d, gw, record)
		case "client":
			var c *ClientConfig
			c, err = unmarshalClient(d)
			if err == nil {
				gw.Clients = append(gw.Clients, c)
			}
		case "enterprise_idp":
			var idp *EnterpriseIdPConfig
			idp, err = unmarshalEnterpriseIdP(d)
			if err == nil {
				gw.EnterpriseIdPs = append(gw.EnterpriseIdPs, idp)
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

// unmarshalIdentity parses: identity [id_token|userinfo [<endpoint url>]]
// [claim <name>] or the shorthand identity claim <name>.
func unmarshalIdentity(d *caddyfile.Dispenser) (*IdentityRule, error) {
	rule := new(IdentityRule)
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Err("identity needs a source and/or a claim: identity [id_token|userinfo [<endpoint url>]] [claim <name>]")
	}
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "id_token", "userinfo":
			if rule.Source != "" {
				return nil, d.Errf("identity: source given twice (%q and %q)", rule.Source, args[i])
			}
			rule.Source = args[i]
			if args[i] == "userinfo" && i+1 < len(args) && args[i+1] != "claim" && args[i+1] != "id_token" {
				i++
				rule.Endpoint = args[i]
			}
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

// unmarshalClientAuth parses: client_auth <method> [key <pem>]
// [certificate <pem>] [key_id <kid>] [assertion_audience <aud>], the
// options also allowed one per line in a block.
func unmarshalClientAuth(d *caddyfile.Dispenser) (*ClientAuth, error) {
	if !d.NextArg() {
		return nil, d.Err("client_auth needs a method: client_secret_basic, client_secret_post, private_key_jwt or none")
	}
	ca := &ClientAuth{Method: d.Val()}
	option := func(name string, value func() (string, bool)) error {
		target := map[string]*string{
			"key":                &ca.PrivateKey,
			"certificate":        &ca.Certificate,
			"key_id":             &ca.KeyID,
			"assertion_audience": &ca.AssertionAudience,
		}[name]
		if target == nil {
			return d.Errf("client_auth: unknown option %q (expected key, certificate, key_id or assertion_audience)", name)
		}
		v, ok := value()
		if !ok {
			return d.Errf("client_auth: %s needs a value", name)
		}
		*target = v
		return nil
	}
	args := d.RemainingArgs()
	for i := 0; i < len(args); i++ {
		err := option(args[i], func() (string, bool) {
			if i+1 >= len(args) {
				return "", false
			}
			i++
			return args[i], true
		})
		if err != nil {
			return nil, err
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		var val string
		if err := oneArg(d, &val); err != nil {
			return nil, err
		}
		if err := option(name, func() (string, bool) { return val, true }); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// unmarshalParams parses: authorization_params <name> <value> [...].
func unmarshalParams(d *caddyfile.Dispenser, gw *Gateway) error {
	args := d.RemainingArgs()
	if len(args) == 0 || len(args)%2 != 0 {
		return d.Errf("authorization_params takes names and values in pairs, e.g. authorization_params prompt consent; got %d word(s)", len(args))
	}
	if gw.AuthorizationParams == nil {
		gw.AuthorizationParams = map[string]string{}
	}
	for i := 0; i < len(args); i += 2 {
		if _, dup := gw.AuthorizationParams[args[i]]; dup {
			return d.Errf("authorization_params: %q is given twice", args[i])
		}
		gw.AuthorizationParams[args[i]] = args[i+1]
	}
	return nil
}

// unmarshalScopeDescription parses: scope_description <scope> <text>.
func unmarshalScopeDescription(d *caddyfile.Dispenser, gw *Gateway, record func(string, *caddyfile.Dispenser)) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.Errf("scope_description needs a scope and its text in quotes, e.g. scope_description tickets.read \"Read your support tickets\"")
	}
	if _, dup := gw.ScopeDescriptions[args[0]]; dup {
		return d.Errf("scope_description: scope %q is described twice", args[0])
	}
	if gw.ScopeDescriptions == nil {
		gw.ScopeDescriptions = map[string]string{}
	}
	record("scope_descriptions/"+args[0], d)
	gw.ScopeDescriptions[args[0]] = args[1]
	return nil
}

// unmarshalScopeMap parses: scope_map <scope> <downstream scope...>, or a
// block of such lines.
func unmarshalScopeMap(d *caddyfile.Dispenser, gw *Gateway) error {
	if gw.ScopeMap == nil {
		gw.ScopeMap = map[string][]string{}
	}
	add := func(words []string) error {
		if len(words) < 2 {
			return d.Errf("scope_map needs a gateway scope and its downstream scope(s), e.g. scope_map tickets.read api://acme/tickets.read")
		}
		if _, dup := gw.ScopeMap[words[0]]; dup {
			return d.Errf("scope_map: scope %q is mapped twice; list all its downstream scopes on one line", words[0])
		}
		for _, w := range words[1:] {
			gw.ScopeMap[words[0]] = append(gw.ScopeMap[words[0]], strings.Fields(w)...)
		}
		return nil
	}
	lines := 0
	if args := d.RemainingArgs(); len(args) > 0 {
		if err := add(args); err != nil {
			return err
		}
		lines++
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := add(append([]string{d.Val()}, d.RemainingArgs()...)); err != nil {
			return err
		}
		lines++
	}
	if lines == 0 {
		return d.Err("scope_map needs a gateway scope and its downstream scope(s), on its line or in its block")
	}
	return nil
}

// unmarshalPerServerTokens parses: per_server_tokens
// refresh|token_exchange|off [fallback full_token|refuse].
func unmarshalPerServerTokens(d *caddyfile.Dispenser) (*PerServerTokens, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Err("per_server_tokens needs a mode: refresh, token_exchange or off, e.g. per_server_tokens refresh fallback refuse")
	}
	p := &PerServerTokens{Mode: args[0]}
	switch rest := args[1:]; {
	case len(rest) == 0:
	case len(rest) == 2 && rest[0] == "fallback":
		p.Fallback = rest[1]
	default:
		return nil, d.Errf("per_server_tokens: unexpected %q; the syntax is per_server_tokens refresh|token_exchange|off [fallback full_token|refuse]", strings.Join(rest, " "))
	}
	return p, nil
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
		case "public_key":
			err = oneArg(d, &c.PublicKey)
		case "jwks_uri":
			err = oneArg(d, &c.JWKSURI)
		case "client_credentials":
			c.ClientCredentials, err = unmarshalClientCredentials(d, c.ID)
		default:
			return nil, d.Errf("client %q: unrecognized option %q", c.ID, d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// unmarshalClientCredentials parses: client_credentials [{ scopes
// <scope...> as_user <user> downstream_client <client id> <secret> }]
func unmarshalClientCredentials(d *caddyfile.Dispenser, id string) (*ClientCredentials, error) {
	cc := new(ClientCredentials)
	if d.NextArg() {
		return nil, d.Errf("client %q: client_credentials takes no arguments; its settings go in its block", id)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "scopes":
			cc.Scopes, err = someArgs(d)
		case "as_user":
			err = oneArg(d, &cc.AsUser)
		case "downstream_client":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Errf("client %q: downstream_client needs a client ID and a secret: downstream_client <client id> <secret>", id)
			}
			cc.DownstreamClientID, cc.DownstreamClientSecret = args[0], args[1]
		default:
			return nil, d.Errf("client %q: client_credentials: unrecognized option %q (expected scopes, as_user or downstream_client)", id, d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return cc, nil
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
		case "tool", "resource", "prompt":
			// One value is the gateway's downstream resource, set in the
			// wrong block: explain the auth boundary.
			if word == "resource" && d.CountRemainingArgs() == 1 {
				return nil, d.Errf("server %q cannot set resource to one value: the resource or audience is part of the gateway's auth boundary, shared by every server attached to it; "+
					"a server that needs a different one needs a second gateway. To give MCP resources scopes of their own, write resource <uri prefix> <scope...>", srv.Name)
			}
			err = unmarshalCallScope(d, srv, record)
		case "filter_lists":
			err = unmarshalFilterLists(d, srv)
		case "max_call_body":
			err = unmarshalMaxCallBody(d, srv, record)
		case "unchecked_methods":
			err = unmarshalUncheckedMethods(d, srv, record)
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
