package grants_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// A gateway's authorization code grant: the callback issues a code, the
// token endpoint redeems it once and starts a refresh-token family, and each
// refresh rotates the family's token.
func ExampleLedger() {
	ctx := context.Background()
	// The gateway's storage and sealer; the store package's example shows
	// where a gateway's come from (its storage, and the key kept there).
	sealer, err := store.NewSealer(make([]byte, store.KeySize))
	if err != nil {
		log.Fatal(err)
	}
	ledger := grants.NewLedger(store.NewMemoryStore(), "mcp_gateway/acme", sealer, nil)

	// The downstream login completed: issue a code for the MCP client.
	code, err := ledger.IssueCode(ctx, &grants.Code{
		ClientID:      "client-a",
		RedirectURI:   "http://127.0.0.1:33418/callback",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		Server:        "support",
		Scopes:        "tickets.read accounts.read",
		User:          "alice",
		ExpiresAt:     time.Now().Add(time.Minute),
	})
	if err != nil {
		log.Fatal(err)
	}

	// The token endpoint redeems it, recording the family it starts.
	c, err := ledger.RedeemCode(ctx, code, "family-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("code redeemed for", c.User, "at", c.Server)
	if _, err := ledger.RedeemCode(ctx, code, "family-2"); errors.Is(err, grants.ErrCodeReused) {
		fmt.Println("second redemption refused")
	}

	refresh, err := ledger.StartFamily(ctx, &grants.Family{
		ID:       c.FamilyID,
		ClientID: c.ClientID,
		Server:   c.Server,
		User:     c.User,
		Scopes:   c.Scopes,
	})
	if err != nil {
		log.Fatal(err)
	}

	// A refresh rotates the token; the replaced one is then spent.
	fam, next, err := ledger.Rotate(ctx, refresh, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	id, _ := grants.FamilyIDOf(next)
	fmt.Println("rotated family", fam.ID, "new token of the same family:", id == fam.ID && next != refresh)
	// Output:
	// code redeemed for alice at support
	// second redemption refused
	// rotated family family-1 new token of the same family: true
}
