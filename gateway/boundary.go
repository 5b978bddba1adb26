package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/store"
)

// storageRoot is the storage directory of every gateway's state.
const storageRoot = "mcp_gateway"

// Boundary is what makes a gateway's state its own: the public URL its
// issuers and resources hang from, and the downstream authorization
// server, client and audience its users' grants come from. A gateway's
// name is only a label: two gateways of one name on one storage (two
// sites, or one config changed) share keys, clients, consents and grants
// only when their boundaries are equal. A user is the same person only at
// the same issuer, and a consent or a client holds only for the servers of
// the public URL it was given at.
type Boundary struct {
	PublicURL           string `json:"public_url"`
	AuthorizationServer string `json:"authorization_server"`
	ClientID            string `json:"client_id"`
	Resource            string `json:"resource,omitempty"`
}

// ID is a short digest of b, for its storage directory and the usage pool.
func (b Boundary) ID() string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, part := range []string{b.PublicURL, b.AuthorizationServer, b.ClientID, b.Resource} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(part)))])
		h.Write([]byte(part))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// String names b for logs and errors.
func (b Boundary) String() string {
	return fmt.Sprintf("public_url %s, authorization_server %s, client_id %s, resource %q", b.PublicURL, b.AuthorizationServer, b.ClientID, b.Resource)
}

// boundaryRecord is the boundary stored in a gateway's directory, under
// boundaryKey.
type boundaryRecord struct {
	Boundary
	RecordedAt time.Time `json:"recorded_at"`
}

const boundaryKey = "boundary"

// storagePrefix returns the storage directory of the state of gateway
// name, of boundary b, recording b there on first use:
//
//   - mcp_gateway/<name> when the boundary recorded there is b, or when it
//     holds state of a version that recorded no boundary, which is then
//     claimed for b: an unchanged config keeps its keys, clients and grants
//     across the upgrade;
//   - mcp_gateway/<name>-<b.ID()> otherwise: another boundary (another
//     site's gateway of the same name, or this gateway before its
//     public_url, authorization_server, client_id or resource changed)
//     keeps mcp_gateway/<name>, and this one starts afresh beside it.
//
// The claim is made under a storage lock, so instances starting together
// agree. Storage errors are returned: guessing would fork the state.
func storagePrefix(ctx context.Context, s store.Store, name string, b Boundary, logger *zap.Logger) (string, error) {
	plain := storageRoot + "/" + name
	switch recorded, err := loadBoundary(ctx, s, plain); {
	case err == nil && recorded == b:
		return plain, nil
	case err == nil:
		// Another boundary's: this one lives beside it.
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	default:
		owner, err := claimUnrecorded(ctx, s, plain, b)
		if err != nil {
			return "", err
		}
		if owner == b {
			logger.Info("recorded the auth boundary of the gateway's existing state; a gateway of this name with another boundary keeps its state apart",
				zap.String("gateway", name), zap.String("storage", plain), zap.Stringer("boundary", b))
			return plain, nil
		}
	}

	own := plain + "-" + b.ID()
	switch mine, err := loadBoundary(ctx, s, own); {
	case err == nil && mine == b:
		return own, nil
	case err == nil:
		return "", fmt.Errorf("the storage directory %s records another auth boundary (%s) than this gateway's (%s); move it away", own, mine, b)
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	if err := storeBoundary(ctx, s, own, b); err != nil {
		return "", err
	}
	if others := otherBoundaries(ctx, s, name, own); len(others) > 0 {
		logger.Warn("the gateway starts with new state (new signing keys, no clients, consents or grants: clients register and users authorize again): the storage holds state of a gateway of this name with another auth boundary (another site, or this gateway before its public_url, authorization_server, client_id or resource changed), which stays as it is",
			zap.String("gateway", name), zap.String("storage", own), zap.Stringer("boundary", b), zap.Strings("other_storage", others))
	}
	return own, nil
}

// otherBoundaries lists the directories other than own that hold state of
// a gateway called name, for the log. It is best effort.
func otherBoundaries(ctx context.Context, s store.Store, name, own string) []string {
	keys, err := s.List(ctx, storageRoot, false)
	if err != nil {
		return nil
	}
	plain := storageRoot + "/" + name
	var others []string
	for _, key := range keys {
		suffix, ok := strings.CutPrefix(key, plain+"-")
		if key != own && (key == plain || ok && len(suffix) == 16 && strings.Trim(suffix, "0123456789abcdef") == "") {
			others = append(others, key)
		}
	}
	slices.Sort(others)
	return others
}

// claimUnrecorded records b in dir if dir holds state but no boundary
// record (state kept before boundaries were recorded), and returns the
// Boundary dir belongs to: b when claimed now, another's when another
// instance claimed it first, none when dir holds no state (which is not
// claimed: new gateways live in their boundary's own directory).
func claimUnrecorded(ctx context.Context, s store.Store, dir string, b Boundary) (Boundary, error) {
	// Every gateway that served a request made its signing keys.
	if _, err := s.Load(ctx, dir+"/signing_keys"); errors.Is(err, fs.ErrNotExist) {
		return Boundary{}, nil
	} else if err != nil {
		return Boundary{}, fmt.Errorf("reading %s: %w", dir, err)
	}
	var owner Boundary
	err := store.Locked(ctx, s, dir+"/"+boundaryKey, func() error {
		var err error
		switch owner, err = loadBoundary(ctx, s, dir); {
		case err == nil:
			return nil // claimed while this instance waited
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		owner = b
		return storeBoundary(ctx, s, dir, b)
	})
	if err != nil {
		return Boundary{}, err
	}
	return owner, nil
}

func loadBoundary(ctx context.Context, s store.Store, dir string) (Boundary, error) {
	raw, err := s.Load(ctx, dir+"/"+boundaryKey)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Boundary{}, err
		}
		return Boundary{}, fmt.Errorf("reading %s/%s: %w", dir, boundaryKey, err)
	}
	var rec boundaryRecord
	if len(raw) > 16<<10 || json.Unmarshal(raw, &rec) != nil || rec.Boundary == (Boundary{}) {
		return Boundary{}, fmt.Errorf("%s/%s is not a Boundary record; the storage is corrupted", dir, boundaryKey)
	}
	return rec.Boundary, nil
}

func storeBoundary(ctx context.Context, s store.Store, dir string, b Boundary) error {
	raw, err := json.Marshal(boundaryRecord{Boundary: b, RecordedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := s.Store(ctx, dir+"/"+boundaryKey, raw); err != nil {
		return fmt.Errorf("recording the auth boundary in %s: %w", dir, err)
	}
	return nil
}
