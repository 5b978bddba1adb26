package store

import (
	"context"
	"fmt"
	"sync"
)

// Locked runs fn holding the storage lock name of s, so that fn's
// read-modify-write happens once across every instance sharing the
// storage. fn must re-read what it depends on: another instance may have
// changed it while this one waited for the lock.
//
// The lock is released even when ctx has ended by then, or every instance
// would wait for it until it goes stale. A failure to release it is not
// fn's failure and is not reported: what fn wrote is durable, and an
// error would invite a retry that, for a code or a refresh token, looks
// like a replay, and for a new signing key leaves the instance that made it
// without it. A lock left behind expires by the storage's own rules.
func Locked(ctx context.Context, s Store, name string, fn func() error) error {
	if err := s.Lock(ctx, name); err != nil {
		return fmt.Errorf("store: taking the storage lock %s: %w", name, err)
	}
	defer func() { _ = s.Unlock(context.WithoutCancel(ctx), name) }()
	return fn()
}

// Locker queues one process's contenders for a storage lock in memory, so
// that only one of them at a time waits on the storage's own lock, which
// may poll (certmagic's file storage checks once a second): the others wait
// on a channel, and their context ending releases them at once. Use it
// for locks that requests contend for; Locked alone suits the rare ones.
//
// The zero value is ready to use. A Locker is safe for concurrent use and
// must not be copied after first use.
type Locker struct {
	mu sync.Mutex
	m  map[string]*lockEntry // entries exist only while someone holds or awaits them
}

type lockEntry struct {
	sem  chan struct{} // holds a token while locked
	refs int           // holders and waiters; guarded by Locker.mu
}

// Locked runs fn as the package's Locked does, having first waited for
// this process's earlier contenders for name.
func (l *Locker) Locked(ctx context.Context, s Store, name string, fn func() error) error {
	unlock, err := l.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	return Locked(ctx, s, name, fn)
}

// lock takes the in-process lock name and returns the function that
// releases it.
func (l *Locker) lock(ctx context.Context, name string) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*lockEntry)
	}
	e := l.m[name]
	if e == nil {
		e = &lockEntry{sem: make(chan struct{}, 1)}
		l.m[name] = e
	}
	e.refs++
	l.mu.Unlock()

	unlock := func() { <-e.sem; l.release(name, e) }
	select {
	case e.sem <- struct{}{}: // a free lock is taken even if ctx is done
		return unlock, nil
	default:
	}
	select {
	case e.sem <- struct{}{}:
		return unlock, nil
	case <-ctx.Done():
		l.release(name, e)
		return nil, ctx.Err()
	}
}

func (l *Locker) release(name string, e *lockEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.m, name)
	}
}
