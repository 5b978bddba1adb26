package accesstoken

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// revocationShards is the number of shards of a revocationSet.
const revocationShards = 64

// minSweep is the smallest shard size at which a revocation first drops
// the lapsed ones.
const minSweep = 64

// revocationSet holds revoked refresh families, by the reference their
// access tokens carry, each until its revocation lapses. Revocations
// arrive one at a time (a client's logout, a replayed code, another
// instance's record), possibly a hundred thousand of them held at once,
// and every request looks one up: so a revocation locks and writes one
// shard of the set, never copying it, and a lookup takes one shard's read
// lock, or nothing at all while no revocation is held.
type revocationSet struct {
	seed   maphash.Seed
	held   atomic.Int64 // revocations held, lapsed ones not yet dropped included
	shards [revocationShards]revocationShard
}

type revocationShard struct {
	mu    sync.RWMutex
	until map[string]int64 // reference → Unix nanoseconds
	// sweepAt is the size at which the next revocation first drops the
	// lapsed ones: twice the size the last sweep left, so that sweeping
	// costs a constant per revocation on average.
	sweepAt int
}

func newRevocationSet() *revocationSet {
	return &revocationSet{seed: maphash.MakeSeed()}
}

func (r *revocationSet) shard(ref string) *revocationShard {
	return &r.shards[maphash.String(r.seed, ref)%revocationShards]
}

// revoke holds the family ref revoked until until; both times are Unix nanoseconds.
// A revocation that lapses earlier than one already held changes nothing.
func (r *revocationSet) revoke(ref string, until, now int64) {
	if until <= now {
		return
	}
	s := r.shard(ref)
	// A replayed code or a repeated poll revokes again what is revoked
	// already: answered under the read lock.
	s.mu.RLock()
	held := s.until[ref]
	s.mu.RUnlock()
	if held >= until {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held, ok := s.until[ref]
	if held >= until {
		return
	}
	if s.until == nil {
		s.until = make(map[string]int64)
	}
	if !ok && len(s.until) >= s.sweepAt {
		s.sweep(r, now)
	}
	if !ok {
		r.held.Add(1)
	}
	s.until[ref] = until
}

// sweep drops the shard's lapsed revocations; s.mu is held.
func (s *revocationShard) sweep(r *revocationSet, now int64) {
	dropped := 0
	for ref, until := range s.until {
		if until <= now {
			delete(s.until, ref)
			dropped++
		}
	}
	r.held.Add(int64(-dropped))
	s.sweepAt = max(2*len(s.until), minSweep)
}

// revokedAt reports whether ref is revoked at now (Unix nanoseconds).
func (r *revocationSet) revokedAt(ref string, now int64) bool {
	if ref == "" || r.held.Load() == 0 {
		return false
	}
	s := r.shard(ref)
	s.mu.RLock()
	until, ok := s.until[ref]
	s.mu.RUnlock()
	return ok && now < until
}

// len returns the number of revocations held, lapsed ones not yet dropped
// included.
func (r *revocationSet) len() int { return int(r.held.Load()) }
