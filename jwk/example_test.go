package jwk_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/jwk"
)

// A server publishes its public key; a verifier reads the set and finds
// the key by the kid of a token's header.
func Example() {
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	pub, err := jwk.Public("key-1", "ES256", signer.Public())
	if err != nil {
		log.Fatal(err)
	}
	published, err := json.Marshal(jwk.Set{Keys: []jwk.Key{pub}})
	if err != nil {
		log.Fatal(err)
	}

	keys, err := jwk.ParseSet(published)
	if err != nil {
		log.Fatal(err)
	}
	verifyKey, err := keys["key-1"].PublicKey()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(verifyKey.(*ecdsa.PublicKey).Equal(signer.Public()))
	// Output: true
}
