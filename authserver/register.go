package authserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

// clientMetadata is the client metadata of RFC 7591 §2 that the gateway
// understands; it is also the shape of a client ID metadata document.
type clientMetadata struct {
	ClientID                string   `json:"client_id,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
}

// registrationResponse is RFC 7591 §3.2.1.
type registrationResponse struct {
	clientMetadata
	ClientSecret          string `json:"client_secret,omitempty"`
	ClientIDIssuedAt      int64  `json:"client_id_issued_at"`
	ClientSecretExpiresAt *int64 `json:"client_secret_expires_at,omitempty"`
}

const maxNameBytes = 200

// serveRegister handles dynamic client registration (RFC 7591). Registered
// clients are kept in storage, so a client ID survives restarts and reloads.
func (e *Edge) serveRegister(w http.ResponseWriter, r *http.Request, s *Server) {
	if allowCORS(w, r, "POST, OPTIONS") || !requireMethod(w, r, http.MethodPost) {
		return
	}
	if t := take(e.limits.register, e.clientAddress(r), "registration"); t != nil {
		e.refuseTooMany(w, r, s, "", t, false)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		writeOAuthError(w, &oauthError{Status: http.StatusRequestEntityTooLarge, Code: "invalid_client_metadata", Description: "the registration request is larger than 64 KiB"})
		return
	}
	md, err := parseClientMetadata(body)
	if err != nil {
		writeOAuthError(w, registrationError(err))
		return
	}
	if md.TokenEndpointAuthMethod == "" {
		md.TokenEndpointAuthMethod = "client_secret_basic" // RFC 7591 §2 default
	}
	client, err := md.toClient(grants.SourceRegistered)
	if err != nil {
		writeOAuthError(w, registrationError(err))
		return
	}
	client.ID = "mcp_" + randomToken()[:32]
	client.CreatedAt = e.opts.Now()
	var secret string
	if client.TokenEndpointAuthMethod != "none" {
		secret = randomToken()
		client.SecretHash = grants.HashSecret(secret)
	}
	if err := s.Gateway().Ledger.SaveClient(r.Context(), client); err != nil {
		e.log.Error("saving a registered client", zap.String("gateway", s.Gateway().Name), zap.Error(err))
		writeOAuthError(w, errServer("the gateway's storage is unavailable; retry"))
		return
	}
	e.audit("client registered", s, client.ID, "", client.Scope, zap.String("client_name", client.Name))
	resp := registrationResponse{clientMetadata: *md, ClientSecret: secret, ClientIDIssuedAt: client.CreatedAt.Unix()}
	resp.ClientID = client.ID
	resp.GrantTypes, resp.ResponseTypes = client.GrantTypes, client.ResponseTypes
	if secret != "" {
		never := int64(0)
		resp.ClientSecretExpiresAt = &never
	}
	writeJSON(w, http.StatusCreated, resp)
}

// metadataError is a client-metadata problem, reported as
// invalid_client_metadata or invalid_redirect_uri.
type metadataError struct {
	code string
	msg  string
}

func (e *metadataError) Error() string { return e.msg }

func registrationError(err error) *oauthError {
	var me *metadataError
	if errors.As(err, &me) {
		return &oauthError{Status: http.StatusBadRequest, Code: me.code, Description: me.msg}
	}
	return &oauthError{Status: http.StatusBadRequest, Code: "invalid_client_metadata", Description: err.Error()}
}

func badMetadata(format string, args ...any) error {
	return &metadataError{"invalid_client_metadata", fmt.Sprintf(format, args...)}
}

// parseClientMetadata decodes client metadata strictly: one JSON object, no
// duplicate members (a duplicate could make two readers disagree), no
// trailing data.
func parseClientMetadata(body []byte) (*clientMetadata, error) {
	if !utf8.Valid(body) {
		return nil, badMetadata("the client metadata is not valid UTF-8")
	}
	if err := rejectDuplicateKeys(body); err != nil {
		return nil, err
	}
	var md clientMetadata
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&md); err != nil {
		return nil, badMetadata("the client metadata is not a JSON object of the expected shape: %v", err)
	}
	if dec.More() {
		return nil, badMetadata("the client metadata has data after its JSON object")
	}
	return &md, nil
}

// rejectDuplicateKeys walks the top-level object and refuses repeated keys.
func rejectDuplicateKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return badMetadata("the client metadata must be a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return badMetadata("the client metadata is not valid JSON: %v", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return badMetadata("the client metadata repeats the member %q", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return badMetadata("the client metadata is not valid JSON: %v", err)
		}
	}
	return nil
}

// toClient validates the metadata and turns it into a client record.
func (md *clientMetadata) toClient(source string) (*grants.Client, error) {
	if len(md.RedirectURIs) == 0 {
		return nil, &metadataError{"invalid_redirect_uri", errNoRedirectURIs.Error()}
	}
	if len(md.RedirectURIs) > maxRedirectURIs {
		return nil, &metadataError{"invalid_redirect_uri", fmt.Sprintf("at most %d redirect URIs may be registered", maxRedirectURIs)}
	}
	for _, u := range md.RedirectURIs {
		if err := ValidateRedirectURI(u); err != nil {
			return nil, &metadataError{"invalid_redirect_uri", err.Error()}
		}
	}
	if len(md.ClientName) > maxNameBytes {
		return nil, badMetadata("client_name is longer than %d bytes", maxNameBytes)
	}
	for _, field := range []struct{ name, val string }{{"logo_uri", md.LogoURI}, {"client_uri", md.ClientURI}} {
		if field.val == "" {
			continue
		}
		if len(field.val) > maxRedirectURIBytes || !strings.HasPrefix(field.val, "https://") {
			return nil, badMetadata("%s must be an https URL of at most %d bytes", field.name, maxRedirectURIBytes)
		}
	}
	if len(md.GrantTypes) == 0 {
		md.GrantTypes = []string{"authorization_code", "refresh_token"}
	}
	for _, gt := range md.GrantTypes {
		if gt != "authorization_code" && gt != "refresh_token" {
			return nil, badMetadata("grant type %q is not supported; use authorization_code and refresh_token", gt)
		}
	}
	if len(md.ResponseTypes) == 0 {
		md.ResponseTypes = []string{"code"}
	}
	for _, rt := range md.ResponseTypes {
		if rt != "code" {
			return nil, badMetadata("response type %q is not supported; use code", rt)
		}
	}
	if md.TokenEndpointAuthMethod == "" {
		md.TokenEndpointAuthMethod = "none"
	}
	if !contains(clientAuthMethods, md.TokenEndpointAuthMethod) {
		return nil, badMetadata("token_endpoint_auth_method %q is not supported; use none, client_secret_basic or client_secret_post", md.TokenEndpointAuthMethod)
	}
	if md.Scope != "" {
		if _, err := scopes.Parse(md.Scope); err != nil {
			return nil, badMetadata("scope: %v", err)
		}
	}
	return &grants.Client{
		ID:                      md.ClientID,
		Name:                    md.ClientName,
		LogoURI:                 md.LogoURI,
		ClientURI:               md.ClientURI,
		RedirectURIs:            md.RedirectURIs,
		GrantTypes:              md.GrantTypes,
		ResponseTypes:           md.ResponseTypes,
		TokenEndpointAuthMethod: md.TokenEndpointAuthMethod,
		Scope:                   md.Scope,
		Source:                  source,
	}, nil
}

// clientError says why a client ID could not be resolved, in words fit for
// the error page.
type clientError struct {
	msg string
	// unavailable means storage failed: the client may well exist, so the
	// answer is 503, not "unknown client".
	unavailable bool
}

func (e *clientError) Error() string { return e.msg }

// storageUnavailable reports whether err is a client lookup that failed
// because storage did not answer.
func storageUnavailable(err error) bool {
	var ce *clientError
	return errors.As(err, &ce) && ce.unavailable
}

// lookupClient resolves a client ID in the order the MCP specification
// gives: pre-registered in the config, then a client ID metadata document (a
// URL client ID), then dynamic registration.
func (e *Edge) lookupClient(ctx context.Context, g *Gateway, id string) (*grants.Client, error) {
	if c, ok := g.Clients[id]; ok {
		return c, nil
	}
	if isMetadataDocumentURL(id) {
		c, err := g.MetadataDocuments.Client(ctx, id)
		if err != nil {
			// The reason can quote what the document said, which is the
			// client's text and has no place on the gateway's page: it
			// goes to the log only.
			e.log.Info("client ID metadata document refused", zap.String("gateway", g.Name), zap.String("client_id", id[:min(len(id), maxClientIDURLBytes)]), zap.Error(err))
			return nil, &clientError{msg: "The application's client ID is a metadata document URL, but the document could not be used. The gateway's log says why."}
		}
		return c, nil
	}
	c, err := g.Ledger.Client(ctx, id)
	if err != nil {
		if !isNotFound(err) {
			e.log.Error("reading a registered client", zap.String("gateway", g.Name), zap.Error(err))
			return nil, &clientError{"The gateway cannot read its client registrations right now. Try again in a moment.", true}
		}
		return nil, err
	}
	return c, nil
}
