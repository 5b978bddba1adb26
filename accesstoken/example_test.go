package accesstoken_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// newKeyset stands in for the gateway's setup: its Caddy storage and its
// sealing key.
func newKeyset() *accesstoken.Keyset {
	sealingKey, err := store.KeyFromSecret("an example secret of at least 16 bytes")
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := store.NewSealer(sealingKey)
	if err != nil {
		log.Fatal(err)
	}
	keys, err := accesstoken.LoadKeyset(context.Background(), store.NewMemoryStore(), "mcp_gateway/main/signing_keys", sealer, nil)
	if err != nil {
		log.Fatal(err)
	}
	return keys
}

func ExampleKeyset_Issue() {
	keys := newKeyset()
	now := time.Now()
	token, err := keys.Issue(accesstoken.Claims{
		Issuer:    "https://mcp.example.com/oauth/support-assistant",
		Subject:   "alice@example.com",
		Audience:  "https://mcp.example.com/support",
		Scope:     "accounts.read tickets.read",
		ClientID:  "https://client.example/metadata.json",
		FamilyRef: "ref-1",
		ExpiresAt: now.Add(time.Hour),
	})
	if err != nil {
		log.Fatal(err)
	}

	verifier := accesstoken.NewVerifier(keys, accesstoken.VerifierOptions{})
	claims, err := verifier.Verify(token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(claims.Subject)
	fmt.Println(claims.Audience)
	fmt.Println(claims.Scope)
	// Output:
	// alice@example.com
	// https://mcp.example.com/support
	// accounts.read tickets.read
}

func ExampleVerifier_Verify() {
	keys := newKeyset()
	verifier := accesstoken.NewVerifier(keys, accesstoken.VerifierOptions{})
	token, err := keys.Issue(accesstoken.Claims{
		Issuer:    "https://mcp.example.com/oauth/ops-console",
		Subject:   "bob@example.com",
		Audience:  "https://mcp.example.com/ops",
		Scope:     "tickets.write",
		ClientID:  "ops-cli",
		FamilyRef: "ref-2",
		ExpiresAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		log.Fatal(err)
	}

	// The proxy checks the token, then that it is for the server it guards.
	claims, err := verifier.Verify(token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(claims.Audience == "https://mcp.example.com/ops")

	// A reused refresh token revokes its family: its access tokens stop
	// working at once, cached or not.
	verifier.RevokeFamily(claims.FamilyRef, claims.ExpiresAt)
	_, err = verifier.Verify(token)
	fmt.Println(errors.Is(err, accesstoken.ErrRevoked))
	fmt.Println(err) // fit for an invalid_token error_description

	_, err = verifier.Verify("not-a-token")
	fmt.Println(err)
	// Output:
	// true
	// true
	// the access token was revoked; authorize again
	// the access token is malformed: it cannot be decoded as a JWT
}
