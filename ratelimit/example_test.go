package ratelimit_test

import (
	"fmt"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/ratelimit"
)

func ExampleLimiter_Take() {
	rate, err := ratelimit.ParseRate("2/1m")
	if err != nil {
		panic(err)
	}
	now := time.Unix(1_800_000_000, 0)
	limiter := ratelimit.New(rate, ratelimit.Options{Now: func() time.Time { return now }})
	key := ratelimit.AddressKey("2001:db8::1")
	for range 3 {
		retryAfter, ok := limiter.Take(key)
		fmt.Println(ok, retryAfter)
	}
	// Output:
	// true 0s
	// true 0s
	// false 30s
}
