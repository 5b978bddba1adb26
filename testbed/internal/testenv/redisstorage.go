package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
)

func init() {
	caddy.RegisterModule(new(TestRedisStorage))
}

// TestRedisStorage is a small certmagic.Storage over Redis, for tests only:
// the published Caddy Redis storage modules (e.g.
// github.com/pberkel/caddy-storage-redis) are what users should configure.
// It exists so tests prove that the gateway relies on nothing but the
// storage interface when several Caddy instances share one Redis.
//
// Each key is a hash holding the value and its modification time; a set
// indexes the keys for List; locks are SET NX with an expiry, released by
// a compare-and-delete script.
type TestRedisStorage struct {
	// Address is the Redis server's host:port.
	Address string `json:"address"`
	// Prefix namespaces every key; default "caddy".
	Prefix string `json:"prefix,omitempty"`

	client *redis.Client
	mu     sync.Mutex
	tokens map[string]string // lock name -> the token this instance holds
}

// CaddyModule returns the Caddy module information.
func (*TestRedisStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.mcp_gateway_test_redis",
		New: func() caddy.Module { return new(TestRedisStorage) },
	}
}

// UnmarshalCaddyfile parses: storage mcp_gateway_test_redis { address <host:port> prefix <p> }.
func (s *TestRedisStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	for d.NextBlock(0) {
		var target *string
		switch d.Val() {
		case "address":
			target = &s.Address
		case "prefix":
			target = &s.Prefix
		default:
			return d.Errf("unrecognized option %q", d.Val())
		}
		if !d.AllArgs(target) {
			return d.ArgErr()
		}
	}
	return nil
}

// CertMagicStorage connects (lazily: go-redis dials on first use) and
// returns the storage.
func (s *TestRedisStorage) CertMagicStorage() (certmagic.Storage, error) {
	if s.Address == "" {
		return nil, errors.New("mcp_gateway_test_redis: address is required")
	}
	if s.Prefix == "" {
		s.Prefix = "caddy"
	}
	s.client = redis.NewClient(&redis.Options{Addr: s.Address})
	s.tokens = map[string]string{}
	return s, nil
}

func (s *TestRedisStorage) key(k string) string { return s.Prefix + ":k:" + k }
func (s *TestRedisStorage) index() string       { return s.Prefix + ":index" }

// Store writes value at key.
func (s *TestRedisStorage) Store(ctx context.Context, key string, value []byte) error {
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.key(key), "v", value, "m", time.Now().UnixNano())
		p.SAdd(ctx, s.index(), key)
		return nil
	})
	return err
}

// Load reads the value at key.
func (s *TestRedisStorage) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := s.client.HGet(ctx, s.key(key), "v").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fs.ErrNotExist
	}
	return v, err
}

// Delete removes key and every key below it.
func (s *TestRedisStorage) Delete(ctx context.Context, key string) error {
	below, err := s.List(ctx, key, true)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	victims := append(below, key)
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range victims {
			p.Del(ctx, s.key(k))
			p.SRem(ctx, s.index(), k)
		}
		return nil
	})
	return err
}

// Exists reports whether key holds a value.
func (s *TestRedisStorage) Exists(ctx context.Context, key string) bool {
	n, err := s.client.Exists(ctx, s.key(key)).Result()
	return err == nil && n > 0
}

// List returns the keys below path: all of them when recursive, otherwise
// its direct children.
func (s *TestRedisStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	all, err := s.client.SMembers(ctx, s.index()).Result()
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(path, "/") + "/"
	if path == "" {
		prefix = ""
	}
	seen := map[string]bool{}
	for _, k := range all {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok || rest == "" {
			continue
		}
		if !recursive {
			if child, _, nested := strings.Cut(rest, "/"); nested {
				k = prefix + child
			}
		}
		seen[k] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return nil, fs.ErrNotExist
	}
	return keys, nil
}

// Stat describes key.
func (s *TestRedisStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	vals, err := s.client.HMGet(ctx, s.key(key), "v", "m").Result()
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	if vals[0] == nil {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	v, _ := vals[0].(string)
	m, _ := vals[1].(string)
	nanos, _ := strconv.ParseInt(m, 10, 64)
	return certmagic.KeyInfo{Key: key, Modified: time.Unix(0, nanos), Size: int64(len(v)), IsTerminal: true}, nil
}

// lockTTL bounds how long a lock outlives a crashed holder.
const lockTTL = 30 * time.Second

// Lock takes the named lock across every client of the Redis server.
func (s *TestRedisStorage) Lock(ctx context.Context, name string) error {
	buf := make([]byte, 16)
	_, _ = rand.Read(buf)
	token := hex.EncodeToString(buf)
	for {
		ok, err := s.client.SetNX(ctx, s.Prefix+":lock:"+name, token, lockTTL).Result()
		if err != nil {
			return err
		}
		if ok {
			s.mu.Lock()
			s.tokens[name] = token
			s.mu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

var unlockScript = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) end return 0`)

// Unlock releases a lock this instance holds.
func (s *TestRedisStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	token, ok := s.tokens[name]
	delete(s.tokens, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("mcp_gateway_test_redis: lock %q is not held here", name)
	}
	return unlockScript.Run(ctx, s.client, []string{s.Prefix + ":lock:" + name}, token).Err()
}

// String identifies the storage, so instances on one server share state.
func (s *TestRedisStorage) String() string { return "redis://" + s.Address + "/" + s.Prefix }

// RedisServer is a redis-server process on 127.0.0.1.
type RedisServer struct {
	Addr string
	cmd  *exec.Cmd
}

// ErrNoRedis means redis-server is not installed (apt-get install
// redis-server).
var ErrNoRedis = errors.New("testenv: redis-server is not installed")

// StartRedis starts a throwaway redis-server on a free 127.0.0.1 port,
// without persistence, and waits until it answers.
func StartRedis() (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedis
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "redis-*")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &RedisServer{Addr: addr, cmd: cmd}
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if client.Ping(context.Background()).Err() == nil {
			return r, nil
		}
		if time.Now().After(deadline) {
			r.Close()
			return nil, fmt.Errorf("testenv: redis-server on %s did not answer", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pause freezes the server (SIGSTOP), the way an overloaded or
// partitioned storage looks to its clients: connections stay open and
// nothing answers.
func (r *RedisServer) Pause() error { return r.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume lets a paused server answer again, with its data intact.
func (r *RedisServer) Resume() error { return r.cmd.Process.Signal(syscall.SIGCONT) }

// Close stops the server.
func (r *RedisServer) Close() error {
	_ = r.cmd.Process.Signal(syscall.SIGCONT)
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	return nil
}

// Interface guards.
var (
	_ caddy.StorageConverter = (*TestRedisStorage)(nil)
	_ certmagic.Storage      = (*TestRedisStorage)(nil)
	_ caddyfile.Unmarshaler  = (*TestRedisStorage)(nil)
)
