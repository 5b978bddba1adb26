package scopes_test

import (
	"errors"
	"fmt"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/scopes"
)

func ExampleParse() {
	// One client sends its scope string with a leading space.
	s, err := scopes.Parse(" tickets.read accounts.read tickets.read")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s, s.Len())

	// Only the space separates scopes; other whitespace is an error.
	_, err = scopes.Parse("tickets.read\taccounts.read")
	fmt.Println(err != nil)
	// Output:
	// accounts.read tickets.read 2
	// true
}

func ExampleRule_Resolve() {
	// One gateway holds the full set; the support-assistant server offers
	// a subset of it.
	gateway := scopes.MustParse("tickets.read tickets.write accounts.read admin.read")
	support := scopes.Rule{
		Offered: gateway.Intersect(scopes.MustParse("tickets.read accounts.read")),
		Ignore:  scopes.MustParse("openid offline_access"),
	}

	for _, requested := range []string{
		"tickets.read",          // a subset: granted as asked
		"",                      // no scope: everything the server offers
		"openid offline_access", // only ignored scopes: the same fallback
		gateway.String(),        // the gateway's whole set, sorted: narrowed
		"admin.read",            // nothing the server offers: refused
	} {
		granted, err := support.Resolve(scopes.MustParse(requested))
		var e *scopes.Error
		if errors.As(err, &e) {
			fmt.Printf("%q -> %s: %s\n", requested, e.OAuthCode(), e.Rejected)
			continue
		}
		fmt.Printf("%q -> %s\n", requested, granted)
	}
	// Output:
	// "tickets.read" -> tickets.read
	// "" -> accounts.read tickets.read
	// "openid offline_access" -> accounts.read tickets.read
	// "accounts.read admin.read tickets.read tickets.write" -> accounts.read tickets.read
	// "admin.read" -> invalid_scope: admin.read
}
