package testenv

import (
	"context"
	"slices"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// tokenExchangeGrant is the grant_type of RFC 8693.
const tokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange"

// exchangeStorage is storage that also offers RFC 8693 token exchange,
// which op enables for a storage implementing op.TokenExchangeStorage.
type exchangeStorage struct{ *storage }

var _ op.TokenExchangeStorage = exchangeStorage{}

// ValidateTokenExchangeRequest implements op.TokenExchangeStorage: the
// subject token must be an access token this provider issued to the same
// client, still valid; the new token is an access token with the scopes
// asked for, all of which the subject token holds (all of its scopes when
// none are asked for).
func (s exchangeStorage) ValidateTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) error {
	if req.GetExchangeSubjectTokenType() != oidc.AccessTokenType || req.GetExchangeActorTokenType() != "" {
		return oidc.ErrInvalidRequest().WithDescription("only an access token, without an actor, can be exchanged here")
	}
	switch req.GetRequestedTokenType() {
	case "":
		req.SetRequestedTokenType(oidc.AccessTokenType)
	case oidc.AccessTokenType:
	default:
		return oidc.ErrInvalidRequest().WithDescription("only access tokens are issued by token exchange here")
	}
	subject, err := s.liveAccessToken(req.GetExchangeSubjectTokenIDOrToken(), req.GetExchangeSubject())
	if err != nil || subject.clientID != req.GetClientID() {
		return oidc.ErrInvalidGrant().WithDescription("the subject token is unknown, expired or not this client's")
	}
	asked := req.GetScopes()
	if len(asked) == 0 {
		req.SetCurrentScopes(subject.scopes)
		return nil
	}
	for _, scope := range asked {
		if !slices.Contains(subject.scopes, scope) {
			return oidc.ErrInvalidScope().WithDescription("the subject token does not hold scope %s", scope)
		}
	}
	return nil
}

// CreateTokenExchangeRequest implements op.TokenExchangeStorage; nothing is
// kept.
func (exchangeStorage) CreateTokenExchangeRequest(context.Context, op.TokenExchangeRequest) error {
	return nil
}

// GetPrivateClaimsFromTokenExchangeRequest implements
// op.TokenExchangeStorage: the exchanged token records its scopes.
func (exchangeStorage) GetPrivateClaimsFromTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) (map[string]any, error) {
	return map[string]any{"scope": strings.Join(req.GetScopes(), " ")}, nil
}

// SetUserinfoFromTokenExchangeRequest implements op.TokenExchangeStorage.
func (s exchangeStorage) SetUserinfoFromTokenExchangeRequest(_ context.Context, info *oidc.UserInfo, req op.TokenExchangeRequest) error {
	return s.fillUserinfo(info, req.GetSubject(), req.GetScopes())
}
