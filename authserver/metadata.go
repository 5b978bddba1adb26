package authserver

import (
	"net/http"
	"strconv"
)

// resourceMetadata is RFC 9728 protected resource metadata.
type resourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

// authServerMetadata is RFC 8414 authorization server metadata, also served
// at the OpenID discovery locations that MCP clients try.
type authServerMetadata struct {
	Issuer                                 string   `json:"issuer"`
	AuthorizationEndpoint                  string   `json:"authorization_endpoint"`
	TokenEndpoint                          string   `json:"token_endpoint"`
	RegistrationEndpoint                   string   `json:"registration_endpoint"`
	RevocationEndpoint                     string   `json:"revocation_endpoint"`
	JWKSURI                                string   `json:"jwks_uri"`
	ScopesSupported                        []string `json:"scopes_supported"`
	ResponseTypesSupported                 []string `json:"response_types_supported"`
	ResponseModesSupported                 []string `json:"response_modes_supported"`
	GrantTypesSupported                    []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported      []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgsSupported  []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	RevocationEndpointAuthMethodsSupported []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported          []string `json:"code_challenge_methods_supported"`
	ClientIDMetadataDocumentSupported      bool     `json:"client_id_metadata_document_supported"`
	AuthorizationResponseISSSupported      bool     `json:"authorization_response_iss_parameter_supported"`
	ResourceIndicatorsSupported            bool     `json:"resource_indicators_supported"`
}

// AuthPrivateKeyJWT is the client authentication by a signed assertion
// (RFC 7523 §2.2), open to clients of the config with a key.
const AuthPrivateKeyJWT = "private_key_jwt"

var (
	// clientAuthMethods are the methods a client may register with.
	clientAuthMethods = []string{"none", "client_secret_basic", "client_secret_post"}
	// machineAuthMethods are those the token endpoint accepts where the
	// config has machine clients: private_key_jwt as well.
	machineAuthMethods = []string{"none", "client_secret_basic", "client_secret_post", AuthPrivateKeyJWT}
)

// serveResourceMetadata serves /.well-known/oauth-protected-resource<path>.
// The root document is served when there is a single server.
func (e *Edge) serveResourceMetadata(w http.ResponseWriter, r *http.Request, rest string) bool {
	var s *Server
	if rest == "" || rest == "/" {
		if len(e.servers) != 1 {
			return false
		}
		s = e.servers[0]
	} else if s = e.ServerAt(rest); s == nil || rest != s.Path && rest != s.Path+"/" {
		return false
	}
	if allowCORS(w, r, "GET, OPTIONS") || !requireMethod(w, r, http.MethodGet, http.MethodHead) {
		return true
	}
	// offline_access is a client/AS concern, never advertised by the resource.
	writeJSON(w, http.StatusOK, resourceMetadata{
		Resource:               s.Resource,
		AuthorizationServers:   []string{s.Issuer},
		ScopesSupported:        s.Rule.Offered.Tokens(),
		BearerMethodsSupported: []string{"header"},
		ResourceName:           s.Name,
	})
	return true
}

// serveAuthServerMetadata serves the metadata of the issuer whose path is
// issuerPath ("/oauth/<server>"). Its issuer equals the URL the client built
// the metadata URL from, as the MCP specification requires clients to check.
func (e *Edge) serveAuthServerMetadata(w http.ResponseWriter, r *http.Request, issuerPath string) bool {
	s := e.serverForIssuerPath(issuerPath)
	if s == nil && (issuerPath == "" || issuerPath == "/") && len(e.servers) == 1 {
		// A client that lost the issuer path may try the root; with one
		// server the answer is unambiguous (and names the real issuer).
		s = e.servers[0]
	}
	if s == nil {
		return false
	}
	if allowCORS(w, r, "GET, OPTIONS") || !requireMethod(w, r, http.MethodGet, http.MethodHead) {
		return true
	}
	writeJSON(w, http.StatusOK, e.authServerMetadata(s))
	return true
}

func (e *Edge) authServerMetadata(s *Server) *authServerMetadata {
	base := s.Issuer + "/"
	md := &authServerMetadata{
		Issuer:                                 s.Issuer,
		AuthorizationEndpoint:                  base + "authorize",
		TokenEndpoint:                          base + "token",
		RegistrationEndpoint:                   base + "register",
		RevocationEndpoint:                     base + "revoke",
		JWKSURI:                                base + "jwks",
		ScopesSupported:                        s.Rule.Offered.Tokens(),
		ResponseTypesSupported:                 []string{"code"},
		ResponseModesSupported:                 []string{"query"},
		GrantTypesSupported:                    []string{"authorization_code", "refresh_token"},
		TokenEndpointAuthMethodsSupported:      clientAuthMethods,
		RevocationEndpointAuthMethodsSupported: clientAuthMethods,
		CodeChallengeMethodsSupported:          []string{"S256"},
		ClientIDMetadataDocumentSupported:      true,
		AuthorizationResponseISSSupported:      true,
		ResourceIndicatorsSupported:            true,
	}
	if len(s.Gateway().Machines) > 0 {
		// The client credentials extension: advertised where the config
		// has clients that may use it.
		md.GrantTypesSupported = append(md.GrantTypesSupported, GrantClientCredentials)
		md.TokenEndpointAuthMethodsSupported = machineAuthMethods
		md.RevocationEndpointAuthMethodsSupported = machineAuthMethods
		md.TokenEndpointAuthSigningAlgsSupported = AssertionAlgorithms
	}
	if len(s.Gateway().EnterpriseIdPs) > 0 {
		// The enterprise-managed authorization extension.
		md.GrantTypesSupported = append(md.GrantTypesSupported, GrantJWTBearer)
	}
	return md
}

func (e *Edge) serveJWKS(w http.ResponseWriter, r *http.Request, s *Server) {
	if allowCORS(w, r, "GET, OPTIONS") || !requireMethod(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	body := s.Gateway().Keys.JWKS()
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// passMetadata prepares a discovery URL that names no server of the edge
// (the root one of a site with several servers, say) for the next handler,
// which may serve other metadata on the site or answer 404: browser-based
// clients probe several such URLs in turn, and an answer without CORS
// headers is a blocked request in their console. It answers the preflight
// itself and reports whether it did.
func passMetadata(w http.ResponseWriter, r *http.Request) bool {
	return allowCORS(w, r, "GET, OPTIONS")
}
