package testenv

import (
	"context"
	"errors"
	"slices"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// clientCredentialsStorage is storage that also offers the client
// credentials grant (RFC 6749 §4.4) to the gateway's client, which op
// enables for a storage implementing op.ClientCredentialsStorage.
type clientCredentialsStorage struct{ *storage }

// clientCredentialsExchangeStorage offers both grants.
type clientCredentialsExchangeStorage struct{ exchangeStorage }

var (
	_ op.ClientCredentialsStorage = clientCredentialsStorage{}
	_ op.ClientCredentialsStorage = clientCredentialsExchangeStorage{}
	_ op.TokenExchangeStorage     = clientCredentialsExchangeStorage{}
)

// opStorage returns the storage op is given: with token exchange, the
// client credentials grant, both or neither.
func opStorage(s *storage, tokenExchange, clientCredentials bool) op.Storage {
	switch {
	case tokenExchange && clientCredentials:
		return clientCredentialsExchangeStorage{exchangeStorage{s}}
	case tokenExchange:
		return exchangeStorage{s}
	case clientCredentials:
		return clientCredentialsStorage{s}
	}
	return s
}

// clientCredentialsRequest is a client credentials grant: a token of the
// client itself, whose subject is its client ID.
type clientCredentialsRequest struct {
	clientID string
	scopes   []string
	audience []string
}

func (r *clientCredentialsRequest) GetSubject() string { return r.clientID }
func (r *clientCredentialsRequest) GetAudience() []string {
	return audienceOrClient(r.audience, r.clientID)
}
func (r *clientCredentialsRequest) GetScopes() []string       { return slices.Clone(r.scopes) }
func (r *clientCredentialsRequest) GetClientID() string       { return r.clientID }
func (r *clientCredentialsRequest) SetCurrentScopes([]string) {}

// ClientCredentials implements op.ClientCredentialsStorage: the gateway's
// client, its secret compared in constant time (a private_key_jwt
// assertion was verified and replaced by the secret before op runs).
func (s *storage) ClientCredentials(ctx context.Context, clientID, clientSecret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, clientID, clientSecret); err != nil {
		return nil, err
	}
	return s.GetClientByClientID(ctx, clientID)
}

// ClientCredentialsTokenRequest implements op.ClientCredentialsStorage: a
// token with the requested API scopes the provider offers (others are
// dropped, as op does at authorization), bound to the requested audience.
func (s *storage) ClientCredentialsTokenRequest(ctx context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	if clientID != s.clientID {
		return nil, errors.New("unknown client")
	}
	audience, err := s.audienceFor(ctx)
	if err != nil {
		return nil, err
	}
	var kept []string
	for _, sc := range scopes {
		if slices.Contains(s.apiScopes, sc) && !slices.Contains(kept, sc) {
			kept = append(kept, sc)
		}
	}
	return &clientCredentialsRequest{clientID: clientID, scopes: kept, audience: audience}, nil
}
