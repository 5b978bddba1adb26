package ratelimit

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for the limiter.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestTake(t *testing.T) {
	type step struct {
		advance   time.Duration
		key       string
		wantOK    bool
		wantRetry time.Duration
	}
	tests := []struct {
		name  string
		rate  Rate
		steps []step
	}{
		{
			name: "burst up to the events, then refused until a token refills",
			rate: Rate{Events: 2, Window: 10 * time.Second},
			steps: []step{
				{key: "a", wantOK: true},
				{key: "a", wantOK: true},
				{key: "a", wantOK: false, wantRetry: 5 * time.Second},
				{advance: 4 * time.Second, key: "a", wantOK: false, wantRetry: time.Second},
				{advance: time.Second, key: "a", wantOK: true},
				{key: "a", wantOK: false, wantRetry: 5 * time.Second},
			},
		},
		{
			name: "keys are independent",
			rate: Rate{Events: 1, Window: time.Minute},
			steps: []step{
				{key: "a", wantOK: true},
				{key: "a", wantOK: false, wantRetry: time.Minute},
				{key: "b", wantOK: true},
			},
		},
		{
			name: "a long pause refills no more than the bucket holds",
			rate: Rate{Events: 2, Window: time.Second},
			steps: []step{
				{key: "a", wantOK: true},
				{advance: time.Hour, key: "a", wantOK: true},
				{key: "a", wantOK: true},
				{key: "a", wantOK: false, wantRetry: 500 * time.Millisecond},
			},
		},
		{
			name: "a refusal spends nothing",
			rate: Rate{Events: 1, Window: 2 * time.Second},
			steps: []step{
				{key: "a", wantOK: true},
				{advance: time.Second, key: "a", wantOK: false, wantRetry: time.Second},
				{advance: time.Second, key: "a", wantOK: true},
			},
		},
		{
			name: "a clock that steps back refills nothing",
			rate: Rate{Events: 1, Window: time.Minute},
			steps: []step{
				{key: "a", wantOK: true},
				{advance: -time.Hour, key: "a", wantOK: false, wantRetry: time.Minute},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{t: time.Unix(1_800_000_000, 0)}
			l := New(tt.rate, Options{Now: c.now})
			for i, s := range tt.steps {
				c.advance(s.advance)
				retry, ok := l.Take(s.key)
				if ok != s.wantOK || retry != s.wantRetry {
					t.Fatalf("step %d: Take(%q) = %v, %v; want %v, %v", i, s.key, retry, ok, s.wantRetry, s.wantOK)
				}
			}
		})
	}
}

func TestRefund(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := New(Rate{Events: 2, Window: time.Minute}, Options{Now: c.now})
	l.Take("a")
	l.Refund("a")
	l.Refund("a") // never beyond a full bucket
	l.Refund("b") // unknown keys are left alone
	allowed := 0
	for range 5 {
		if _, ok := l.Take("a"); ok {
			allowed++
		}
	}
	if allowed != 2 {
		t.Errorf("after take, refund, refund: %d of 5 takes allowed, want 2", allowed)
	}
	if l.size() != 1 {
		t.Errorf("Refund of an unknown key created it: %d keys", l.size())
	}
}

func TestUnlimited(t *testing.T) {
	for _, rate := range []Rate{{}, {Events: 5}, {Window: time.Second}, {Events: -1, Window: time.Second}} {
		l := New(rate, Options{})
		if l != nil {
			t.Errorf("New(%+v) = a limiter, want nil (unlimited)", rate)
		}
		for range 100 {
			if _, ok := l.Take("a"); !ok {
				t.Fatalf("an unlimited limiter (%+v) refused", rate)
			}
		}
		if l.size() != 0 {
			t.Errorf("a nil limiter reports %d keys", l.size())
		}
	}
}

// TestMaxKeys floods a limiter with distinct keys: it never tracks more
// than its bound, and it forgets the key seen least recently first.
func TestMaxKeys(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := New(Rate{Events: 1, Window: time.Hour}, Options{MaxKeys: 3, Now: c.now})
	for _, k := range []string{"a", "b", "c"} {
		l.Take(k)
	}
	// "a" was seen again, so "b" is now the least recent.
	if _, ok := l.Take("a"); ok {
		t.Fatal("a second take of a within the hour was allowed")
	}
	for i := range 1000 {
		if l.Take(fmt.Sprint("flood-", i)); l.size() > 3 {
			t.Fatalf("after %d distinct keys the limiter tracks %d, want at most 3", i+1, l.size())
		}
	}
	// The flood pushed every earlier key out: each starts with a full bucket.
	for _, k := range []string{"a", "b", "c"} {
		if _, ok := l.Take(k); !ok {
			t.Errorf("key %s was not forgotten under the flood", k)
		}
	}

	l = New(Rate{Events: 1, Window: time.Hour}, Options{MaxKeys: 2, Now: c.now})
	l.Take("a")
	l.Take("b")
	l.Take("a") // refused, but a is now the most recent
	l.Take("c") // evicts b
	if _, ok := l.Take("a"); ok {
		t.Error("the most recently seen key was evicted instead of the oldest")
	}
	if _, ok := l.Take("b"); !ok {
		t.Error("the least recently seen key was kept")
	}
}

func TestConcurrentTakes(t *testing.T) {
	l := New(Rate{Events: 100, Window: time.Hour}, Options{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, ok := l.Take("shared"); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed != 100 {
		t.Errorf("400 concurrent takes of a 100-token bucket allowed %d", allowed)
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    Rate
		wantErr string
	}{
		{in: "30/10m", want: Rate{30, 10 * time.Minute}},
		{in: "5/1s", want: Rate{5, time.Second}},
		{in: "100/h", want: Rate{100, time.Hour}},
		{in: "1/1h30m", want: Rate{1, 90 * time.Minute}},
		{in: "30", wantErr: "want <events>/<window>"},
		{in: "0/1m", wantErr: "positive integer"},
		{in: "-3/1m", wantErr: "positive integer"},
		{in: "x/1m", wantErr: "positive integer"},
		{in: "3/", wantErr: "positive duration"},
		{in: "3/0s", wantErr: "positive duration"},
		{in: "3/-1m", wantErr: "positive duration"},
		{in: "3/fortnight", wantErr: "positive duration"},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseRate(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("ParseRate(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestAddressKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"not-an-ip", "not-an-ip"},
	}
	for _, tt := range tests {
		if got := AddressKey(tt.in); got != tt.want {
			t.Errorf("AddressKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"30/10m", "100/h", "1/1h30m", "0/1s", "/", "9999999999999999999/1ns", "1/-1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if r.Unlimited() {
			t.Fatalf("ParseRate(%q) accepted an unlimited rate %+v", s, r)
		}
		again, err := ParseRate(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseRate(%q).String() = %q does not read back: %v, %v", s, r.String(), again, err)
		}
	})
}

func BenchmarkTake(b *testing.B) {
	b.Run("one key", func(b *testing.B) {
		l := New(Rate{Events: 1 << 30, Window: time.Second}, Options{})
		b.ReportAllocs()
		for b.Loop() {
			l.Take("192.0.2.7")
		}
	})
	b.Run("flood of new keys", func(b *testing.B) {
		l := New(Rate{Events: 10, Window: time.Minute}, Options{})
		keys := make([]string, 1<<16)
		for i := range keys {
			keys[i] = fmt.Sprint("key-", i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Take(keys[i&(len(keys)-1)])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		l := New(Rate{Events: 1 << 30, Window: time.Second}, Options{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Take("192.0.2.7")
			}
		})
	})
}
