package authserver

import (
	"context"
	"errors"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/accesstoken"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
)

// The revocations that people ask for (an operator in the admin API, a
// user on the connected-apps page) all go through these functions, so that
// each ends the same things: the refresh family in storage, its access
// tokens on this instance at once and on the others when they next read
// the revocation records, and the consent that would let the client in
// again unasked.

// RevokeFamily revokes the refresh family id in storage, which records the
// revocation for the other instances, and refuses its access tokens on
// this instance at once (v may be nil when none verifies here). An unknown
// family is grants.ErrNotFound. When storing the revocation fails, the
// family's access tokens are refused here all the same.
func RevokeFamily(ctx context.Context, l *grants.Ledger, v *accesstoken.Verifier, id, reason string, now time.Time) (*grants.Family, error) {
	fam, err := l.RevokeFamily(ctx, id, reason)
	if fam != nil && v != nil {
		v.RevokeFamily(fam.Ref, now.Add(grants.RevocationRetention))
	}
	return fam, err
}

// RevokeGrants revokes every live grant that filter selects, which must
// name a user or a client, and forgets the consents behind them (see
// ForgetConsents). It returns the IDs of the families it revoked and how
// many consents it forgot. A family pruned between listing and revoking is
// skipped; on another error it stops, and what it revoked stays revoked:
// repeating the call finishes the job.
func RevokeGrants(ctx context.Context, l *grants.Ledger, v *accesstoken.Verifier, filter grants.FamilyFilter, reason string, now time.Time) (revoked []string, forgotten int, err error) {
	if filter.User == "" && filter.ClientID == "" {
		return nil, 0, errors.New("authserver: name the user or the client whose grants to revoke")
	}
	filter.Revoked = false
	ids, err := MatchingGrants(ctx, l, filter)
	if err != nil {
		return nil, 0, err
	}
	revoked = make([]string, 0, len(ids))
	for _, id := range ids {
		switch _, err := RevokeFamily(ctx, l, v, id, reason, now); {
		case isNotFound(err):
		case err != nil:
			return revoked, 0, err
		default:
			revoked = append(revoked, id)
		}
	}
	forgotten, err = ForgetConsents(ctx, l, filter)
	return revoked, forgotten, err
}

// MatchingGrants returns the IDs of every family that filter selects.
func MatchingGrants(ctx context.Context, l *grants.Ledger, filter grants.FamilyFilter) ([]string, error) {
	ids := []string{}
	err := eachFamily(ctx, l, filter, func(f *grants.Family) { ids = append(ids, f.ID) })
	return ids, err
}

// eachFamily calls fn with every family that filter selects, a page at a
// time.
func eachFamily(ctx context.Context, l *grants.Ledger, filter grants.FamilyFilter, fn func(*grants.Family)) error {
	const page = 500
	after := ""
	for {
		families, next, err := l.Families(ctx, filter, after, page)
		if err != nil {
			return err
		}
		for _, f := range families {
			fn(f)
		}
		if next == "" {
			return nil
		}
		after = next
	}
}

// ForgetConsents deletes the consents behind a revocation, so that the
// client's next authorization asks the user again (without it, the
// consent page would be skipped and, with the user still signed in at the
// provider, there would be no page at all): the user's consent to the
// client at the server when the filter names all three, else every consent
// of the user, of the client, or of the user to the client. A filter that
// names neither forgets nothing.
func ForgetConsents(ctx context.Context, l *grants.Ledger, f grants.FamilyFilter) (int, error) {
	switch {
	case f.User == "" && f.ClientID == "":
		return 0, nil
	case f.User != "" && f.ClientID != "" && f.Server != "":
		switch _, err := l.Consent(ctx, f.User, f.ClientID, f.Server); {
		case isNotFound(err):
			return 0, nil
		case err != nil:
			return 0, err
		}
		return 1, l.DeleteConsent(ctx, f.User, f.ClientID, f.Server)
	}
	return l.DeleteConsents(ctx, f.User, f.ClientID)
}
