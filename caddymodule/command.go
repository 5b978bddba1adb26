package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "mcp-gateway",
		Usage: "<command> [--address <interface>] [--json]",
		Short: "Lists and revokes the MCP gateways' grants, clients and signing keys",
		Long: `
Operates the mcp_gateway handlers of the running Caddy instance through the
routes the plugin adds to its admin API (below /mcp_gateway/): lists the
gateways, the grants users gave to clients and the registered clients,
revokes grants, deletes clients, and lists and rotates signing keys.

The admin endpoint is taken from --address if given; otherwise from the
config given with --config (and --adapter), or the Caddyfile in the current
directory, as 'caddy reload' finds it; otherwise the default localhost:2019.

--gateway names the gateway of the grants and clients commands: its name, or
<name>@<host of its public_url> when several sites run a gateway of that
name. It may be left out when the instance runs a single gateway.

Every command prints a table, or with --json the admin API's JSON as is.
`,
		CobraFunc: mcpGatewayCommand,
	})
}

// mcpGatewayCommand builds `caddy mcp-gateway` and its subcommands.
func mcpGatewayCommand(cmd *cobra.Command) {
	cmd.Example = `  $ caddy mcp-gateway gateways
  $ caddy mcp-gateway grants list --user 248289761001
  $ caddy mcp-gateway grants revoke --client Zr4v0Qk2Jb5nW8yT1cXe7g
  $ caddy mcp-gateway clients list --gateway acme@mcp.example.com --json
  $ caddy mcp-gateway keys rotate acme --address unix//run/caddy/admin.sock`
	cmd.PersistentFlags().String("address", "", "Address of Caddy's admin endpoint, if different from the config")
	cmd.PersistentFlags().StringP("config", "c", "", "Config file to find the admin endpoint's address in")
	cmd.PersistentFlags().StringP("adapter", "a", "", "Name of the config adapter for --config")
	cmd.PersistentFlags().Bool("json", false, "Print the admin API's JSON instead of a table")

	cmd.AddCommand(&cobra.Command{
		Use:   "gateways",
		Short: "Lists the running gateways and their servers",
		Args:  cobra.NoArgs,
		RunE:  run(listGateways),
	})

	grantsCmd := &cobra.Command{
		Use:   "grants",
		Short: "Lists and revokes grants (one per user, client and server)",
	}
	grantsCmd.PersistentFlags().String("gateway", "", "Gateway (default: the only one running)")
	grantsList := &cobra.Command{
		Use:   "list [--user <user>] [--client <client id>] [--server <server>]",
		Short: "Lists grants, every page of them",
		Long: `
Lists the live grants, or with --revoked also the revoked and expired ones,
optionally of one user (the value of the gateway's identity claim), one
client and one server. Every page is fetched, or only the first --limit
grants; with --json a listing cut by --limit ends with the "next" value
that --after continues from.
`,
		Args: cobra.NoArgs,
		RunE: run(listGrants),
	}
	grantsList.Flags().String("user", "", "Only the grants of this user")
	grantsList.Flags().String("client", "", "Only the grants of this client ID")
	grantsList.Flags().String("server", "", "Only the grants for this server")
	grantsList.Flags().Bool("revoked", false, "Include revoked and expired grants")
	grantsList.Flags().Int("limit", 0, "Show at most this many grants (default: all)")
	grantsList.Flags().String("after", "", "Continue a listing after this \"next\" value")
	grantsRevoke := &cobra.Command{
		Use:   "revoke <grant id> | --user <user> | --client <client id>",
		Short: "Revokes a grant, or every grant of a user or a client",
		Long: `
Revokes one grant by its ID, every live grant of a user, every live grant of
a client, or (--user and --client) the user's grants to that client. The
consents they cover are forgotten, so the next authorization asks the user
again. Refresh tokens stop at once, access tokens within seconds on every
instance sharing the storage.
`,
		Args: cobra.MaximumNArgs(1),
		RunE: run(revokeGrants),
	}
	grantsRevoke.Flags().String("user", "", "Revoke every grant of this user")
	grantsRevoke.Flags().String("client", "", "Revoke every grant of this client ID")
	grantsCmd.AddCommand(grantsList, grantsRevoke)
	cmd.AddCommand(grantsCmd)

	clientsCmd := &cobra.Command{
		Use:   "clients",
		Short: "Lists and deletes registered clients",
	}
	clientsCmd.PersistentFlags().String("gateway", "", "Gateway (default: the only one running)")
	clientsCmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "Lists the clients that registered themselves",
		Args:  cobra.NoArgs,
		RunE:  run(listClients),
	}, &cobra.Command{
		Use:   "delete <client id>",
		Short: "Deletes a registered client and revokes its grants",
		Args:  cobra.ExactArgs(1),
		RunE:  run(deleteClient),
	})
	cmd.AddCommand(clientsCmd)

	keysCmd := &cobra.Command{
		Use:   "keys",
		Short: "Lists and rotates a gateway's signing keys",
	}
	keysCmd.AddCommand(&cobra.Command{
		Use:   "list <gateway>",
		Short: "Lists the public keys that verify access tokens, the signing key first",
		Args:  cobra.ExactArgs(1),
		RunE:  run(listKeys),
	}, &cobra.Command{
		Use:   "rotate <gateway>",
		Short: "Makes a new signing key; tokens signed with the old one keep verifying",
		Args:  cobra.ExactArgs(1),
		RunE:  run(rotateKeys),
	})
	cmd.AddCommand(keysCmd)
}

// operator is one run of a subcommand: its flags and arguments, where it
// prints, and the admin endpoint it asks.
type operator struct {
	fl    caddycmd.Flags
	args  []string
	out   io.Writer
	admin *adminClient
	json  bool
}

// run adapts a subcommand to cobra the way Caddy's own commands are: an
// error goes through Caddy's logger and exits with status 1.
func run(f func(ctx context.Context, op *operator) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			admin, err := newAdminClient(fl.String("address"), fl.String("config"), fl.String("adapter"))
			if err == nil {
				err = f(cmd.Context(), &operator{fl: fl, args: args, out: cmd.OutOrStdout(), admin: admin, json: fl.Bool("json")})
			}
			if err != nil {
				return caddy.ExitCodeFailedStartup, err
			}
			return caddy.ExitCodeSuccess, nil
		})(cmd, args)
	}
}

// adminClient asks Caddy's admin endpoint. It does what
// caddycmd.AdminAPIRequest does, but keeps an endpoint that does not
// answer apart from an answer that is an error: the operator needs to
// know which of the two went wrong.
type adminClient struct {
	addr   string
	origin string
	socket bool // a Unix socket: no Origin header, as Caddy's commands send none
	http   *http.Client
}

// newAdminClient finds the admin endpoint as `caddy reload` does: address,
// else the config file's admin listener, else Caddy's default.
func newAdminClient(address, configFile, adapter string) (*adminClient, error) {
	if address == "" {
		config, file, _, err := caddycmd.LoadConfig(configFile, adapter)
		if err != nil {
			return nil, err
		}
		if address, err = caddycmd.DetermineAdminAPIAddress("", config, file, adapter); err != nil {
			return nil, fmt.Errorf("finding the admin endpoint's address: %v", err)
		}
	}
	parsed, err := caddy.ParseNetworkAddress(address)
	if err != nil {
		return nil, fmt.Errorf("invalid admin address %q: %v", address, err)
	}
	if parsed.PortRangeSize() > 1 {
		return nil, fmt.Errorf("invalid admin address %q: a port range", address)
	}
	network, dial, origin := parsed.Network, parsed.JoinHostPort(0), "http://"+parsed.JoinHostPort(0)
	if parsed.IsUnixNetwork() {
		// Any host will do over a socket; Caddy's admin endpoint accepts
		// this one. The listener's file mode, if given, is not part of the
		// path.
		dial, _, _ = strings.Cut(parsed.Host, "|")
		origin = "http://127.0.0.1"
	}
	// No deadline on the answer: revoking a client's thousands of grants
	// takes what it takes; only an endpoint that never answers the
	// connection is given up on.
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	return &adminClient{addr: address, origin: origin, socket: parsed.IsUnixNetwork(), http: &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, dial)
		}},
	}}, nil
}

// maxAdminAnswer bounds an answer of the admin API read into memory: a page
// of 500 grants is far less.
const maxAdminAnswer = 32 << 20

// do sends method path?query and returns the answer, or its error message
// when it is one.
func (a *adminClient) do(ctx context.Context, method, path string, query url.Values) ([]byte, error) {
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, a.origin+path, nil)
	if err != nil {
		return nil, err
	}
	if !a.socket {
		req.Header.Set("Origin", a.origin)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // not the URL made up for a socket
		}
		return nil, fmt.Errorf("cannot reach Caddy's admin API at %s: is Caddy running? use --address to name its admin endpoint (%v)", a.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of Caddy's admin API at %s: %v", a.addr, err)
	}
	if resp.StatusCode < 300 {
		return body, nil
	}
	var answer struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &answer) == nil && answer.Error != "" {
		return nil, &adminAnswerError{status: resp.StatusCode, message: answer.Error}
	}
	if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(path, "/mcp_gateway/") {
		return nil, fmt.Errorf("the Caddy at %s has no /mcp_gateway/ admin routes: it runs a build without this plugin", a.addr)
	}
	return nil, &adminAnswerError{status: resp.StatusCode, message: strings.TrimSpace(string(body))}
}

// adminAnswerError is an error the admin API answered.
type adminAnswerError struct {
	status  int
	message string
}

func (e *adminAnswerError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.message, e.status)
}

// get decodes the answer to GET path?query into v, and returns it as is.
func (a *adminClient) get(ctx context.Context, path string, query url.Values, v any) ([]byte, error) {
	body, err := a.do(ctx, http.MethodGet, path, query)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("the admin API at %s answered %s with what is not the expected JSON: %v", a.addr, path, err)
	}
	return body, nil
}

// gatewaysPath is the admin API's collection of gateways.
const gatewaysPath = "/mcp_gateway/gateways"

// gatewayPath is the admin API's path of gateway ref's collection, e.g.
// grants, with the elements of id appended.
func gatewayPath(ref, collection string, id ...string) string {
	p := gatewaysPath + "/" + url.PathEscape(ref) + "/" + collection
	for _, s := range id {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// gateways lists the running gateways, each once: two configs serving one
// gateway during a reload list it twice.
func (op *operator) gateways(ctx context.Context) ([]gatewayInventory, []byte, error) {
	var all []gatewayInventory
	body, err := op.admin.get(ctx, gatewaysPath, nil, &all)
	if err != nil {
		return nil, nil, err
	}
	var out []gatewayInventory
	seen := map[string]bool{}
	for _, g := range all {
		if key := g.QualifiedName + "\x00" + g.Storage; !seen[key] {
			seen[key] = true
			out = append(out, g)
		}
	}
	return out, body, nil
}

// gatewayRefs names each gateway as the admin API's paths accept it: by
// its name, or its qualified name when several share the name.
func gatewayRefs(list []gatewayInventory) []string {
	count := map[string]int{}
	for _, g := range list {
		count[g.Name]++
	}
	refs := make([]string, len(list))
	for i, g := range list {
		refs[i] = g.Name
		if count[g.Name] > 1 {
			refs[i] = g.QualifiedName
		}
	}
	return refs
}

// gateway is the gateway the --gateway flag names, or the only one
// running.
func (op *operator) gateway(ctx context.Context) (string, error) {
	if ref := op.fl.String("gateway"); ref != "" {
		return ref, nil
	}
	list, _, err := op.gateways(ctx)
	if err != nil {
		return "", err
	}
	refs := gatewayRefs(list)
	switch len(refs) {
	case 1:
		return refs[0], nil
	case 0:
		return "", fmt.Errorf("the Caddy at %s runs no MCP gateway", op.admin.addr)
	}
	return "", fmt.Errorf("%d gateways are running (%s): name one with --gateway", len(refs), strings.Join(refs, ", "))
}

func listGateways(ctx context.Context, op *operator) error {
	list, body, err := op.gateways(ctx)
	if err != nil || op.json {
		return op.raw(body, err)
	}
	if len(list) == 0 {
		_, err := fmt.Fprintln(op.out, "No MCP gateway is running.")
		return err
	}
	refs := gatewayRefs(list)
	t := op.table("GATEWAY", "PUBLIC URL", "SERVER", "PATH", "SCOPES")
	for i, g := range list {
		ref := refs[i]
		if len(g.Servers) == 0 {
			t.row(ref, g.PublicURL, "-", "-", g.Scopes)
		}
		for j, s := range g.Servers {
			if j > 0 {
				ref, g.PublicURL = "", ""
			}
			t.row(ref, g.PublicURL, s.Name, s.Path, s.Scopes)
		}
	}
	return t.flush()
}

func listGrants(ctx context.Context, op *operator) error {
	gw, err := op.gateway(ctx)
	if err != nil {
		return err
	}
	limit := op.fl.Int("limit")
	if limit < 0 {
		return errors.New("--limit must be positive")
	}
	query := url.Values{}
	for flag, param := range map[string]string{"user": "user", "client": "client_id", "server": "server"} {
		if v := op.fl.String(flag); v != "" {
			query.Set(param, v)
		}
	}
	if op.fl.Bool("revoked") {
		query.Set("revoked", "true")
	}
	// Every page, or the first limit grants: as the admin API pages them,
	// with the grants passed on unchanged.
	var listing struct {
		Grants []json.RawMessage `json:"grants"`
		Next   string            `json:"next,omitempty"`
	}
	listing.Grants = []json.RawMessage{}
	after := op.fl.String("after")
	for {
		page := adminPageLimit
		if limit > 0 {
			page = min(page, limit-len(listing.Grants))
		}
		query.Set("limit", strconv.Itoa(page))
		if after != "" {
			query.Set("after", after)
		}
		var answer struct {
			Grants []json.RawMessage `json:"grants"`
			Next   string            `json:"next"`
		}
		if _, err := op.admin.get(ctx, gatewayPath(gw, "grants"), query, &answer); err != nil {
			return err
		}
		listing.Grants = append(listing.Grants, answer.Grants...)
		after, listing.Next = answer.Next, answer.Next
		if after == "" || limit > 0 && len(listing.Grants) >= limit {
			break
		}
	}
	if op.json {
		return json.NewEncoder(op.out).Encode(listing)
	}
	if len(listing.Grants) == 0 {
		_, err := fmt.Fprintln(op.out, "No grants.")
		return err
	}
	columns := []string{"GRANT", "USER", "CLIENT", "SERVER", "SCOPES", "CREATED", "LAST USED", "EXPIRES"}
	if op.fl.Bool("revoked") {
		columns = append(columns, "REVOKED")
	}
	t := op.table(columns...)
	for _, raw := range listing.Grants {
		var g grantView
		if err := json.Unmarshal(raw, &g); err != nil {
			return fmt.Errorf("the admin API listed a grant that is not the expected JSON: %v", err)
		}
		row := []string{g.ID, g.User, g.ClientID, g.Server, g.Scopes, when(g.CreatedAt), when(g.LastUsedAt), when(g.ExpiresAt)}
		if op.fl.Bool("revoked") {
			revoked := "-"
			if g.Revoked {
				revoked = g.RevokedReason
			}
			row = append(row, revoked)
		}
		t.row(row...)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if listing.Next != "" {
		_, err = fmt.Fprintf(op.out, "More grants follow: raise --limit, or continue with --after %s\n", listing.Next)
	}
	return err
}

func revokeGrants(ctx context.Context, op *operator) error {
	user, client := op.fl.String("user"), op.fl.String("client")
	var id string
	query := url.Values{}
	switch {
	case len(op.args) == 1 && user == "" && client == "":
		id = op.args[0]
	case len(op.args) == 0 && (user != "" || client != ""):
		if user != "" {
			query.Set("user", user)
		}
		if client != "" {
			query.Set("client_id", client)
		}
	default:
		return errors.New("name the grants to revoke: a grant ID, or --user and/or --client")
	}
	gw, err := op.gateway(ctx)
	if err != nil {
		return err
	}
	p := gatewayPath(gw, "grants")
	if id != "" {
		p = gatewayPath(gw, "grants", id)
	}
	body, err := op.admin.do(ctx, http.MethodDelete, p, query)
	if err != nil || op.json {
		return op.raw(body, err)
	}
	var answer struct {
		Revoked           []string `json:"revoked"`
		ConsentsForgotten int      `json:"consents_forgotten"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("the admin API answered the revocation with what is not the expected JSON: %v", err)
	}
	if _, err := fmt.Fprintf(op.out, "Revoked %s and forgot %s.\n", count(len(answer.Revoked), "grant"), count(answer.ConsentsForgotten, "consent")); err != nil {
		return err
	}
	return op.list(answer.Revoked)
}

func listClients(ctx context.Context, op *operator) error {
	gw, err := op.gateway(ctx)
	if err != nil {
		return err
	}
	var answer struct {
		Clients []clientView `json:"clients"`
	}
	body, err := op.admin.get(ctx, gatewayPath(gw, "clients"), nil, &answer)
	if err != nil || op.json {
		return op.raw(body, err)
	}
	if len(answer.Clients) == 0 {
		_, err := fmt.Fprintln(op.out, "No registered clients.")
		return err
	}
	t := op.table("CLIENT", "NAME", "AUTH METHOD", "CREATED", "REDIRECT URIS")
	for _, c := range answer.Clients {
		t.row(c.ID, orDash(c.Name), c.AuthMethod, when(c.CreatedAt), strings.Join(c.RedirectURIs, " "))
	}
	return t.flush()
}

func deleteClient(ctx context.Context, op *operator) error {
	gw, err := op.gateway(ctx)
	if err != nil {
		return err
	}
	body, err := op.admin.do(ctx, http.MethodDelete, gatewayPath(gw, "clients", op.args[0]), nil)
	if err != nil || op.json {
		return op.raw(body, err)
	}
	var answer struct {
		Deleted string   `json:"deleted"`
		Revoked []string `json:"revoked"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("the admin API answered the deletion with what is not the expected JSON: %v", err)
	}
	if _, err := fmt.Fprintf(op.out, "Deleted client %s and revoked its %s.\n", answer.Deleted, count(len(answer.Revoked), "grant")); err != nil {
		return err
	}
	return op.list(answer.Revoked)
}

func listKeys(ctx context.Context, op *operator) error {
	var answer keysView
	body, err := op.admin.get(ctx, gatewayPath(op.args[0], "keys"), nil, &answer)
	if err != nil || op.json {
		return op.raw(body, err)
	}
	return op.keys(answer.Keys)
}

func rotateKeys(ctx context.Context, op *operator) error {
	body, err := op.admin.do(ctx, http.MethodPost, gatewayPath(op.args[0], "keys", "rotate"), nil)
	if err != nil || op.json {
		return op.raw(body, err)
	}
	var answer keysView
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("the admin API answered the rotation with what is not the expected JSON: %v", err)
	}
	if _, err := fmt.Fprintf(op.out, "Signing with the new key %s; the keys before it verify until they retire.\n", answer.Kid); err != nil {
		return err
	}
	return op.keys(answer.Keys)
}

func (op *operator) keys(keys []keyView) error {
	t := op.table("KID", "CREATED", "RETIRES", "SIGNING")
	for _, k := range keys {
		signing := "-"
		if k.Signing {
			signing = "yes"
		}
		t.row(k.Kid, when(k.Created), when(k.RetireAt), signing)
	}
	return t.flush()
}

// raw prints the admin API's answer as is, or returns err.
func (op *operator) raw(body []byte, err error) error {
	if err != nil {
		return err
	}
	_, err = op.out.Write(body)
	return err
}

// list prints ids one a line, indented.
func (op *operator) list(ids []string) error {
	for _, id := range ids {
		if _, err := fmt.Fprintf(op.out, "  %s\n", id); err != nil {
			return err
		}
	}
	return nil
}

// table is an aligned table with a header.
type table struct{ w *tabwriter.Writer }

func (op *operator) table(header ...string) table {
	t := table{tabwriter.NewWriter(op.out, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

// row adds a row. Cells can hold what clients chose (a client's name, its
// redirect URIs): control and formatting characters are shown as U+FFFD,
// so a name cannot break the table's columns or send the operator's
// terminal escape sequences.
func (t table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = strings.Map(func(r rune) rune {
			if unicode.In(r, unicode.Cc, unicode.Cf) {
				return unicode.ReplacementChar
			}
			return r
		}, c)
	}
	fmt.Fprintln(t.w, strings.Join(cells, "\t"))
}

func (t table) flush() error { return t.w.Flush() }

// when is a time of a table: to the minute, in UTC; "-" for none.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04Z07:00")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// count is n things, e.g. "1 grant", "2 grants".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.Itoa(n) + " " + thing + "s"
}
