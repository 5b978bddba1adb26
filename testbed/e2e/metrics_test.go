package e2e_test

import (
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/testbed/internal/testenv"
)

// TestMetrics scrapes Caddy's own metrics endpoint after a flow: the
// gateway's counters are there with low-cardinality labels only, they
// survive a config reload without a duplicate registration, and a
// downstream refresh is timed.
func TestMetrics(t *testing.T) {
	// A 4s downstream token is due for refresh after 2s.
	e := startEnv(t, testenv.ProviderConfig{AccessTokenTTL: 4 * time.Second})
	c := e.register(t, "support-assistant")
	tok := c.login(t, "support-assistant", "")
	c.refresh(t, "support-assistant", tok.RefreshToken)
	bearerStatus(t, e.public+"/support", "")
	bearerStatus(t, e.public+"/support", tok.AccessToken)

	metrics := scrape(t, e)
	for _, want := range []struct {
		series string
		min    float64
	}{
		{`caddy_mcp_gateway_authorizations_total{gateway="acme",result="started",server="support-assistant"}`, 1},
		{`caddy_mcp_gateway_authorizations_total{gateway="acme",result="completed",server="support-assistant"}`, 1},
		{`caddy_mcp_gateway_tokens_total{gateway="acme",grant_type="authorization_code",result="issued",server="support-assistant"}`, 1},
		{`caddy_mcp_gateway_tokens_total{gateway="acme",grant_type="refresh_token",result="issued",server="support-assistant"}`, 1},
		{`caddy_mcp_gateway_requests_total{gateway="acme",result="allowed",server="support-assistant"}`, 1},
		{`caddy_mcp_gateway_requests_total{gateway="acme",result="unauthorized",server="support-assistant"}`, 1},
		{`caddy_mcp_gateway_grants{gateway="acme"}`, 0},
	} {
		if got, ok := metrics[want.series]; !ok || got < want.min {
			t.Errorf("%s = %v (present: %v), want at least %v", want.series, got, ok, want.min)
		}
	}
	for series := range metrics {
		if strings.Contains(series, c.ID) || strings.Contains(series, testenv.DefaultUser().Subject) {
			t.Errorf("a metric names a client or a user: %s", series)
		}
	}

	// A reload keeps the counts and registers the collectors again.
	e.load("tickets.read accounts.read")
	// A call refreshes the downstream token once it is due.
	refreshes := `caddy_mcp_gateway_downstream_refreshes_total{gateway="acme",result="ok"}`
	var after map[string]float64
	waitUntil(t, 10*time.Second, "a call after the reload refreshes the downstream token", func() error {
		bearerStatus(t, e.public+"/support", tok.AccessToken)
		if after = scrape(t, e); after[refreshes] <= metrics[refreshes] {
			return errors.New("no downstream refresh counted since the reload")
		}
		return nil
	})
	allowed := `caddy_mcp_gateway_requests_total{gateway="acme",result="allowed",server="support-assistant"}`
	if after[allowed] < metrics[allowed]+1 {
		t.Errorf("after a reload %s = %v, was %v", allowed, after[allowed], metrics[allowed])
	}
	if n := after[refreshes]; n < 1 {
		t.Errorf("no downstream refresh counted: %v", n)
	}
	if n := after[`caddy_mcp_gateway_downstream_refresh_duration_seconds_count{gateway="acme"}`]; n < 1 {
		t.Errorf("no downstream refresh timed: %v", n)
	}
}

var sample = regexp.MustCompile(`^(\S+\{[^}]*\}|\S+) (\S+)$`)

// scrape reads the admin endpoint's /metrics into series → value.
func scrape(t *testing.T, e *env) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		m := sample.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(m[2], 64); err == nil {
			out[m[1]] = v
		}
	}
	return out
}
