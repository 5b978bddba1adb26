package authserver_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
)

// TestTokenAuthorizationCode: a code is exchanged once, with its PKCE
// verifier, by the client it was issued to, for a token of its server.
func TestTokenAuthorizationCode(t *testing.T) {
	t.Run("public client", func(t *testing.T) {
		te := newTestEdge(t)
		code, verifier := te.publicCode()
		tok := te.exchange(code, verifier)
		if tok.Scope != "accounts.read tickets.read" || tok.RefreshToken == "" {
			t.Errorf("token response %+v", tok)
		}
		claims, err := te.gw.Verifier.Verify(tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if claims.Issuer != te.support.Issuer || claims.Audience != te.support.Resource || claims.Subject != user ||
			claims.ClientID != publicClient || claims.Scope != tok.Scope || claims.FamilyRef == "" {
			t.Errorf("claims %+v", claims)
		}
		// The token is good at its server.
		if a, ok, w := te.callAuthorize(mcpCall(te.support, tok.AccessToken, pingBody), te.support); !ok || a.DownstreamToken != "support-token-"+user {
			t.Errorf("Authorize: %v %q, %d %s", ok, a.DownstreamToken, w.Code, w.Body)
		}
	})
	for _, basic := range []bool{true, false} {
		name := "client_secret_post"
		if basic {
			name = "client_secret_basic"
		}
		t.Run("confidential client, "+name, func(t *testing.T) {
			te := newTestEdge(t)
			verifier, challenge := pkce()
			code := te.issueCode(grants.Code{ClientID: configClient, RedirectURI: configRedirect, CodeChallenge: challenge,
				Server: "support", Resource: te.support.Resource, Scopes: "tickets.read"})
			req := tokenReq{form: url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {configRedirect}}}
			if basic {
				req.basic = basicAuth(configClient, configSecret)
			} else {
				req.form.Set("client_id", configClient)
				req.form.Set("client_secret", configSecret)
			}
			if tok := wantTokens(t, te.serve(req.post("support"))); tok.Scope != "tickets.read" || tok.RefreshToken == "" {
				t.Errorf("token response %+v", tok)
			}
		})
	}
}

// tokenReq is a token or revocation request: its form, and its
// Authorization header if any.
type tokenReq struct {
	form  url.Values
	basic string
}

// post is the request to the token endpoint of server.
func (req tokenReq) post(server string) *http.Request {
	r := postForm("/oauth/"+server+"/token", req.form)
	if req.basic != "" {
		r.Header.Set("Authorization", req.basic)
	}
	return r
}

// TestTokenRefusals: each refusal of the token endpoint is the OAuth error
// RFC 6749 §5.2 names, with its status.
func TestTokenRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		// req makes the request from a fresh code of the public client at
		// support and its verifier.
		req    func(te *testEdge, code, verifier string) tokenReq
		status int
		error  string
	}{
		{"no grant_type", func(te *testEdge, code, verifier string) tokenReq {
			return tokenReq{form: url.Values{"code": {code}, "code_verifier": {verifier}, "client_id": {publicClient}}}
		}, http.StatusBadRequest, "invalid_request"},
		{"grant_type password", func(te *testEdge, code, verifier string) tokenReq {
			return tokenReq{form: url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"x"}, "client_id": {publicClient}}}
		}, http.StatusBadRequest, "unsupported_grant_type"},
		{"grant_type client_credentials by a client not configured for it", func(te *testEdge, code, verifier string) tokenReq {
			return tokenReq{form: url.Values{"grant_type": {"client_credentials"}}, basic: basicAuth(configClient, configSecret)}
		}, http.StatusBadRequest, "unauthorized_client"},
		{"no code", func(te *testEdge, code, verifier string) tokenReq {
			return tokenReq{form: url.Values{"grant_type": {"authorization_code"}, "code_verifier": {verifier}, "client_id": {publicClient}}}
		}, http.StatusBadRequest, "invalid_request"},
		{"no code_verifier", func(te *testEdge, code, verifier string) tokenReq {
			return tokenReq{form: url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {publicClient}}}
		}, http.StatusBadRequest, "invalid_request"},
		{"a repeated parameter", func(te *testEdge, code, verifier string) tokenReq {
			return tokenReq{form: url.Values{"grant_type": {"authorization_code"}, "code": {code, code}, "code_verifier": {verifier}, "client_id": {publicClient}}}
		}, http.StatusBadRequest, "invalid_request"},
		{"an unknown code", func(te *testEdge, code, verifier string) tokenReq {
			return codeRequest("made-up-code", verifier, publicRedirect)
		}, http.StatusBadRequest, "invalid_grant"},
		{"a wrong code_verifier", func(te *testEdge, code, verifier string) tokenReq {
			other, _ := pkce()
			return codeRequest(code, other, publicRedirect)
		}, http.StatusBadRequest, "invalid_grant"},
		{"the code_challenge as verifier", func(te *testEdge, code, verifier string) tokenReq {
			_, challenge := pkce()
			return codeRequest(code, challenge, publicRedirect)
		}, http.StatusBadRequest, "invalid_grant"},
		{"another redirect_uri", func(te *testEdge, code, verifier string) tokenReq {
			return codeRequest(code, verifier, "http://127.0.0.1:9/callback")
		}, http.StatusBadRequest, "invalid_grant"},
		{"another server's resource", func(te *testEdge, code, verifier string) tokenReq {
			r := codeRequest(code, verifier, publicRedirect)
			r.form.Set("resource", te.ops.Resource)
			return r
		}, http.StatusBadRequest, "invalid_target"},
		{"a code of another client", func(te *testEdge, code, verifier string) tokenReq {
			verifier, challenge := pkce()
			other := te.issueCode(grants.Code{ClientID: configClient, RedirectURI: configRedirect, CodeChallenge: challenge, Server: "support", Scopes: "tickets.read"})
			return codeRequest(other, verifier, "")
		}, http.StatusBadRequest, "invalid_grant"},
		{"a code of another server", func(te *testEdge, code, verifier string) tokenReq {
			verifier, challenge := pkce()
			other := te.issueCode(grants.Code{ClientID: publicClient, RedirectURI: publicRedirect, CodeChallenge: challenge, Server: "ops", Scopes: "admin.read"})
			return codeRequest(other, verifier, publicRedirect)
		}, http.StatusBadRequest, "invalid_grant"},
		{"an expired code", func(te *testEdge, code, verifier string) tokenReq {
			verifier, challenge := pkce()
			old := te.issueCode(grants.Code{ClientID: publicClient, RedirectURI: publicRedirect, CodeChallenge: challenge, Server: "support", Scopes: "tickets.read",
				IssuedAt: te.clock.Now().Add(-time.Hour), ExpiresAt: te.clock.Now().Add(-time.Minute)})
			return codeRequest(old, verifier, publicRedirect)
		}, http.StatusBadRequest, "invalid_grant"},

		// The client's authentication.
		{"no client authentication", func(te *testEdge, code, verifier string) tokenReq {
			r := codeRequest(code, verifier, publicRedirect)
			r.form.Del("client_id")
			return r
		}, http.StatusUnauthorized, "invalid_client"},
		{"an unknown client", func(te *testEdge, code, verifier string) tokenReq {
			r := codeRequest(code, verifier, publicRedirect)
			r.form.Set("client_id", "nobody")
			return r
		}, http.StatusUnauthorized, "invalid_client"},
		{"a public client with a secret", func(te *testEdge, code, verifier string) tokenReq {
			r := codeRequest(code, verifier, publicRedirect)
			r.form.Set("client_secret", "guess")
			return r
		}, http.StatusUnauthorized, "invalid_client"},
		{"a confidential client without its secret", func(te *testEdge, code, verifier string) tokenReq {
			r := codeRequest(code, verifier, "")
			r.form.Set("client_id", configClient)
			return r
		}, http.StatusUnauthorized, "invalid_client"},
		{"a wrong secret, Basic", func(te *testEdge, code, verifier string) tokenReq {
			r := codeRequest(code, verifier, "")
			r.form.Del("client_id")
			r.basic = basicAuth(configClient, configSecret+"x")
			return r
		}, http.StatusUnauthorized, "invalid_client"},
		{"a wrong secret, in the form", func(te *testEdge, code, verifier string) tokenReq {
			r := codeRequest(code, verifier, "")
			r.form.Set("client_id", configClient)
			r.form.Set("client_secret", configSecret[1:])
			return r
		}, http.StatusUnauthorized, "invalid_client"},
		{"Basic and client_secret both", func(te *testEdge, code, verifier string) tokenReq {
			r := codeRequest(code, verifier, "")
			r.form.Del("client_id")
			r.form.Set("client_secret", configSecret)
			r.basic = basicAuth(configClient, configSecret)
			return r
		}, http.StatusBadRequest, "invalid_request"},
		{"a client_id other than Basic's", func(te *testEdge, code, verifier string) tokenReq {
			r := codeRequest(code, verifier, "")
			r.basic = basicAuth(configClient, configSecret)
			return r // the form names the public client
		}, http.StatusUnauthorized, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			code, verifier := te.publicCode()
			w := te.serve(tc.req(te, code, verifier).post("support"))
			wantOAuthError(t, w, tc.status, tc.error)
			wantCORS(t, w)
			if got := w.Header().Get("WWW-Authenticate"); (tc.status == http.StatusUnauthorized) != (got == `Basic realm="mcp_gateway"`) {
				t.Errorf("WWW-Authenticate %q", got)
			}
		})
	}

	// What is not a form POST.
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"GET", httptest.NewRequest(http.MethodGet, publicURL+"/oauth/support/token?grant_type=authorization_code", nil), http.StatusMethodNotAllowed},
		{"a JSON body", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, publicURL+"/oauth/support/token", strings.NewReader(`{"grant_type":"authorization_code"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}(), http.StatusBadRequest},
		{"a body over 64 KiB", postForm("/oauth/support/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {strings.Repeat("r", 64<<10)}}), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			wantOAuthError(t, te.serve(tc.req), tc.status, "invalid_request")
		})
	}
	t.Run("CORS preflight", func(t *testing.T) {
		te := newTestEdge(t)
		w := te.serve(preflight("/oauth/support/token"))
		if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Methods") != "POST, OPTIONS" {
			t.Errorf("%d %v", w.Code, w.Header())
		}
	})
}

// codeRequest is the public client's exchange of code at support.
func codeRequest(code, verifier, redirectURI string) tokenReq {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "client_id": {publicClient}}
	if redirectURI != "" {
		form.Set("redirect_uri", redirectURI)
	}
	return tokenReq{form: form}
}

// TestTokenCodeReplay: a code presented twice is refused the second time,
// and what was issued from it is revoked.
func TestTokenCodeReplay(t *testing.T) {
	te := newTestEdge(t)
	code, verifier := te.publicCode()
	tok := te.exchange(code, verifier)
	w := te.serve(codeRequest(code, verifier, publicRedirect).post("support"))
	wantOAuthError(t, w, http.StatusBadRequest, "invalid_grant")
	wantOAuthError(t, te.refresh(tok.RefreshToken), http.StatusBadRequest, "invalid_grant")
	if _, ok, w := te.callAuthorize(mcpCall(te.support, tok.AccessToken, pingBody), te.support); ok || w.Code != http.StatusUnauthorized {
		t.Errorf("the access token of a replayed code still works: %d", w.Code)
	}
}

// TestTokenRefresh: a refresh rotates the refresh token; the previous one
// is good for the grace window (the same answer), and after it its reuse
// revokes the family.
func TestTokenRefresh(t *testing.T) {
	te := newTestEdge(t)
	code, verifier := te.publicCode()
	first := te.exchange(code, verifier)

	second := wantTokens(t, te.refresh(first.RefreshToken))
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken || second.Scope != first.Scope {
		t.Fatalf("refresh answered %+v after %+v", second, first)
	}
	// Two refreshes racing with one token: the second gets the same new
	// refresh token.
	if again := wantTokens(t, te.refresh(first.RefreshToken)); again.RefreshToken != second.RefreshToken {
		t.Errorf("a refresh within the grace window got refresh token %q, want %q", again.RefreshToken, second.RefreshToken)
	}
	third := wantTokens(t, te.refresh(second.RefreshToken))
	if a, ok, w := te.callAuthorize(mcpCall(te.support, third.AccessToken, pingBody), te.support); !ok || a.Claims.Subject != user {
		t.Fatalf("the refreshed access token: %d %s", w.Code, w.Body)
	}

	// After the grace window, a replaced token is a stolen one.
	te.clock.advance(time.Minute)
	wantOAuthError(t, te.refresh(first.RefreshToken), http.StatusBadRequest, "invalid_grant")
	wantOAuthError(t, te.refresh(third.RefreshToken), http.StatusBadRequest, "invalid_grant")
	if _, ok, w := te.callAuthorize(mcpCall(te.support, third.AccessToken, pingBody), te.support); ok || w.Code != http.StatusUnauthorized {
		t.Errorf("the family's access token works after a reuse: %d", w.Code)
	}
}

// TestTokenRefreshRefusals: a refresh needs a token the gateway issued to
// this client for this server, and may narrow the scopes but not widen
// them.
func TestTokenRefreshRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		// form makes the refresh request from the public client's current
		// refresh token at support.
		form   func(refresh string) url.Values
		server string
		error  string
	}{
		{"no refresh_token", func(string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "client_id": {publicClient}}
		}, "support", "invalid_request"},
		{"a made-up token", func(string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"made-up"}, "client_id": {publicClient}}
		}, "support", "invalid_grant"},
		{"a made-up secret with a real family ID", func(refresh string) url.Values {
			family, _, _ := strings.Cut(refresh, ".")
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {family + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "client_id": {publicClient}}
		}, "support", "invalid_grant"},
		{"another client", func(refresh string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {configClient}, "client_secret": {configSecret}}
		}, "support", "invalid_grant"},
		{"another server", func(refresh string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {publicClient}}
		}, "ops", "invalid_grant"},
		{"a wider scope", func(refresh string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {publicClient}, "scope": {"tickets.read admin.read"}}
		}, "support", "invalid_scope"},
		{"a malformed scope", func(refresh string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {publicClient}, "scope": {`tickets"read`}}
		}, "support", "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			code, verifier := te.publicCode()
			tok := te.exchange(code, verifier)
			wantOAuthError(t, te.serve(postForm("/oauth/"+tc.server+"/token", tc.form(tok.RefreshToken))), http.StatusBadRequest, tc.error)
			// The refused request used nothing up.
			wantTokens(t, te.refresh(tok.RefreshToken))
		})
	}

	t.Run("a narrower scope", func(t *testing.T) {
		te := newTestEdge(t)
		code, verifier := te.publicCode()
		tok := te.exchange(code, verifier)
		w := te.serve(postForm("/oauth/support/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken},
			"client_id": {publicClient}, "scope": {"offline_access tickets.read"}}))
		if got := wantTokens(t, w); got.Scope != "tickets.read" {
			t.Errorf("narrowed to %q, want tickets.read", got.Scope)
		}
	})
	t.Run("the user's downstream grant ended", func(t *testing.T) {
		te := newTestEdge(t)
		code, verifier := te.publicCode()
		tok := te.exchange(code, verifier)
		endGrant(t, te)
		wantOAuthError(t, te.refresh(tok.RefreshToken), http.StatusBadRequest, "invalid_grant")
	})
}

// endGrant marks the user's downstream grant dead, as the Broker does when
// the downstream server refuses to refresh it.
func endGrant(t *testing.T, te *testEdge) {
	t.Helper()
	ctx := context.Background()
	g, err := te.gw.Ledger.Grant(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	g.Dead, g.DeadReason = true, "invalid_grant at the downstream server"
	if err := te.gw.Ledger.SaveGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	te.gw.Broker.Forget(user)
}

// TestRevoke: RFC 7009 revocation of the client's own refresh or access
// token ends the whole family; anything else is answered 200 and changes
// nothing.
func TestRevoke(t *testing.T) {
	revoke := func(te *testEdge, form url.Values) *httptest.ResponseRecorder {
		return te.serve(postForm("/oauth/support/revoke", form))
	}
	for _, tc := range []struct {
		name    string
		form    func(tok tokens) url.Values
		revoked bool
	}{
		{"the refresh token", func(tok tokens) url.Values {
			return url.Values{"token": {tok.RefreshToken}, "client_id": {publicClient}}
		}, true},
		{"the access token", func(tok tokens) url.Values {
			return url.Values{"token": {tok.AccessToken}, "token_type_hint": {"access_token"}, "client_id": {publicClient}}
		}, true},
		{"the refresh token, by another client", func(tok tokens) url.Values {
			return url.Values{"token": {tok.RefreshToken}, "client_id": {configClient}, "client_secret": {configSecret}}
		}, false},
		{"the access token, by another client", func(tok tokens) url.Values {
			return url.Values{"token": {tok.AccessToken}, "client_id": {configClient}, "client_secret": {configSecret}}
		}, false},
		{"the family ID alone", func(tok tokens) url.Values {
			family, _, _ := strings.Cut(tok.RefreshToken, ".")
			return url.Values{"token": {family}, "client_id": {publicClient}}
		}, false},
		{"an unknown token", func(tokens) url.Values {
			return url.Values{"token": {"made-up"}, "client_id": {publicClient}}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			code, verifier := te.publicCode()
			tok := te.exchange(code, verifier)
			w := revoke(te, tc.form(tok))
			if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != "{}" {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			wantNoStore(t, w, "application/json")
			_, ok, aw := te.callAuthorize(mcpCall(te.support, tok.AccessToken, pingBody), te.support)
			if tc.revoked {
				wantOAuthError(t, te.refresh(tok.RefreshToken), http.StatusBadRequest, "invalid_grant")
				if ok || aw.Code != http.StatusUnauthorized {
					t.Errorf("the revoked family's access token: %d", aw.Code)
				}
			} else {
				wantTokens(t, te.refresh(tok.RefreshToken))
				if !ok {
					t.Errorf("the access token was revoked: %d %s", aw.Code, aw.Body)
				}
			}
		})
	}

	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
		error  string
	}{
		{"no token", postForm("/oauth/support/revoke", url.Values{"client_id": {publicClient}}), http.StatusBadRequest, "invalid_request"},
		{"no client authentication", postForm("/oauth/support/revoke", url.Values{"token": {"x"}}), http.StatusUnauthorized, "invalid_client"},
		{"a wrong secret", postForm("/oauth/support/revoke", url.Values{"token": {"x"}, "client_id": {configClient}, "client_secret": {"guess"}}), http.StatusUnauthorized, "invalid_client"},
		{"GET", httptest.NewRequest(http.MethodGet, publicURL+"/oauth/support/revoke?token=x", nil), http.StatusMethodNotAllowed, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t)
			wantOAuthError(t, te.serve(tc.req), tc.status, tc.error)
		})
	}
}
