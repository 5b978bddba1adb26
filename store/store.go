// Package store holds the storage primitives the gateway's durable state
// is built on: the [Store] interface (which Caddy's certmagic.Storage
// satisfies, so the state lives in whatever storage Caddy is configured
// with and every instance sharing it shares the state), the storage lock
// helpers [Locked] and [Locker] that make a read-modify-write happen once
// across instances, the [Sealer] that encrypts secrets at rest with
// AES-256-GCM, and its keys ([KeyFromSecret], [LoadOrCreateKey]).
//
// Package grants keeps the gateway's records in a Store and
// package accesstoken its signing keys; neither depends on the other.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
)

// Store is the durable key-value storage the gateway keeps its state in.
// Keys are slash-separated paths. certmagic.Storage (Caddy's configured
// storage: the file system, Redis, ...) satisfies it, which is why it has no
// method certmagic.Storage lacks.
type Store interface {
	// Lock takes the named lock, blocking until it is free or ctx is done.
	// It excludes every other holder of the same storage, in this process
	// or another.
	Lock(ctx context.Context, name string) error
	// Unlock releases a lock taken with Lock.
	Unlock(ctx context.Context, name string) error
	// Store writes value at key, replacing what was there.
	Store(ctx context.Context, key string, value []byte) error
	// Load reads the value at key. A missing key is an error satisfying
	// errors.Is(err, fs.ErrNotExist).
	Load(ctx context.Context, key string) ([]byte, error)
	// Delete removes key and every key below it. A missing key is no error.
	Delete(ctx context.Context, key string) error
	// List returns the keys below path: all of them when recursive,
	// otherwise its direct children (files and directories).
	List(ctx context.Context, path string, recursive bool) ([]string, error)
}

// MemoryStore is a Store held in memory, for tests and single-process use.
// Its zero value is ready to use.
type MemoryStore struct {
	mu    sync.Mutex
	data  map[string][]byte
	locks map[string]chan struct{} // closed on Unlock to wake waiters
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{}
}

// Lock takes the named lock, blocking until it is free or ctx is done.
func (m *MemoryStore) Lock(ctx context.Context, name string) error {
	for {
		m.mu.Lock()
		held, ok := m.locks[name]
		if !ok {
			if m.locks == nil {
				m.locks = make(map[string]chan struct{})
			}
			m.locks[name] = make(chan struct{})
			m.mu.Unlock()
			return nil
		}
		m.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Unlock releases the named lock. Releasing a lock that is not held is an
// error.
func (m *MemoryStore) Unlock(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	held, ok := m.locks[name]
	if !ok {
		return fmt.Errorf("store: unlocking %q, which is not locked", name)
	}
	delete(m.locks, name)
	close(held)
	return nil
}

// Store writes a copy of value at key.
func (m *MemoryStore) Store(_ context.Context, key string, value []byte) error {
	if key == "" {
		return errors.New("store: storing under an empty key")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.data == nil {
		m.data = make(map[string][]byte)
	}
	m.data[key] = append([]byte(nil), value...)
	return nil
}

// Load returns a copy of the value at key, or an error wrapping
// fs.ErrNotExist.
func (m *MemoryStore) Load(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[key]
	if !ok {
		return nil, fmt.Errorf("store: key %q: %w", key, fs.ErrNotExist)
	}
	return append([]byte(nil), v...), nil
}

// Delete removes key and every key below it.
func (m *MemoryStore) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, key)
	dir := key + "/"
	for k := range m.data {
		if strings.HasPrefix(k, dir) {
			delete(m.data, k)
		}
	}
	return nil
}

// List returns the keys below path, sorted, like certmagic.FileStorage:
// every key when recursive, otherwise the direct children, directories
// included. A path with nothing below it is an error wrapping
// fs.ErrNotExist.
func (m *MemoryStore) List(_ context.Context, path string, recursive bool) ([]string, error) {
	dir := strings.TrimSuffix(path, "/") + "/"
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[string]bool)
	for k := range m.data {
		rest, ok := strings.CutPrefix(k, dir)
		if !ok {
			continue
		}
		if recursive {
			// Directories are listed too, as a file-system walk would.
			for i := strings.IndexByte(rest, '/'); i >= 0; {
				seen[dir+rest[:i]] = true
				j := strings.IndexByte(rest[i+1:], '/')
				if j < 0 {
					break
				}
				i += 1 + j
			}
			seen[k] = true
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		seen[dir+rest] = true
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("store: listing %q: %w", path, fs.ErrNotExist)
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}
