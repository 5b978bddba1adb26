package grants

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"
)

// RevocationRetention is how long the record of a revoked family is kept
// for other instances to read: as long as an access token of the family may
// still be valid, which is at most the longest access token lifetime.
const RevocationRetention = 24 * time.Hour

// Revocation says that a family was revoked, for instances that keep its
// access tokens' verification in memory. It names the family by its Ref,
// which is what the access tokens carry.
type Revocation struct {
	Ref       string    `json:"ref"`
	RevokedAt time.Time `json:"revoked_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// recordRevocation notes that family f was revoked.
func (l *Ledger) recordRevocation(ctx context.Context, f *Family) error {
	now := l.now()
	r := Revocation{Ref: f.Ref, RevokedAt: now, ExpiresAt: now.Add(RevocationRetention)}
	return l.put(ctx, kindRevocations, l.key(kindRevocations, f.ID), &r)
}

// Revocations returns the revocations recorded in the last
// RevocationRetention, except those whose storage key is in seen; it adds
// the keys it returns to seen, and drops from seen the keys no longer
// stored, so that seen stays as small as the records. An instance polls it
// to refuse, within its polling interval, the access tokens of families
// revoked elsewhere.
func (l *Ledger) Revocations(ctx context.Context, seen map[string]bool) ([]Revocation, error) {
	keys, err := l.list(ctx, kindRevocations)
	if err != nil {
		return nil, err
	}
	stored := make(map[string]bool, len(keys))
	for _, key := range keys {
		stored[key] = true
	}
	maps.DeleteFunc(seen, func(key string, _ bool) bool { return !stored[key] })
	now := l.now()
	var out []Revocation
	for _, key := range keys {
		if seen[key] {
			continue
		}
		var r Revocation
		if err := l.get(ctx, kindRevocations, key, &r); errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return out, err
		}
		seen[key] = true
		if !expired(r.ExpiresAt, now) {
			out = append(out, r)
		}
	}
	return out, nil
}

// FamilyFilter selects families; empty fields match any.
type FamilyFilter struct {
	User     string
	ClientID string
	Server   string
	// Revoked includes revoked families too.
	Revoked bool
}

func (f FamilyFilter) matches(fam *Family, now time.Time) bool {
	return (f.User == "" || fam.User == f.User) &&
		(f.ClientID == "" || fam.ClientID == f.ClientID) &&
		(f.Server == "" || fam.Server == f.Server) &&
		(f.Revoked || !fam.Revoked && !expired(fam.ExpiresAt, now))
}

// Families returns up to limit families that match filter, in storage-key
// order, starting after the cursor after ("" for the first page). next is
// the cursor of the following page, or "" after the last. It reads every
// record from the cursor on until the page is full, so filtering by user
// costs a scan: it serves an operator's listing, not a request path.
func (l *Ledger) Families(ctx context.Context, filter FamilyFilter, after string, limit int) (families []*Family, next string, err error) {
	keys, err := l.list(ctx, kindFamilies)
	if err != nil {
		return nil, "", err
	}
	// Pages follow the keys' order, which a Store does not promise.
	slices.Sort(keys)
	now := l.now()
	for _, key := range keys {
		cursor := key[strings.LastIndexByte(key, '/')+1:]
		if after != "" && cursor <= after {
			continue
		}
		if len(families) == limit {
			return families, families[len(families)-1].cursor, nil
		}
		var rec familyRecord
		if err := l.get(ctx, kindFamilies, key, &rec); errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return families, "", err
		}
		if f := rec.Family; filter.matches(&f, now) {
			f.cursor = cursor
			families = append(families, &f)
		}
	}
	return families, "", nil
}
