package grants

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

func TestClassify(t *testing.T) {
	answer := func(status int, code string) error {
		re := &oauth2.RetrieveError{ErrorCode: code, ErrorDescription: "the server's own words"}
		if status != 0 {
			re.Response = &http.Response{StatusCode: status}
		}
		return fmt.Errorf("downstream: %w", re)
	}
	renewals := []struct {
		name string
		r    renewal
	}{
		{"refresh", renewal{}},
		{"narrowing refresh", renewal{view: &narrowedView{scope: "a"}}},
		{"token exchange", renewal{view: &narrowedView{scope: "a", exchange: true}, subject: "access"}},
		{"client credentials", renewal{machine: true}},
	}
	const (
		u = unavailable
		e = grantEnded
		n = narrowingRefused
		c = credentialsRefused
	)
	for _, tc := range []struct {
		name string
		err  error
		want [4]failure // refresh, narrowing refresh, token exchange, client credentials
	}{
		{"network", errors.New("connection refused"), [4]failure{u, u, u, u}},
		{"400 invalid_grant", answer(400, "invalid_grant"), [4]failure{e, e, n, c}},
		{"400 invalid_scope", answer(400, "invalid_scope"), [4]failure{e, n, n, c}},
		{"400 without a code", answer(400, ""), [4]failure{e, n, n, c}},
		{"401 invalid_client", answer(401, "invalid_client"), [4]failure{e, n, n, c}},
		{"403 invalid_grant", answer(403, "invalid_grant"), [4]failure{e, e, n, c}},
		{"403 without a code", answer(403, ""), [4]failure{u, n, n, c}},
		{"429", answer(429, "slow_down"), [4]failure{u, n, n, c}},
		{"500 server_error", answer(500, "server_error"), [4]failure{u, u, u, u}},
		{"503 invalid_grant", answer(503, "invalid_grant"), [4]failure{e, e, u, u}},
		{"200 with an error code", answer(200, "invalid_scope"), [4]failure{u, n, n, c}},
		{"no answer, a code", answer(0, "invalid_scope"), [4]failure{u, n, n, c}},
		{"no answer, invalid_grant", answer(0, "invalid_grant"), [4]failure{e, e, n, c}},
	} {
		for i, rn := range renewals {
			t.Run(tc.name+"/"+rn.name, func(t *testing.T) {
				got, reason := classify(tc.err, rn.r)
				if got != tc.want[i] {
					t.Fatalf("classify = %d (%q), want %d", got, reason, tc.want[i])
				}
				if got == unavailable {
					return
				}
				if reason == "" || strings.Contains(reason, "own words") {
					t.Errorf("reason %q: want one quoting the code and status only", reason)
				}
			})
		}
	}
}
