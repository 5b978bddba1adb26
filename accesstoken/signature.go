package accesstoken

import (
	"bytes"
	"crypto/elliptic"
	"math/big"
)

// sigHalf is the size of r and of s in an ES256 signature, r || s (RFC 7518
// §3.4).
const sigHalf = 32

// p256HalfOrder is n/2 for P-256, big-endian in sigHalf bytes.
var p256HalfOrder = new(big.Int).Rsh(elliptic.P256().Params().N, 1).FillBytes(make([]byte, sigHalf))

// highS reports whether an ES256 signature has s > n/2. Whoever holds a
// signature (r, s) can compute (r, n-s), which verifies as well; accepting
// only s ≤ n/2 leaves each token a single valid form.
func highS(sig []byte) bool {
	return len(sig) == 2*sigHalf && bytes.Compare(sig[sigHalf:], p256HalfOrder) > 0
}

// toLowS turns an ES256 signature into its low-S form in place: Go's
// ecdsa.Sign returns either form.
func toLowS(sig []byte) {
	if !highS(sig) {
		return
	}
	s := new(big.Int).SetBytes(sig[sigHalf:])
	s.Sub(elliptic.P256().Params().N, s).FillBytes(sig[sigHalf:])
}
