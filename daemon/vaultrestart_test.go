package daemon_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/vaultstore"
	"github.com/exless/exless/vaultstore/vaulttest"
)

// A Vault with file storage is stopped and started again while peers fetch
// tokens over the socket: every fetch is served from memory, status says
// degraded while Vault is down, the daemon writes to Vault again after the
// restart (a rotation), and it never logs in again.
func TestVaultRestartMidRun(t *testing.T) {
	node := vaulttest.StartPersistent(t)
	// The per-uid rate limit is not under test: lift it.
	e := newEnvWith(t, rootRule(), daemon.Limits{RequestsPerSecond: 1e6, Burst: 1 << 20})
	ctx := context.Background()
	store, err := vaultstore.New(ctx, vaultstore.Config{
		Address: node.Addr, Token: node.Token(), Mount: "secret", Path: randomPath(t), Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.store = store
	clk := &shiftClock{}
	e.editBroker = func(c *daemon.BrokerConfig) { c.Now = clk.Now; c.LeaseWait = 5 * time.Second }
	logins := e.ex.LoginAttempts()
	e.restart(rootRule())
	projects := []string{e.ex.Account.Projects[0].ID, e.ex.Account.Projects[1].ID}
	for _, p := range projects {
		if _, err := e.client.Token(ctx, daemon.ScopeClient, p); err != nil {
			t.Fatal(err)
		}
	}

	var served, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopFetchers := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopFetchers() // also when the test fails early: no logging after it ends
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := daemon.NewClient(e.socket)
			for {
				select {
				case <-stop:
					return
				default:
				}
				scope, project := daemon.ScopeClient, projects[i%2]
				if i == 0 {
					scope, project = daemon.ScopeUser, ""
				}
				if _, err := c.Token(ctx, scope, project); err != nil {
					if failed.Add(1) <= 3 {
						t.Logf("fetch: %v", err)
					}
				} else {
					served.Add(1)
				}
			}
		}()
	}

	if err := node.Stop(); err != nil {
		t.Fatal(err)
	}
	down := served.Load()
	e.broker.Tick(ctx) // the poll fails
	st, err := e.client.Status(ctx)
	if err != nil || st.State != "degraded" || !strings.Contains(strings.Join(st.DegradedReasons, ";"), "vault unreachable") {
		t.Errorf("status while vault is down: %+v, %v", st.DegradedReasons, err)
	}
	time.Sleep(300 * time.Millisecond) // fetches keep flowing meanwhile
	if served.Load() == down {
		t.Error("no fetch was served while vault was down")
	}
	t0 := time.Now()
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("vault down for a restart; start and unseal took %s", time.Since(t0).Round(time.Millisecond))
	// A freshly unsealed Vault may fail a first request: allow a few rounds.
	for range 10 {
		clk.Advance(5 * time.Minute) // past the vault backoff
		e.broker.Tick(ctx)
		if st, err = e.client.Status(ctx); err == nil && st.State == "ok" && st.VaultReachable {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || st.State != "ok" || !st.VaultReachable {
		t.Errorf("status after the restart: %+v, %v", st.DegradedReasons, err)
	}
	res, err := e.client.Rotate(ctx, projects[0], 0)
	if err != nil || !res.Revoked {
		t.Fatalf("rotate after the restart: %v", err)
	}
	rec, _, err := store.Load(ctx, daemon.ClientKey(projects[0]))
	if err != nil || daemon.Fingerprint(rec.Token) != res.NewFingerprint {
		t.Fatalf("the rotation did not reach the restarted vault: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	stopFetchers()
	t.Logf("fetches served %d, failed %d", served.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d fetches failed across the vault restart", failed.Load())
	}
	if got := e.ex.LoginAttempts() - logins; got != 1 {
		t.Errorf("logins = %d, want 1 (the first)", got)
	}
	e.assertNoSecretsLogged(node.Token())
}
