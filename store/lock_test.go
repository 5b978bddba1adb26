package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// countingLocks records the most callers that were in its Lock at once.
type countingLocks struct {
	*MemoryStore
	in      atomic.Int64
	waiting atomic.Int64 // the most at once
}

func (c *countingLocks) Lock(ctx context.Context, name string) error {
	n := c.in.Add(1)
	defer c.in.Add(-1)
	for {
		most := c.waiting.Load()
		if n <= most || c.waiting.CompareAndSwap(most, n) {
			break
		}
	}
	return c.MemoryStore.Lock(ctx, name)
}

// unlockFailing is a Store whose Unlock fails after releasing the lock.
type unlockFailing struct {
	*MemoryStore
	unlocks int
}

func (u *unlockFailing) Unlock(ctx context.Context, name string) error {
	u.unlocks++
	if err := u.MemoryStore.Unlock(ctx, name); err != nil {
		return err
	}
	return errors.New("storage offline")
}

func TestLocked(t *testing.T) {
	boom := errors.New("fn failed")
	cancelled, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name     string
		store    Store
		ctx      context.Context
		fn       error // what fn returns
		want     error // nil: no error
		runs     bool  // fn runs
		unlocked bool  // the lock is free afterwards
	}{
		{"fn's result", NewMemoryStore(), context.Background(), nil, nil, true, true},
		{"fn's error", NewMemoryStore(), context.Background(), boom, boom, true, true},
		{"an unlock failure is not fn's", &unlockFailing{MemoryStore: NewMemoryStore()}, context.Background(), nil, nil, true, true},
		{"an unlock failure keeps fn's error", &unlockFailing{MemoryStore: NewMemoryStore()}, context.Background(), boom, boom, true, true},
		{"a lock not taken", failingStore{boom}, context.Background(), nil, boom, false, true},
		{"released after ctx ended", NewMemoryStore(), cancelled, nil, nil, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ran := false
			err := Locked(tc.ctx, tc.store, "n", func() error {
				ran = true
				if tc.name == "released after ctx ended" {
					cancel()
				}
				return tc.fn
			})
			if (tc.want == nil) != (err == nil) || !errors.Is(err, tc.want) {
				t.Errorf("Locked: err = %v, want %v", err, tc.want)
			}
			if ran != tc.runs {
				t.Errorf("fn ran: %v, want %v", ran, tc.runs)
			}
			if _, ok := tc.store.(failingStore); ok {
				return
			}
			// The lock is free: taking it does not block.
			ctx, stop := context.WithCancel(context.Background())
			stop()
			if err := tc.store.Lock(ctx, "n"); err != nil {
				t.Errorf("the lock is still held after Locked: %v", err)
			}
		})
	}
}

func TestLockerQueuesInProcess(t *testing.T) {
	ctx := context.Background()
	var l Locker
	s := &countingLocks{MemoryStore: NewMemoryStore()}
	const n = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		holders int
	)
	for range n {
		wg.Go(func() {
			err := l.Locked(ctx, s, "n", func() error {
				mu.Lock()
				holders++
				h := holders
				mu.Unlock()
				if h != 1 {
					t.Errorf("%d holders at once", h)
				}
				mu.Lock()
				holders--
				mu.Unlock()
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := s.waiting.Load(); got > 1 {
		t.Errorf("%d contenders waited on the storage's lock at once; want one at a time", got)
	}
	if len(l.m) != 0 {
		t.Errorf("%d entries remain after every lock was released; want 0", len(l.m))
	}
}

func TestLockerContext(t *testing.T) {
	ctx := context.Background()
	var l Locker
	unlock, err := l.lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.lock(cancelled, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock of a held name with a done context: err = %v, want context.Canceled", err)
	}
	// A free lock is taken even with a done context.
	unlockB, err := l.lock(cancelled, "b")
	if err != nil {
		t.Fatalf("lock of another, free name: %v", err)
	}
	unlockB()
	unlock()
	if len(l.m) != 0 {
		t.Errorf("%d entries remain after every lock was released; want 0", len(l.m))
	}
}
