package daemon_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/vaultstore"
)

// brokerWith returns another daemon's broker on the env's Vault path.
func (e *env) brokerWith(edit func(*daemon.BrokerConfig)) *daemon.Broker {
	cfg := daemon.BrokerConfig{
		Store: e.store, Upstream: e.api, Email: e.ex.Account.Email,
		Password: func() ([]byte, error) { return []byte(e.ex.Account.Password), nil },
		Host:     "host",
		Logger:   newTestLogger(e.logs),
	}
	if edit != nil {
		edit(&cfg)
	}
	return daemon.NewBroker(cfg)
}

func (e *env) liveProjectTokens(project string) []exceptionlesstest.TokenInfo {
	var out []exceptionlesstest.TokenInfo
	for _, ti := range e.ex.Tokens() {
		if ti.ProjectID == project && ti.Kind == "access" {
			out = append(out, ti)
		}
	}
	return out
}

// A cold fleet: five daemons on one Vault path ask for the same project at
// once. Exactly one logs in and exactly one mints; the others adopt.
func TestFleetColdStartOneLoginOneMint(t *testing.T) {
	e := newEnv(t, nil)
	e.path = randomPath(t) // a cold path: nothing stored yet
	e.store = e.newStore()
	logins := e.ex.LoginAttempts()
	project := e.ex.Account.Projects[0].ID
	mintsBefore := e.countCalls("POST", "/api/v2/projects/"+project+"/tokens")

	const daemons = 5
	brokers := make([]*daemon.Broker, daemons)
	for i := range brokers {
		brokers[i] = e.brokerWith(nil)
	}
	toks := make([]exceptionless.Token, daemons)
	var wg sync.WaitGroup
	for i, b := range brokers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := b.ClientToken(context.Background(), project)
			if err != nil {
				t.Errorf("daemon %d: %v", i, err)
				return
			}
			toks[i] = s.Token
		}()
	}
	wg.Wait()
	for i := range toks {
		if toks[i] != toks[0] {
			t.Fatalf("daemon %d serves a different token", i)
		}
	}
	if got := e.ex.LoginAttempts() - logins; got != 1 {
		t.Errorf("logins = %d, want exactly 1", got)
	}
	if got := e.countCalls("POST", "/api/v2/projects/"+project+"/tokens") - mintsBefore; got != 1 {
		t.Errorf("mints = %d, want exactly 1", got)
	}
	if n := len(e.liveProjectTokens(project)); n != 1 {
		t.Errorf("live client tokens = %d, want 1", n)
	}
	t.Logf("cold start of %d daemons: %d login, %d mint", daemons, e.ex.LoginAttempts()-logins,
		e.countCalls("POST", "/api/v2/projects/"+project+"/tokens")-mintsBefore)
}

// A daemon died (kill -9) holding the lease after minting, before storing.
// The others wait out the lease, revoke the orphan, and mint one token.
func TestExpiredLeaseIsTakenOverAndOrphanRevoked(t *testing.T) {
	e := newEnv(t, nil)
	e.path = randomPath(t)
	e.store = e.newStore()
	ctx := context.Background()
	project := e.ex.Account.Projects[0].ID
	b := e.brokerWith(func(c *daemon.BrokerConfig) { c.LeaseWait = 10 * time.Second })
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// What the dead daemon left: a lease on minting, and the minted token.
	orphan := e.ex.AddAccessToken(exceptionlesstest.NewAccessToken{
		ProjectID: project, Scopes: []string{"client"}, Notes: "exless: minted by dead-host (op deadbeef)",
	})
	_, meta, err := e.store.LoadControl(ctx, daemon.LeaseKey)
	if err != nil && !errors.Is(err, daemon.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := e.store.SaveControl(ctx, daemon.LeaseKey, daemon.Control{
		Holder: "dead-host/1", Purpose: "mint/" + project, Nonce: "deadbeef", TTL: 2 * time.Second,
	}, meta.Version); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s, err := b.ClientToken(ctx, project)
	if err != nil {
		t.Fatalf("ClientToken after a dead holder: %v", err)
	}
	waited := time.Since(start)
	if waited < time.Second {
		t.Errorf("served after %s: the live lease of another daemon was not respected", waited)
	}
	if _, ok := e.ex.Token(orphan); ok {
		t.Error("the orphaned token was not revoked")
	}
	live := e.liveProjectTokens(project)
	if len(live) != 1 || live[0].ID != s.Token.Reveal() {
		t.Errorf("live tokens = %d, want only the stored one", len(live))
	}
	t.Logf("took over an expired lease after %s", waited.Round(10*time.Millisecond))
}

func TestFleetLoginBudget(t *testing.T) {
	e := newEnv(t, nil)
	e.path = randomPath(t)
	e.store = e.newStore()
	before := e.ex.LoginAttempts()
	var errs []error
	for range 4 {
		b := e.brokerWith(func(c *daemon.BrokerConfig) {
			c.LoginBudget = 2
			c.Password = func() ([]byte, error) { return []byte("wrong-password"), nil }
		})
		errs = append(errs, b.Start(context.Background()))
	}
	if got := e.ex.LoginAttempts() - before; got != 2 {
		t.Errorf("login attempts by 4 daemons with a budget of 2 = %d, want 2", got)
	}
	if !strings.Contains(errs[3].Error(), "budget") {
		t.Errorf("the fourth daemon's error %q does not mention the budget", errs[3])
	}
	e.assertNoSecretsLogged("wrong-password")
}

func TestRotationWithGraceThenSweep(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	project := e.ex.Account.Projects[0].ID
	other := e.brokerWith(nil) // a second host
	old, err := other.ClientToken(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.client.Rotate(ctx, project, 2*time.Second)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if res.OldFingerprint != daemon.Fingerprint(old.Token) || res.NewFingerprint == res.OldFingerprint {
		t.Errorf("rotate result = %+v", res.RotateResult)
	}
	cur, err := e.client.Token(ctx, daemon.ScopeClient, project)
	if err != nil || daemon.Fingerprint(cur.Token) != res.NewFingerprint {
		t.Fatalf("after rotation the daemon does not serve the new token (%v)", err)
	}
	// The other host picks the new token up on its next poll.
	other.Tick(ctx)
	got, err := other.ClientToken(ctx, project)
	if err != nil || got.Token != cur.Token {
		t.Fatalf("the other host still serves the old token after a poll (%v)", err)
	}
	// The old token works through the grace period, then the sweep revokes it.
	if _, err := e.api.ProjectConfig(ctx, old.Token); err != nil {
		t.Errorf("the old token stopped working within its grace period: %v", err)
	}
	time.Sleep(3 * time.Second)
	other.Tick(ctx)
	if _, err := e.api.ProjectConfig(ctx, old.Token); !errors.Is(err, exceptionless.ErrUnauthorized) {
		t.Errorf("the old token still works after its grace period (%v)", err)
	}
	rec, _, err := e.store.Load(ctx, daemon.ClientKey(project))
	if err != nil || len(rec.Retiring) != 0 || rec.Token != cur.Token {
		t.Errorf("vault record after the sweep: retiring %d, current %v (%v)", len(rec.Retiring), rec.Token == cur.Token, err)
	}
	if _, err := e.api.ProjectConfig(ctx, cur.Token); err != nil {
		t.Errorf("the new token does not work: %v", err)
	}
	if n := len(e.liveProjectTokens(project)); n != 1 {
		t.Errorf("live tokens after rotation and sweep = %d, want 1", n)
	}
}

func TestRotateWithZeroGraceRevokesAtOnce(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	project := e.ex.Account.Projects[1].ID
	old, err := e.client.Token(ctx, daemon.ScopeClient, project)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.client.Rotate(ctx, project, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Revoked || len(res.ReceivedBy) != 1 || !strings.Contains(res.ReceivedBy[0], "uid") {
		t.Errorf("rotate = %+v, want revoked and one receiver", res)
	}
	if _, err := e.api.ProjectConfig(ctx, old.Token); !errors.Is(err, exceptionless.ErrUnauthorized) {
		t.Errorf("the leaked token still works (%v)", err)
	}
}

// Many fetchers keep asking while the token is rotated repeatedly: not one
// fetch may fail, and every token served is one that was valid.
func TestRotationUnderLoadHasNoFailedFetches(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	project := e.ex.Account.Projects[0].ID
	if _, err := e.client.Token(ctx, daemon.ScopeClient, project); err != nil {
		t.Fatal(err)
	}
	var (
		stop            atomic.Bool
		fetches, failed atomic.Int64
		wg              sync.WaitGroup
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := daemon.NewClient(e.socket)
			for !stop.Load() {
				if _, err := c.Token(ctx, daemon.ScopeClient, project); err != nil {
					failed.Add(1)
				}
				fetches.Add(1)
			}
		}()
	}
	for range 5 {
		if _, err := e.client.Rotate(ctx, project, time.Minute); err != nil {
			t.Errorf("rotate: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d fetches failed during rotations", failed.Load(), fetches.Load())
	}
	t.Logf("%d fetches during 5 rotations, %d failed", fetches.Load(), failed.Load())
}

func TestUnknownProjectIsRemembered(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	const unknown = "0123456789abcdef01234567"
	for range 5 {
		if _, err := e.broker.ClientToken(ctx, unknown); !errors.Is(err, daemon.ErrProjectNotFound) {
			t.Fatalf("ClientToken(unknown) = %v", err)
		}
	}
	if n := e.countCalls("POST", "/api/v2/projects/"+unknown+"/tokens"); n != 1 {
		t.Errorf("upstream calls for an unknown project = %d, want 1", n)
	}
}

func TestUpstreamThrottleBacksOffToTheQuarterHour(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	clock := exceptionlesstest.NewClock(time.Date(2026, 11, 28, 10, 7, 0, 0, time.UTC))
	b := e.brokerWith(func(c *daemon.BrokerConfig) { c.Now = clock.Now })
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	project := e.ex.Account.Projects[1].ID
	path := "/api/v2/projects/" + project + "/tokens"
	e.ex.FailNext("POST", path, 429)
	if _, err := b.ClientToken(ctx, project); !errors.Is(err, daemon.ErrUnavailable) {
		t.Fatalf("ClientToken on 429 = %v, want unavailable", err)
	}
	calls := e.countCalls("POST", path)
	clock.Advance(5 * time.Minute) // 10:12, still in the window
	if _, err := b.ClientToken(ctx, project); !errors.Is(err, daemon.ErrUnavailable) {
		t.Fatalf("ClientToken within the window = %v, want unavailable", err)
	}
	if n := e.countCalls("POST", path); n != calls {
		t.Errorf("the daemon called Exceptionless again within the throttled window")
	}
	clock.Set(time.Date(2026, 11, 28, 10, 15, 1, 0, time.UTC))
	if _, err := b.ClientToken(ctx, project); err != nil {
		t.Fatalf("ClientToken after the window turned: %v", err)
	}
}

func TestUpstream5xxBacksOffExponentially(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	clock := exceptionlesstest.NewClock(time.Date(2026, 11, 28, 10, 7, 0, 0, time.UTC))
	b := e.brokerWith(func(c *daemon.BrokerConfig) { c.Now = clock.Now })
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	project := e.ex.Account.Projects[0].ID
	path := "/api/v2/projects/" + project + "/tokens"
	for range 3 {
		e.ex.FailNext("POST", path, 503)
	}
	var waits []time.Duration
	for range 3 {
		if _, err := b.ClientToken(ctx, project); !errors.Is(err, daemon.ErrUnavailable) {
			t.Fatalf("ClientToken on 503 = %v", err)
		}
		// Step until the backoff lets the next call through.
		calls := e.countCalls("POST", path)
		var waited time.Duration
		for e.countCalls("POST", path) == calls && waited < time.Hour {
			clock.Advance(100 * time.Millisecond)
			waited += 100 * time.Millisecond
			_, _ = b.ClientToken(ctx, project)
		}
		waits = append(waits, waited)
	}
	if !(waits[1] > waits[0] && waits[2] > waits[1]) {
		t.Errorf("backoff waits %v do not grow", waits)
	}
	if _, err := b.ClientToken(ctx, project); err != nil {
		t.Errorf("after the failures: %v", err)
	}
}

// cutProxy forwards TCP to a target until cut, then refuses connections:
// a real network outage between a daemon and its real Vault.
type cutProxy struct {
	ln     net.Listener
	target string
	cut    atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.cut.Load() {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) addr() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) setCut(cut bool) {
	p.cut.Store(cut)
	if cut {
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
		p.mu.Unlock()
	}
}

func TestVaultOutageServesCachedUpToMaxStaleness(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	proxy := newCutProxy(t, strings.TrimPrefix(e.vault.Addr, "http://"))
	store, err := vaultstore.New(ctx, vaultstore.Config{Address: proxy.addr(), Token: e.vault.Token, Path: e.path, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clock := exceptionlesstest.NewClock(time.Now())
	b := e.brokerWith(func(c *daemon.BrokerConfig) {
		c.Store, c.Now, c.MaxStaleness, c.PollInterval = store, clock.Now, 10*time.Minute, time.Minute
	})
	project := e.ex.Account.Projects[0].ID
	held, err := b.ClientToken(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	proxy.setCut(true)
	clock.Advance(5 * time.Minute)
	b.Tick(ctx) // the poll fails
	s, err := b.ClientToken(ctx, project)
	if err != nil || s.Token != held.Token {
		t.Fatalf("during the outage, within max_staleness: %v", err)
	}
	st := b.Status()
	if st.VaultReachable || len(st.DegradedReasons) == 0 {
		t.Errorf("status during the outage = %+v, want degraded", st.DegradedReasons)
	}
	clock.Advance(6 * time.Minute)
	if _, err := b.ClientToken(ctx, project); !errors.Is(err, daemon.ErrUnavailable) || !strings.Contains(err.Error(), "max_staleness") {
		t.Fatalf("beyond max_staleness = %v, want unavailable (stale)", err)
	}
	// Vault comes back: the next successful poll makes the token fresh.
	proxy.setCut(false)
	clock.Advance(5 * time.Minute)
	b.Tick(ctx)
	if _, err := b.ClientToken(ctx, project); err != nil {
		t.Fatalf("after Vault came back: %v", err)
	}
}

func TestVaultDownAtStartThenRecovers(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	proxy := newCutProxy(t, strings.TrimPrefix(e.vault.Addr, "http://"))
	proxy.setCut(true)
	store, err := vaultstore.New(ctx, vaultstore.Config{Address: proxy.addr(), Token: e.vault.Token, Path: e.path, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clock := exceptionlesstest.NewClock(time.Now())
	b := e.brokerWith(func(c *daemon.BrokerConfig) { c.Store, c.Now = store, clock.Now })
	if err := b.Start(ctx); !errors.Is(err, daemon.ErrUnavailable) {
		t.Fatalf("Start with Vault down = %v", err)
	}
	if st := b.Status(); st.LoggedIn || st.VaultReachable {
		t.Errorf("status = %+v", st)
	}
	proxy.setCut(false)
	clock.Advance(10 * time.Minute) // past any backoff
	b.Tick(ctx)
	if st := b.Status(); !st.LoggedIn || !st.VaultReachable {
		t.Errorf("after Vault came back: %+v", st)
	}
}

func TestUnknownProjectsAreCountedAgainstThePeer(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	known := e.ex.Account.Projects[0].ID
	if _, err := e.client.Token(ctx, daemon.ScopeClient, known); err != nil {
		t.Fatal(err)
	}
	var apiErr *daemon.APIError
	limited := 0
	for i := range 25 {
		// Distinct ids, so the broker's memory of 404s does not absorb them.
		id := "0123456789abcdef01234" + string(rune('a'+i%26)) + "00"
		_, err := e.client.Token(ctx, daemon.ScopeClient, id)
		if errors.As(err, &apiErr) && apiErr.Status == 429 {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("25 requests for unknown projects were never rate limited")
	}
	if calls := e.countCalls("POST", "/api/v2/projects/0123456789abcdef01234"); calls > 20 {
		t.Errorf("upstream calls for unknown projects = %d, want at most 20", calls)
	}
	// Tokens the daemon holds are still served to the same peer.
	if _, err := e.client.Token(ctx, daemon.ScopeClient, known); err != nil {
		t.Errorf("a known project after the limit: %v", err)
	}
}
