package main

import (
	"fmt"
	"testing"
	"time"
)

func TestCallBodyIsOneKilobyte(t *testing.T) {
	for _, id := range []string{"1-1", "2-99999"} {
		if n := len(fmt.Sprintf(callTemplate(), id)); n < callBodySize-8 || n > callBodySize {
			t.Errorf("body with id %q is %d bytes, want about %d", id, n, callBodySize)
		}
	}
}

func TestParseWRK(t *testing.T) {
	out := "Running 1s test @ http://127.0.0.1:1/json\n  2 threads and 32 connections\n" +
		"RESULT requests=1500 duration_us=1000000 p50_us=2100 p99_us=9000 mean_us=2500 errors=3\n"
	r, err := parseWRK(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 1500 || r.rate() != 1500 || r.p50 != 2100*time.Microsecond || r.p99 != 9*time.Millisecond || r.errors != 3 {
		t.Fatalf("parsed %+v", r)
	}
	for _, bad := range []string{"", "RESULT requests=0 duration_us=0", "RESULT requests=x"} {
		if _, err := parseWRK(bad); err == nil {
			t.Errorf("parseWRK(%q) succeeded", bad)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]wrkResult{
		{requests: 300, duration: time.Second, p99: 3 * time.Millisecond, proxyCPU: 30 * time.Millisecond},
		{requests: 100, duration: time.Second, p99: 9 * time.Millisecond, proxyCPU: 10 * time.Millisecond},
		{requests: 200, duration: time.Second, p99: 5 * time.Millisecond, proxyCPU: 20 * time.Millisecond},
	})
	if s.rate != 200 || s.minRate != 100 || s.maxRate != 300 || s.p99 != 5*time.Millisecond || s.proxyCPU != 100*time.Microsecond {
		t.Fatalf("summary %+v", s)
	}
}
