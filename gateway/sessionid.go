package gateway

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"strings"
	"sync"
)

// macChars is the length of a session ID's MAC: HMAC-SHA256, base64url
// without padding.
var macChars = base64.RawURLEncoding.EncodedLen(sha256.Size)

// maxSessionID bounds the session ID a client may present; upstreams hand
// out IDs of a few dozen characters.
const maxSessionID = 1024

// SessionIDs binds the MCP session IDs that upstreams hand out to the user,
// client and server they were handed to. A session ID is not
// authentication: an upstream behind the gateway sees only the downstream
// token, and cannot tell one of the gateway's clients from another. So
// the ID the client gets is the upstream's with a MAC appended,
// "<upstream id>.<MAC>", the MAC over the server, user, client ID and
// upstream ID under a key of the gateway's; each request's ID is checked
// against its token and the upstream gets its own ID back. No table is
// kept: every instance that shares the gateway's storage derives the same
// key (sessionKey), and so does every config across reloads.
//
// The result stays within the visible ASCII that MCP allows in session
// IDs when the upstream's does.
type SessionIDs struct {
	// macs holds keyed HMAC states with their buffers, so that a request
	// costs one HMAC and no allocation.
	macs sync.Pool
}

// macState is one keyed HMAC and the buffers it works in.
type macState struct {
	h      hash.Hash
	input  []byte
	sum    [sha256.Size]byte
	ours   []byte // the encoded MAC, macChars long
	theirs []byte // the client's MAC, copied to compare in constant time
}

// sessionKeyInfo separates the session-ID key from every other key derived
// from the gateway's sealing key.
const sessionKeyInfo = "caddy-mcp-gateway session-id MAC v1\x00"

// sessionKey derives the key of a gateway's session IDs from its sealing
// key, which every instance on the same storage shares, and its storage
// directory, which names its auth boundary (two boundaries configured with
// one encryption_key still get different keys).
func sessionKey(sealingKey []byte, dir string) ([]byte, error) {
	return hkdf.Key(sha256.New, sealingKey, nil, sessionKeyInfo+dir, sha256.Size)
}

// NewSessionIDs binds session IDs under key, which a Runtime derives from
// its gateway's sealing key (sessionKey).
func NewSessionIDs(key []byte) *SessionIDs {
	key = append([]byte(nil), key...)
	s := &SessionIDs{}
	s.macs.New = func() any {
		return &macState{h: hmac.New(sha256.New, key), ours: make([]byte, macChars), theirs: make([]byte, macChars)}
	}
	return s
}

// compute puts into st.ours the encoded MAC of upstream bound to server,
// user and client. Each field is prefixed by its length, so that no two
// different bindings write the same bytes.
func (st *macState) compute(server, user, client, upstream string) {
	in := st.input[:0]
	for _, field := range [...]string{server, user, client, upstream} {
		in = binary.BigEndian.AppendUint32(in, uint32(len(field)))
		in = append(in, field...)
	}
	st.input = in
	st.h.Reset()
	st.h.Write(in)
	base64.RawURLEncoding.Encode(st.ours, st.h.Sum(st.sum[:0]))
}

// Seal returns the session ID a client gets for the upstream's ID
// upstream, bound to server, user and client.
func (s *SessionIDs) Seal(server, user, client, upstream string) string {
	st := s.macs.Get().(*macState)
	defer s.macs.Put(st)
	st.compute(server, user, client, upstream)
	return upstream + "." + string(st.ours)
}

// Open returns the upstream's ID in a client's session ID, and whether
// the ID was sealed for server, user and client. A foreign, altered,
// truncated or unsealed ID is not.
func (s *SessionIDs) Open(server, user, client, id string) (string, bool) {
	dot := strings.LastIndexByte(id, '.')
	if len(id) > maxSessionID || dot <= 0 || len(id)-dot-1 != macChars {
		return "", false
	}
	upstream := id[:dot]
	st := s.macs.Get().(*macState)
	defer s.macs.Put(st)
	st.compute(server, user, client, upstream)
	copy(st.theirs, id[dot+1:])
	if subtle.ConstantTimeCompare(st.ours, st.theirs) != 1 {
		return "", false
	}
	return upstream, true
}
