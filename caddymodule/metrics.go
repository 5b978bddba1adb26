package caddymodule

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/authserver"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
)

// gatewayMetrics are a gateway's Prometheus collectors. They live with the
// gateway's runtime in the usage pool, so counts survive config reloads; each new config
// registers them in its own registry, which Caddy serves with its metrics.
// Labels are the gateway, the server and the result: never a user or a
// client, whose numbers have no bound.
type gatewayMetrics struct {
	authorizations      *prometheus.CounterVec
	tokens              *prometheus.CounterVec
	requests            *prometheus.CounterVec
	rateLimited         *prometheus.CounterVec
	downstreamRefreshes *prometheus.CounterVec
	downstreamLatency   prometheus.Histogram
	grants              prometheus.GaugeFunc
}

const metricsNamespace, metricsSubsystem = "caddy", "mcp_gateway"

func newGatewayMetrics(gateway string, grants func() float64) *gatewayMetrics {
	labels := prometheus.Labels{"gateway": gateway}
	counter := func(name, help string, variable ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: name, Help: help, ConstLabels: labels}, variable)
	}
	return &gatewayMetrics{
		authorizations: counter("authorizations_total",
			"Authorization requests by result: started (consent shown or remembered), completed (code issued), denied (by the user), refused (invalid request or failed login).", "server", "result"),
		tokens: counter("tokens_total",
			"Token endpoint requests by grant type and result (issued, refused).", "server", "grant_type", "result"),
		requests: counter("requests_total",
			"Requests to MCP server paths by result: allowed (passed on to the upstream), unauthorized (401), forbidden (403), unavailable (503), invalid (400 or 413: a body that call scopes could not be checked against, or a path below the server with a dot segment, an encoded slash or a backslash); upstream_error counts the allowed ones the upstream failed (502), unknown_session those refused for their session ID: not issued to their user, client and server (404), or more than one (400).", "server", "result"),
		rateLimited: counter("rate_limited_total",
			"Requests refused by a rate limit.", "server"),
		downstreamRefreshes: counter("downstream_refreshes_total",
			"Refreshes of users' downstream tokens by result: ok, ended (the grant is dead), failed (transient).", "result"),
		downstreamLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "downstream_refresh_duration_seconds", Help: "Duration of downstream token refreshes.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
		grants: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "grants", Help: "Users with a stored downstream grant, as counted at the last sweep of expired records.",
			ConstLabels: labels}, grants),
	}
}

func (m *gatewayMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.authorizations, m.tokens, m.requests, m.rateLimited,
		m.downstreamRefreshes, m.downstreamLatency, m.grants}
}

// register adds the collectors to a config's registry. A collector already
// there (a second handler sharing this gateway) is fine; another gateway's
// collector of the same name and labels (two sites with one gateway name)
// keeps its place, and this one goes unexported, with a warning.
func (m *gatewayMetrics) register(reg prometheus.Registerer, logger *zap.Logger, gateway string) {
	if reg == nil {
		return
	}
	for _, c := range m.collectors() {
		err := reg.Register(c)
		var already prometheus.AlreadyRegisteredError
		if err == nil || errors.As(err, &already) && already.ExistingCollector == c {
			continue
		}
		logger.Warn("a metric of this gateway is not exported", zap.String("gateway", gateway), zap.Error(err))
	}
}

// observeRefresh records one downstream refresh.
func (m *gatewayMetrics) observeRefresh(took time.Duration, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		return
	case errors.Is(err, grants.ErrGrantDead):
		result = "ended"
	default:
		result = "failed"
	}
	m.downstreamRefreshes.WithLabelValues(result).Inc()
	m.downstreamLatency.Observe(took.Seconds())
}

// outcomeLabels are the metric and labels of each authserver.Outcome.
var outcomeLabels = [authserver.NumOutcomes]struct {
	metric string // "authorizations", "tokens", "requests", "rate_limited"
	values []string
}{
	authserver.AuthorizationStarted:          {"authorizations", []string{"started"}},
	authserver.AuthorizationCompleted:        {"authorizations", []string{"completed"}},
	authserver.AuthorizationDenied:           {"authorizations", []string{"denied"}},
	authserver.AuthorizationRefused:          {"authorizations", []string{"refused"}},
	authserver.TokenIssuedCode:               {"tokens", []string{"authorization_code", "issued"}},
	authserver.TokenIssuedRefresh:            {"tokens", []string{"refresh_token", "issued"}},
	authserver.TokenRefusedCode:              {"tokens", []string{"authorization_code", "refused"}},
	authserver.TokenRefusedRefresh:           {"tokens", []string{"refresh_token", "refused"}},
	authserver.TokenRefusedOther:             {"tokens", []string{"other", "refused"}},
	authserver.TokenIssuedClientCredentials:  {"tokens", []string{"client_credentials", "issued"}},
	authserver.TokenRefusedClientCredentials: {"tokens", []string{"client_credentials", "refused"}},
	authserver.TokenIssuedJWTBearer:          {"tokens", []string{"jwt_bearer", "issued"}},
	authserver.TokenRefusedJWTBearer:         {"tokens", []string{"jwt_bearer", "refused"}},
	authserver.RequestAllowed:                {"requests", []string{"allowed"}},
	authserver.RequestUnauthorized:           {"requests", []string{"unauthorized"}},
	authserver.RequestForbidden:              {"requests", []string{"forbidden"}},
	authserver.RequestUnavailable:            {"requests", []string{"unavailable"}},
	authserver.RequestUpstreamError:          {"requests", []string{"upstream_error"}},
	authserver.RequestInvalid:                {"requests", []string{"invalid"}},
	authserver.RequestUnknownSession:         {"requests", []string{"unknown_session"}},
	authserver.RateLimited:                   {"rate_limited", nil},
}

// outcomeCounter is the edge's authserver.Counter: each server's counters
// are bound to their labels once, at provision, so counting on the hot
// path is a map lookup and an atomic add.
type outcomeCounter map[*authserver.Server]*[authserver.NumOutcomes]prometheus.Counter

func newOutcomeCounter(servers []*authserver.Server, metricsOf map[*authserver.Server]*gatewayMetrics) outcomeCounter {
	oc := make(outcomeCounter, len(servers))
	for _, s := range servers {
		m := metricsOf[s]
		var bound [authserver.NumOutcomes]prometheus.Counter
		for o, l := range outcomeLabels {
			values := append([]string{s.Name}, l.values...)
			switch l.metric {
			case "authorizations":
				bound[o] = m.authorizations.WithLabelValues(values...)
			case "tokens":
				bound[o] = m.tokens.WithLabelValues(values...)
			case "requests":
				bound[o] = m.requests.WithLabelValues(values...)
			case "rate_limited":
				bound[o] = m.rateLimited.WithLabelValues(values...)
			}
		}
		oc[s] = &bound
	}
	return oc
}

// Count implements authserver.Counter.
func (oc outcomeCounter) Count(s *authserver.Server, o authserver.Outcome) {
	if c := oc[s]; c != nil && o < authserver.NumOutcomes {
		c[o].Inc()
	}
}

var _ authserver.Counter = outcomeCounter(nil)
