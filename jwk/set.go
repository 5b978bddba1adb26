package jwk

import (
	"encoding/json"
	"errors"
	"fmt"
)

// MaxSetBytes bounds the JWK Set documents ParseSet accepts. Real sets hold
// a handful of keys and stay under a few KiB.
const MaxSetBytes = 1 << 20

// ParseSet decodes a JWK Set (RFC 7517 §5) and returns its usable signature
// keys by kid; a key without kid is found under "".
//
// Following RFC 7517 §5, keys this package cannot use are skipped rather
// than failing the whole set: keys for encryption ("use":"enc"), and keys
// of unknown types, curves or sizes. The set is refused as a whole when it
// is larger than MaxSetBytes, is not a JSON object with a "keys" array,
// publishes private key material (its signatures prove nothing any more),
// or holds no usable key at all. When two usable keys share a kid, the first
// one is kept: a kid must name one key, and the document order is the only
// stable tie-breaker.
func ParseSet(data []byte) (map[string]Key, error) {
	if len(data) > MaxSetBytes {
		return nil, fmt.Errorf("jwk: the key set is larger than %d bytes", MaxSetBytes)
	}
	// Decoded member by member so that "keys" matches exactly.
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil || doc == nil {
		return nil, errors.New("jwk: the key set is not a JSON object")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(doc["keys"], &raws); err != nil || raws == nil {
		return nil, errors.New(`jwk: the key set has no "keys" array`)
	}
	keys := make(map[string]Key, len(raws))
	for _, raw := range raws {
		var k Key
		if err := json.Unmarshal(raw, &k); err != nil {
			continue
		}
		if k.hasPrivate {
			return nil, k.errorf("in the key set carries private key material; the provider must rotate it and publish only public keys")
		}
		if _, err := k.PublicKey(); err != nil {
			continue
		}
		if _, dup := keys[k.Kid]; !dup {
			keys[k.Kid] = k
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("jwk: the key set holds no usable signature key (EC P-256, P-384, P-521; RSA of 2048 to 8192 bits; Ed25519)")
	}
	return keys, nil
}
