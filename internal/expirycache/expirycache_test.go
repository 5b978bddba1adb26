package expirycache

import (
	"fmt"
	"hash/maphash"
	"slices"
	"testing"
	"time"
)

var seed = maphash.MakeSeed()

func hash(k string) uint64 { return maphash.String(seed, k) }

func newStringCache(size int) *Cache[string, int] { return New[string, int](size) }

func TestBounded(t *testing.T) {
	for _, size := range []int{1, 2, 3, 15, 16, 17, 100, 10000} {
		c := newStringCache(size)
		limit := 0
		for i := range c.shards {
			if c.shards[i].limit < 1 {
				t.Fatalf("size %d: shard %d has limit %d", size, i, c.shards[i].limit)
			}
			limit += c.shards[i].limit
		}
		if n := len(c.shards); limit != size || n > maxShards || n&(n-1) != 0 {
			t.Fatalf("size %d: %d shards take %d entries", size, n, limit)
		}
		now := time.Now().UnixNano()
		for i := range 3 * size {
			k := fmt.Sprint("k", i)
			c.Put(hash(k), k, i, now+int64(1+i%7)*int64(time.Minute), now)
			if n := c.Len(); n > size {
				t.Fatalf("size %d: %d entries after %d insertions", size, n, i+1)
			}
		}
	}
}

func TestGetExpires(t *testing.T) {
	c := newStringCache(4)
	c.Put(hash("a"), "a", 1, 100, 0)
	if v, ok := c.Get(hash("a"), "a", 99); !ok || v != 1 {
		t.Fatalf("before its expiry: %v %v", v, ok)
	}
	if _, ok := c.Get(hash("a"), "a", 100); ok {
		t.Fatal("an entry served at its expiry")
	}
	if c.Len() != 0 {
		t.Fatal("an expired entry found by Get was kept")
	}
	c.Put(hash("b"), "b", 2, 100, 0)
	c.Remove(hash("b"), "b")
	if _, ok := c.Get(hash("b"), "b", 0); ok || c.Len() != 0 {
		t.Fatal("Remove left the entry")
	}
}

func TestEvict(t *testing.T) {
	const now = 1000
	tests := []struct {
		name    string
		expires []int64 // of keys 0, 1, 2...
		want    []int   // keys left
	}{
		{"drops the expired", []int64{now - 1, now + 2, now + 3, now}, []int{1, 2}},
		{"drops the first to expire when none has", []int64{now + 3, now + 1, now + 2}, []int{0, 2}},
		{"expiring exactly now counts as expired", []int64{now, now + 10}, []int{1}},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &shard[int, int]{entries: map[int]entry[int]{}}
			for k, exp := range tt.expires {
				s.entries[k] = entry[int]{expires: exp}
			}
			s.evict(now)
			var left []int
			for k := range s.entries {
				left = append(left, k)
			}
			slices.Sort(left)
			if !slices.Equal(left, tt.want) {
				t.Fatalf("left %v, want %v", left, tt.want)
			}
		})
	}
}

func ExampleCache() {
	seed := maphash.MakeSeed()
	c := New[string, string](1000)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := maphash.String(seed, "alice")
	c.Put(h, "alice", "token-1", now.Add(time.Hour).UnixNano(), now.UnixNano())
	v, ok := c.Get(h, "alice", now.Add(time.Minute).UnixNano())
	fmt.Println(v, ok)
	_, ok = c.Get(h, "alice", now.Add(2*time.Hour).UnixNano())
	fmt.Println(ok)
	// Output:
	// token-1 true
	// false
}

func BenchmarkGet(b *testing.B) {
	c := newStringCache(10000)
	now := time.Now().UnixNano()
	h := hash("user-1")
	c.Put(h, "user-1", 1, now+int64(time.Hour), now)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get(hash("user-1"), "user-1", now); !ok {
			b.Fatal("miss")
		}
	}
}
