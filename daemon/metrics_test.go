package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/daemon/policy"
	"github.com/exless/exless/internal/testproc"
	"github.com/exless/exless/vaultstore"
	"github.com/exless/exless/vaultstore/vaulttest"
)

// scrape is one parsed scrape, with its raw text for secret checks.
type scrape struct {
	t    *testing.T
	raw  string
	fams map[string]*dto.MetricFamily
}

func parseScrape(t *testing.T, body []byte) scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the scrape does not parse as Prometheus text: %v", err)
	}
	return scrape{t: t, raw: string(body), fams: fams}
}

// metricsOf scrapes srv through its handler, as the metrics.listen
// listener serves it (no policy, no rate limit).
func metricsOf(t *testing.T, srv *daemon.Server) scrape {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("metrics handler: %d %s", rec.Code, rec.Body)
	}
	return parseScrape(t, rec.Body.Bytes())
}

// socketGet does one GET on the API socket and returns status and body.
func socketGet(t *testing.T, socket, path string) (int, []byte) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://exlessd" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// value returns the value of the one series of name whose labels include
// want; it fails the test when there is none.
func (s scrape) value(name string, want ...string) float64 {
	s.t.Helper()
	v, ok := s.lookup(name, want...)
	if !ok {
		s.t.Fatalf("no series %s%v in the scrape", name, want)
	}
	return v
}

// lookup sums the series of name whose labels include want (pairs of
// name, value).
func (s scrape) lookup(name string, want ...string) (float64, bool) {
	f := s.fams[name]
	if f == nil {
		return 0, false
	}
	var sum float64
	found := false
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, found
}

// assertNoSecrets fails if a token, the password or the Vault token is in
// the scrape.
func (e *env) assertNoSecrets(s scrape) {
	e.t.Helper()
	for _, ti := range e.ex.Tokens() {
		if strings.Contains(s.raw, ti.ID) {
			e.t.Error("a token id appears in the scrape")
		}
	}
	for _, secret := range []string{e.ex.Account.Password, e.vault.Token} {
		if strings.Contains(s.raw, secret) {
			e.t.Error("a secret appears in the scrape")
		}
	}
}

// /v1/metrics is served to peers granted "metrics" or "status", refused to
// the others, and never carries a token.
func TestMetricsEndpointPolicy(t *testing.T) {
	me := fmt.Sprint(os.Getuid())
	tokensOnly := []policy.Rule{{Name: "tokens", Users: []string{me}, Scopes: []string{"user", "client"}, Projects: []string{"*"}}}
	e := newEnv(t, tokensOnly)
	ctx := context.Background()
	if _, err := e.client.Token(ctx, daemon.ScopeUser, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Token(ctx, daemon.ScopeClient, e.ex.Account.Projects[0].ID); err != nil {
		t.Fatal(err)
	}
	if code, body := socketGet(t, e.socket, "/v1/metrics"); code != 403 || !strings.Contains(string(body), "no rule grants action metrics") {
		t.Fatalf("/v1/metrics without the action = %d %s, want 403", code, body)
	}
	for _, rule := range []policy.Rule{
		{Name: "scraper", Users: []string{me}, Actions: []string{"metrics"}},
		{Name: "ops", Users: []string{me}, Actions: []string{"status"}},
	} {
		pol, _, err := policy.Compile(append(tokensOnly, rule), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.srv.SetPolicy(pol)
		code, body := socketGet(t, e.socket, "/v1/metrics")
		if code != 200 {
			t.Fatalf("/v1/metrics with %s = %d %s", rule.Actions, code, body)
		}
		s := parseScrape(t, body)
		if got := s.value("exless_policy_decisions_total", "decision", "allow", "rule", rule.Name); got < 1 {
			t.Errorf("allow by %s not counted", rule.Name)
		}
		e.assertNoSecrets(s)
	}
	s := metricsOf(t, e.srv)
	if s.value("exless_policy_decisions_total", "decision", "deny", "rule", "none") < 1 ||
		s.value("exless_requests_total", "route", "/v1/metrics", "outcome", "denied") != 1 {
		t.Error("the refused scrape is not counted as a denial")
	}
	if s.value("exless_policy_decisions_total", "decision", "allow", "rule", "tokens") < 2 ||
		s.value("exless_requests_total", "route", "/v1/token", "outcome", "ok") != 2 {
		t.Error("the two tokens served are not counted")
	}
	// Every connection had its peer identified, and timed.
	if n := s.value("exless_attestation_duration_seconds", "result", "ok"); n < 5 {
		t.Errorf("attestations observed = %v, want at least one per connection (5)", n)
	}
	e.assertNoSecrets(s)
}

const peerGetEnv = "EXLESS_TEST_PEER_GET"

// TestPeerGetHelper is not a test: started by asOtherUID with peerGetEnv
// set, it does one GET on the socket and prints the status code.
func TestPeerGetHelper(t *testing.T) {
	arg := os.Getenv(peerGetEnv)
	if arg == "" {
		t.Skip("helper process only")
	}
	socket, path, _ := strings.Cut(arg, " ")
	code, _ := socketGet(t, socket, path)
	fmt.Println("status", code)
}

// asOtherUID runs a GET on the socket from a process of another uid (a
// copy of this test binary) and returns the status code it got.
func asOtherUID(t *testing.T, socket, path string) int {
	t.Helper()
	requireRoot(t)
	dir := testproc.PublicDir(t)
	bin, err := testproc.CopySelf(dir, "peer", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The peer must reach the socket through its dir.
	if err := os.Chmod(filepath.Dir(socket), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(socket, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestPeerGetHelper$")
	cmd.Env = []string{peerGetEnv + "=" + socket + " " + path, "GORACE=atexit_sleep_ms=0"}
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4343}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("peer as uid 4242: %v\n%s", err, out)
	}
	var code int
	for _, line := range strings.Split(string(out), "\n") {
		if _, err := fmt.Sscanf(line, "status %d", &code); err == nil {
			return code
		}
	}
	t.Fatalf("peer printed no status:\n%s", out)
	return 0
}

// A peer of another uid that no rule names is refused a token and the
// metrics: both count as default denials.
func TestMetricsCountDeniedPeer(t *testing.T) {
	e := newEnv(t, rootRule())
	if code := asOtherUID(t, e.socket, "/v1/token?scope=user"); code != 403 {
		t.Fatalf("a stranger's token request got %d, want 403", code)
	}
	if code := asOtherUID(t, e.socket, "/v1/metrics"); code != 403 {
		t.Fatalf("a stranger's scrape got %d, want 403", code)
	}
	s := metricsOf(t, e.srv)
	if got := s.value("exless_policy_decisions_total", "decision", "deny", "rule", "none"); got != 2 {
		t.Errorf("default denials = %v, want 2", got)
	}
	if s.value("exless_requests_total", "route", "/v1/token", "outcome", "denied") != 1 ||
		s.value("exless_requests_total", "route", "/v1/metrics", "outcome", "denied") != 1 {
		t.Error("the refusals are not counted by route")
	}
	if got := s.value("exless_requests_denied_total"); got != 2 {
		t.Errorf("exless_requests_denied_total = %v, want 2", got)
	}
	if _, ok := s.lookup("exless_policy_decisions_total", "decision", "allow"); ok {
		t.Error("an allow was counted, but nothing was granted")
	}
}

func TestMetricsCountRateLimited(t *testing.T) {
	e := newEnvWith(t, rootRule(), daemon.Limits{RequestsPerSecond: 1, Burst: 3})
	limited := 0
	for range 6 {
		if status, _ := rawGet(t, e.socket, "/v1/whoami"); status == "429" {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("6 quick requests with a burst of 3 were never limited")
	}
	s := metricsOf(t, e.srv)
	if got := s.value("exless_rate_limited_total", "limit", "per_uid"); got != float64(limited) {
		t.Errorf("exless_rate_limited_total{limit=per_uid} = %v, want %d", got, limited)
	}
	if got := s.value("exless_requests_total", "route", "/v1/whoami", "outcome", "rate_limited"); got != float64(limited) {
		t.Errorf("rate-limited whoami requests = %v, want %d", got, limited)
	}
}

func TestMetricsCountUnknownProjectLimit(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	var apiErr *daemon.APIError
	limited := 0
	for i := range 22 {
		id := fmt.Sprintf("0123456789abcdef012345%02d", i)
		if _, err := e.client.Token(ctx, daemon.ScopeClient, id); errors.As(err, &apiErr) && apiErr.Status == 429 {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("22 unknown projects were never rate limited")
	}
	s := metricsOf(t, e.srv)
	if got := s.value("exless_rate_limited_total", "limit", "unknown_projects"); got != float64(limited) {
		t.Errorf("exless_rate_limited_total{limit=unknown_projects} = %v, want %d", got, limited)
	}
	if got := s.value("exless_upstream_requests_total", "operation", "create_token", "result", "not_found"); got != 22-float64(limited) {
		t.Errorf("upstream 404s = %v, want %v", got, 22-limited)
	}
}

func TestMetricsCountConnectionsCutOff(t *testing.T) {
	e := newEnvWith(t, rootRule(), daemon.Limits{MaxConnections: 2, MaxConnectionsPerUID: 2, HeaderTimeout: 200 * time.Millisecond})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("unix", e.socket)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	over, err := net.Dial("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	_ = over.SetReadDeadline(time.Now().Add(10 * time.Second))
	// Connections are accepted in order: the third is closed once the two
	// before it hold the places, and counted before it is closed.
	if _, err := over.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection over the cap was not closed: %v", err)
	}
	s := metricsOf(t, e.srv)
	if got := s.value("exless_connections_cut_off_total", "reason", "max_connections"); got != 1 {
		t.Errorf("cut off over max_connections = %v, want 1", got)
	}
	if got := s.value("exless_connections_open"); got != 2 {
		t.Errorf("exless_connections_open = %v, want 2", got)
	}
	// The held connections never sent a request: header_timeout cuts them,
	// each reason a series of its own, and status adds them up.
	for _, c := range held {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a silent connection was not cut: %v", err)
		}
		c.Close()
	}
	s = metricsOf(t, e.srv)
	if got := s.value("exless_connections_cut_off_total", "reason", "header_timeout"); got != 2 {
		t.Errorf("cut off by header_timeout = %v, want 2", got)
	}
	st := e.srv.Status()
	if st.ConnectionsCutOff != 3 || st.CutOffs["max_connections"] != 1 || st.CutOffs["header_timeout"] != 2 {
		t.Errorf("status cut off = %d by reason %v", st.ConnectionsCutOff, st.CutOffs)
	}
}

// A real login and mint against the Exceptionless test server move the
// broker's counters, the call counters and the token gauges.
func TestMetricsCountLoginsMintsAndCalls(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	project := e.ex.Account.Projects[0].ID
	if _, err := e.client.Token(ctx, daemon.ScopeUser, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Token(ctx, daemon.ScopeClient, project); err != nil {
		t.Fatal(err)
	}
	s := metricsOf(t, e.srv)
	if got, want := s.value("exless_logins_total"), float64(e.ex.LoginAttempts()); got != want || got != 1 {
		t.Errorf("exless_logins_total = %v, want %v (the test server's count)", got, want)
	}
	if got := s.value("exless_upstream_requests_total", "operation", "login", "result", "ok"); got != 1 {
		t.Errorf("upstream logins ok = %v, want 1", got)
	}
	if got := s.value("exless_mints_total"); got != 1 {
		t.Errorf("exless_mints_total = %v, want 1", got)
	}
	if got, want := s.value("exless_upstream_requests_total", "operation", "create_token", "result", "ok"),
		float64(e.countCalls("POST", "/api/v2/projects/"+project+"/tokens")); got != want {
		t.Errorf("upstream create_token ok = %v, want %v", got, want)
	}
	if got := s.value("exless_vault_requests_total", "operation", "save", "result", "ok"); got != 2 {
		t.Errorf("vault saves ok = %v, want 2 (user and client records)", got)
	}
	if s.value("exless_vault_requests_total", "operation", "load", "result", "not_found") < 2 {
		t.Error("the loads that found nothing stored yet are not counted")
	}
	if _, ok := s.lookup("exless_token_age_seconds", "scope", "client", "project_id", project); !ok {
		t.Error("no age for the held client token")
	}
	if _, ok := s.lookup("exless_token_age_seconds", "scope", "user"); !ok {
		t.Error("no age for the held user token")
	}
	if s.value("exless_logged_in") != 1 || s.value("exless_vault_reachable") != 1 || s.value("exless_degraded") != 0 {
		t.Error("a healthy daemon does not look healthy")
	}
	e.assertNoSecrets(s)
	st, err := e.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests < 2 || st.VaultErrors != 0 || st.UpstreamErrors != 0 {
		t.Errorf("status requests %d, vault errors %d, upstream errors %d", st.Requests, st.VaultErrors, st.UpstreamErrors)
	}
}

// An Exceptionless 5xx is counted as a failed call, and the daemon shows
// as degraded for it until a call succeeds.
func TestMetricsCountUpstreamFailure(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	project := e.ex.Account.Projects[1].ID
	e.ex.FailNext("POST", "/api/v2/projects/"+project+"/tokens", 503)
	var apiErr *daemon.APIError
	if _, err := e.client.Token(ctx, daemon.ScopeClient, project); !errors.As(err, &apiErr) || !apiErr.Unavailable() {
		t.Fatalf("Token on an upstream 503 = %v, want 503", err)
	}
	s := metricsOf(t, e.srv)
	if got := s.value("exless_upstream_requests_total", "operation", "create_token", "result", "error"); got != 1 {
		t.Errorf("failed create_token calls = %v, want 1", got)
	}
	if got := s.value("exless_requests_total", "route", "/v1/token", "outcome", "unavailable"); got != 1 {
		t.Errorf("unavailable token requests = %v, want 1", got)
	}
	if s.value("exless_degraded") != 1 || s.value("exless_degraded_reason", "reason", daemon.DegradedUpstreamDown) != 1 {
		t.Error("the daemon is not shown degraded for Exceptionless")
	}
	if s.value("exless_degraded_reason", "reason", daemon.DegradedVaultUnreachable) != 0 {
		t.Error("vault is shown as a reason, but it is fine")
	}
	st, err := e.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.UpstreamErrors != 1 || st.State != "degraded" {
		t.Errorf("status upstream errors %d, state %s", st.UpstreamErrors, st.State)
	}
}

// A Vault that stops is counted as failed calls and shown as degraded.
func TestMetricsCountVaultFailure(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	v := vaulttest.Start(t)
	store, err := vaultstore.New(ctx, vaultstore.Config{Address: v.Addr, Token: v.Token, Mount: "secret", Path: e.path, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.store = store
	e.restart(rootRule())
	if _, err := e.client.Token(ctx, daemon.ScopeUser, ""); err != nil {
		t.Fatal(err)
	}
	if s := metricsOf(t, e.srv); s.value("exless_vault_reachable") != 1 {
		t.Fatal("vault not reachable before it stopped")
	}
	if err := v.Stop(); err != nil {
		t.Fatal(err)
	}
	e.broker.Tick(ctx) // the poll of the held token fails
	s := metricsOf(t, e.srv)
	if got := s.value("exless_vault_requests_total", "operation", "load", "result", "error"); got < 1 {
		t.Errorf("failed vault loads = %v, want at least 1", got)
	}
	if s.value("exless_vault_reachable") != 0 || s.value("exless_degraded") != 1 ||
		s.value("exless_degraded_reason", "reason", daemon.DegradedVaultUnreachable) != 1 {
		t.Error("the daemon is not shown degraded for Vault")
	}
	st, err := e.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.VaultErrors < 1 {
		t.Errorf("status vault errors = %d", st.VaultErrors)
	}
	e.assertNoSecrets(s)
}

// Token ages follow the broker's clock; a token not confirmed in Vault for
// long makes the daemon degraded until a poll confirms it again.
func TestMetricsTokenAgeAndDegradedFollowTheClock(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	clock := exceptionlesstest.NewClock(time.Now())
	b := e.brokerWith(func(c *daemon.BrokerConfig) { c.Now = clock.Now })
	project := e.ex.Account.Projects[0].ID
	if _, err := b.ClientToken(ctx, project); err != nil {
		t.Fatal(err)
	}
	srv := daemon.NewServer(daemon.ServerConfig{Broker: b, Policy: &policy.Policy{}})
	s := metricsOf(t, srv)
	age0 := s.value("exless_token_age_seconds", "scope", "client", "project_id", project)
	if s.value("exless_degraded") != 0 {
		t.Fatal("degraded before the clock moved")
	}
	clock.Advance(90 * time.Minute)
	s = metricsOf(t, srv)
	if got := s.value("exless_token_age_seconds", "scope", "client", "project_id", project); got != age0+5400 {
		t.Errorf("age after 90 minutes = %v, want %v", got, age0+5400)
	}
	if got := s.value("exless_token_stale_seconds", "scope", "client", "project_id", project); got != 5400 {
		t.Errorf("stale after 90 minutes = %v, want 5400", got)
	}
	if s.value("exless_degraded") != 1 || s.value("exless_degraded_reason", "reason", daemon.DegradedStaleTokens) != 1 {
		t.Error("tokens unconfirmed for 90 minutes do not show as degraded")
	}
	b.Tick(ctx) // Vault confirms them again
	s = metricsOf(t, srv)
	if s.value("exless_degraded") != 0 || s.value("exless_token_stale_seconds", "scope", "client", "project_id", project) != 0 {
		t.Error("still degraded after Vault confirmed the tokens")
	}
	if got := s.value("exless_token_age_seconds", "scope", "client", "project_id", project); got != age0+5400 {
		t.Errorf("a poll changed the token's age to %v", got)
	}
}

// While another daemon holds the fleet lease, the scrape names it.
func TestMetricsLeaseHolder(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	_, meta, err := e.store.LoadControl(ctx, daemon.LeaseKey)
	if err != nil && !errors.Is(err, daemon.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := e.store.SaveControl(ctx, daemon.LeaseKey, daemon.Control{Holder: "other-host/0a1b2c", Purpose: "login", TTL: time.Hour}, meta.Version); err != nil {
		t.Fatal(err)
	}
	// The lease wait only bounds how long the request waits for the holder.
	b := e.brokerWith(func(c *daemon.BrokerConfig) { c.LeaseWait = 300 * time.Millisecond })
	if _, err := b.ClientToken(ctx, e.ex.Account.Projects[0].ID); !errors.Is(err, daemon.ErrUnavailable) {
		t.Fatalf("ClientToken while another daemon holds the lease = %v, want unavailable", err)
	}
	s := metricsOf(t, daemon.NewServer(daemon.ServerConfig{Broker: b, Policy: &policy.Policy{}}))
	if s.value("exless_lease_holder_info", "holder", "other-host/0a1b2c") != 1 || s.value("exless_lease_held") != 0 {
		t.Error("the scrape does not name the other daemon as the lease holder")
	}
}

// Several servers in one process keep their metrics apart.
func TestMetricsRegistriesArePerServer(t *testing.T) {
	e := newEnv(t, rootRule())
	other := daemon.NewServer(daemon.ServerConfig{Broker: e.newBroker(), Policy: &policy.Policy{}})
	if _, err := e.client.WhoAmI(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := metricsOf(t, e.srv).value("exless_requests_total", "route", "/v1/whoami"); got != 1 {
		t.Errorf("whoami requests = %v, want 1", got)
	}
	if _, ok := metricsOf(t, other).lookup("exless_requests_total"); ok {
		t.Error("another server's scrape counts this server's requests")
	}
}
