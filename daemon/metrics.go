package daemon

import (
	"errors"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/exless/exless/daemon/peer"
	"github.com/exless/exless/daemon/policy"
)

// serverMetrics is one Server's Prometheus registry. Each Server has its
// own, never the global default, so that several daemons in one process
// (tests, benchmarks) keep apart. Events with no counter elsewhere are
// counted here; state the broker and server already keep (status counters,
// held tokens, degraded reasons, the lease) is read at scrape time by
// stateCollector, so nothing is counted twice and no goroutine runs.
type serverMetrics struct {
	reg       *prometheus.Registry
	handler   http.Handler
	requests  *prometheus.CounterVec
	decisions *prometheus.CounterVec
	attest    *prometheus.HistogramVec

	total        atomic.Uint64 // requests answered, for status
	attestFailed atomic.Uint64 // peers that could not be identified, for status
	missLimited  atomic.Uint64 // 429s for too many unknown projects
}

func newServerMetrics(s *Server) *serverMetrics {
	m := &serverMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "exless_requests_total",
			Help: "Requests answered on the API socket, by route and outcome (ok, denied, not_found, rate_limited, bad_request, unavailable, ...).",
		}, []string{"route", "outcome"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "exless_policy_decisions_total",
			Help: `Policy decisions on requests, by decision (allow, deny) and the granting rule ("none" for the default deny).`,
		}, []string{"decision", "rule"}),
		attest: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "exless_attestation_duration_seconds",
			Help: "Time to identify a connection's peer (credentials, cgroup, executable), by result (ok, gone, failed).",
			// From a cached lookup (tens of µs) to hashing a large binary.
			Buckets: prometheus.ExponentialBuckets(25e-6, 4, 10),
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.requests, m.decisions, m.attest, &stateCollector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m
}

// cutOffCounts reports connections cut off by reason, every reason present
// (limits.go counts them).
func (s *Server) cutOffCounts() map[string]uint64 {
	_, by := s.cuts.counts()
	return by
}

// MetricsHandler serves the metrics in the Prometheus text format without
// a policy check, for a listener of its own (config: metrics.listen). The
// metrics hold no secrets.
func (s *Server) MetricsHandler() http.Handler { return s.metrics.handler }

// handleMetrics serves GET /v1/metrics to peers granted "metrics" (a
// scraper's rule) or "status" (status already shows all of it).
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	c := s.callerOf(r)
	req := policy.Request{Action: policy.ActionMetrics}
	if s.policy.Load().Decide(c.id, policy.Request{Action: policy.ActionStatus}).Allow {
		req.Action = policy.ActionStatus
	}
	if _, ok := s.decide(w, c, req); !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.metrics.handler.ServeHTTP(w, r)
}

// ServeHTTP answers one request and counts it by route and outcome.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	s.serveHTTP(rec, r)
	s.metrics.total.Add(1)
	s.metrics.requests.WithLabelValues(routeLabel(r.URL.Path), outcomeLabel(rec.status)).Inc()
}

// routeLabel keeps the label to the API's routes: any other path (a
// scanner's guesses) is "other", so paths cannot grow the series.
func routeLabel(p string) string {
	switch p {
	case "/v1/token", "/v1/whoami", "/v1/status", "/v1/reload", "/v1/rotate", "/v1/policy/explain", "/v1/metrics":
		return p
	}
	return "other"
}

// outcomeLabel names an answer's status as the error codes of the API do.
func outcomeLabel(status int) string {
	switch {
	case status == 0 || status < 300:
		return "ok"
	case status == http.StatusForbidden:
		return CodeDenied
	case status == http.StatusNotFound:
		return CodeNotFound
	case status == http.StatusMethodNotAllowed:
		return CodeMethod
	case status == http.StatusTooManyRequests:
		return CodeRateLimited
	case status == http.StatusServiceUnavailable:
		return CodeUnavailable
	case status == http.StatusNotImplemented:
		return "not_implemented"
	case status < 500:
		return CodeBadRequest
	}
	return CodeInternal
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (m *serverMetrics) decision(d policy.Decision) {
	decision, rule := "deny", "none"
	if d.Allow {
		decision, rule = "allow", d.Rule
	}
	m.decisions.WithLabelValues(decision, rule).Inc()
}

func (m *serverMetrics) attested(took time.Duration, err error) {
	result := "ok"
	switch {
	case errors.Is(err, peer.ErrPeerGone):
		// The peer exited before it could be read: no one to refuse.
		result = "gone"
	case err != nil:
		result = "failed"
		m.attestFailed.Add(1)
	}
	m.attest.WithLabelValues(result).Observe(took.Seconds())
}

// stateCollector reads the broker's and the server's state at scrape time.
type stateCollector struct{ s *Server }

var (
	descServed        = prometheus.NewDesc("exless_tokens_served_total", "Tokens handed to peers.", nil, nil)
	descDenied        = prometheus.NewDesc("exless_requests_denied_total", "Requests the policy refused.", nil, nil)
	descRateLimited   = prometheus.NewDesc("exless_rate_limited_total", "Requests answered 429, by limit: per_uid (requests_per_second and burst) or unknown_projects (too many requests for projects Exceptionless does not have).", []string{"limit"}, nil)
	descCutOff        = prometheus.NewDesc("exless_connections_cut_off_total", "Connections the server closed on its own initiative, by reason (max_connections, ...).", []string{"reason"}, nil)
	descConnections   = prometheus.NewDesc("exless_connections_open", "Connections open on the API socket.", nil, nil)
	descLogins        = prometheus.NewDesc("exless_logins_total", "Login attempts to Exceptionless by this daemon.", nil, nil)
	descMints         = prometheus.NewDesc("exless_mints_total", "Client tokens minted by this daemon.", nil, nil)
	descRotations     = prometheus.NewDesc("exless_rotations_total", "Client token rotations by this daemon.", nil, nil)
	descRevocations   = prometheus.NewDesc("exless_revocations_total", "Tokens revoked in Exceptionless by this daemon.", nil, nil)
	descAdopted       = prometheus.NewDesc("exless_adoptions_total", "User tokens adopted from Vault that another daemon obtained.", nil, nil)
	descPassword      = prometheus.NewDesc("exless_password_changes_total", "Account password changes this daemon made or completed (password kept in Vault).", nil, nil)
	descVaultCalls    = prometheus.NewDesc("exless_vault_requests_total", "Calls to Vault, by operation and result (ok, not_found, conflict, error).", []string{"operation", "result"}, nil)
	descUpstreamCalls = prometheus.NewDesc("exless_upstream_requests_total", "Calls to the Exceptionless API, by operation and result (ok, unauthorized, forbidden, not_found, throttled, login_refused, error).", []string{"operation", "result"}, nil)
	descTokenAge      = prometheus.NewDesc("exless_token_age_seconds", "Age of each held token since it was obtained, by scope and project id (empty for the user token).", []string{"scope", "project_id"}, nil)
	descTokenStale    = prometheus.NewDesc("exless_token_stale_seconds", "Time since each held token was last confirmed in Vault.", []string{"scope", "project_id"}, nil)
	descLoggedIn      = prometheus.NewDesc("exless_logged_in", "1 when the daemon holds a user token.", nil, nil)
	descVaultUp       = prometheus.NewDesc("exless_vault_reachable", "1 when the last call to Vault succeeded.", nil, nil)
	descDegraded      = prometheus.NewDesc("exless_degraded", "1 when the daemon is degraded (exlessctl status says why).", nil, nil)
	descDegradedWhy   = prometheus.NewDesc("exless_degraded_reason", "1 for each reason the daemon is degraded now, 0 for the others.", []string{"reason"}, nil)
	descLeaseHolder   = prometheus.NewDesc("exless_lease_holder_info", "The daemon last seen holding the fleet lease (login, mint, rotate), while one is.", []string{"holder"}, nil)
	descLeaseSelf     = prometheus.NewDesc("exless_lease_held", "1 while this daemon holds the fleet lease.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descServed, descDenied, descRateLimited, descCutOff, descConnections,
		descLogins, descMints, descRotations, descRevocations, descAdopted, descPassword, descVaultCalls, descUpstreamCalls,
		descTokenAge, descTokenStale, descLoggedIn, descVaultUp, descDegraded, descDegradedWhy,
		descLeaseHolder, descLeaseSelf} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	bool01 := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	counter(descServed, s.served.Load())
	counter(descDenied, s.denied.Load())
	counter(descRateLimited, s.throttled.Load(), "per_uid")
	counter(descRateLimited, s.metrics.missLimited.Load(), "unknown_projects")
	cut := s.cutOffCounts()
	reasons := make([]string, 0, len(cut))
	for r := range cut {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		counter(descCutOff, cut[r], r)
	}
	gauge(descConnections, float64(s.conns.Load()))

	b := s.broker.Status()
	counter(descLogins, b.Counters.Logins)
	counter(descMints, b.Counters.Mints)
	counter(descRotations, b.Counters.Rotations)
	counter(descRevocations, b.Counters.Revocations)
	counter(descAdopted, b.Counters.Adopted)
	counter(descPassword, b.Counters.PasswordChanges)
	for _, cc := range s.broker.VaultCalls() {
		counter(descVaultCalls, cc.Count, cc.Operation, cc.Result)
	}
	for _, cc := range s.broker.UpstreamCalls() {
		counter(descUpstreamCalls, cc.Count, cc.Operation, cc.Result)
	}
	// Project ids are bounded by the tokens the daemon holds; fingerprints
	// stay out: they change with every rotation.
	for _, t := range b.Tokens {
		gauge(descTokenAge, t.AgeSeconds, t.Scope, t.ProjectID)
		gauge(descTokenStale, t.StaleSeconds, t.Scope, t.ProjectID)
	}
	gauge(descLoggedIn, bool01(b.LoggedIn))
	gauge(descVaultUp, bool01(b.VaultReachable))
	gauge(descDegraded, bool01(len(b.DegradedReasons) > 0))
	for _, code := range DegradedCodes {
		now := false
		for _, c := range b.DegradedCodes {
			now = now || c == code
		}
		gauge(descDegradedWhy, bool01(now), code)
	}
	if b.LeaseHolder != "" {
		gauge(descLeaseHolder, 1, b.LeaseHolder)
	}
	gauge(descLeaseSelf, bool01(b.LeaseHolder != "" && b.LeaseHolder == s.broker.ID()))
}
