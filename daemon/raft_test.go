package daemon_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/daemon/policy"
	"github.com/exless/exless/internal/testrun"
	"github.com/exless/exless/vaultstore"
	"github.com/exless/exless/vaultstore/vaulttest"
)

// Three daemons share a 3-node Vault Raft cluster. The active node is
// killed (SIGKILL) while peers fetch and while a client token is being
// rotated over and over: fetches never fail (they are served from memory),
// rotations resume on the new leader, and no client token is lost or
// orphaned.
func TestRaftLeaderKilledDuringRotationAndLoad(t *testing.T) {
	c := vaulttest.StartCluster(t, 3)
	ctx := context.Background()
	leader, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{leader.Addr}
	for _, n := range c.Nodes {
		if n != leader {
			addrs = append(addrs, n.Addr)
		}
	}
	ex := exceptionlesstest.NewServer(exceptionlesstest.Config{})
	t.Cleanup(ex.Close)
	api, err := exceptionless.New(ex.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := testrun.Buffer(t, "daemon")
	path := randomPath(t)
	newBroker := func() *daemon.Broker {
		store, err := vaultstore.New(ctx, vaultstore.Config{Addresses: addrs, Token: c.Token(), Path: path, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return daemon.NewBroker(daemon.BrokerConfig{
			Store: store, Upstream: api, Email: ex.Account.Email,
			Password: func() ([]byte, error) { return []byte(ex.Account.Password), nil },
			Host:     "raft", Logger: newTestLogger(logs), LeaseWait: 30 * time.Second,
		})
	}
	brokers := []*daemon.Broker{newBroker(), newBroker(), newBroker()}
	project := ex.Account.Projects[0].ID
	for _, b := range brokers {
		if _, err := b.ClientToken(ctx, project); err != nil {
			t.Fatal(err)
		}
	}

	// Peers fetch through the first daemon's socket all along.
	pol, _, err := policy.Compile(rootRule(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "exl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := daemon.NewServer(daemon.ServerConfig{Broker: brokers[0], Policy: pol, Logger: newTestLogger(logs)})
	sctx, stopServer := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	defer func() { stopServer(); <-served }()

	var (
		stop            atomic.Bool
		fetches, failed atomic.Int64
		wg              sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := daemon.NewClient(filepath.Join(dir, "s.sock"))
			for !stop.Load() {
				if _, err := cl.Token(ctx, daemon.ScopeClient, project); err != nil {
					failed.Add(1)
				}
				fetches.Add(1)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	// Rotations run back to back on daemon 0 while the leader dies.
	var (
		rotations, rotateErrs atomic.Int64
		lastOK                atomic.Int64 // unix nanos of the last successful rotation
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if _, err := brokers[0].Rotate(ctx, project, time.Hour); err != nil {
				rotateErrs.Add(1)
			} else {
				rotations.Add(1)
				lastOK.Store(time.Now().UnixNano())
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	_, _, election, err := c.KillLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now().Add(-election)
	// Wait for rotations to resume on the new leader.
	deadline := time.Now().Add(60 * time.Second)
	for time.Unix(0, lastOK.Load()).Before(killedAt.Add(election)) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	resumed := time.Unix(0, lastOK.Load()).Sub(killedAt)
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	if failed.Load() != 0 {
		t.Errorf("%d of %d fetches failed across the failover", failed.Load(), fetches.Load())
	}
	if time.Unix(0, lastOK.Load()).Before(killedAt) {
		t.Fatalf("no rotation succeeded after the leader was killed")
	}
	// Every live client token is the current one or a retiring one: none
	// was minted and then lost.
	// Another daemon can rotate after the failover too.
	if _, err := brokers[1].Rotate(ctx, project, -1); err != nil {
		t.Fatalf("rotation on another daemon after the failover: %v", err)
	}
	store, err := vaultstore.New(ctx, vaultstore.Config{Addresses: addrs, Token: c.Token(), Path: path})
	if err != nil {
		t.Fatal(err)
	}
	stored, _, err := store.Load(ctx, daemon.ClientKey(project))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{stored.Token.Reveal(): true}
	for _, r := range stored.Retiring {
		known[r.Token.Reveal()] = true
	}
	orphans := 0
	for _, ti := range ex.Tokens() {
		if ti.ProjectID == project && ti.Kind == "access" && !known[ti.ID] {
			orphans++
		}
	}
	if orphans != 0 {
		t.Errorf("%d client tokens are live in Exceptionless but unknown to Vault (orphaned)", orphans)
	}
	for i, b := range brokers[1:] {
		b.Tick(ctx)
		got, err := b.ClientToken(ctx, project)
		if err != nil || got.Token != stored.Token {
			t.Errorf("daemon %d does not serve the current token after a poll (%v)", i+1, err)
		}
	}
	t.Logf("leader killed: election %s, rotations resumed %s after the kill; %d fetches (%d failed), %d rotations (%d failed during the election), %d retiring, 0 orphaned",
		election.Round(time.Millisecond), resumed.Round(time.Millisecond), fetches.Load(), failed.Load(), rotations.Load(), rotateErrs.Load(), len(stored.Retiring))
}

func TestScheduledRotationByMaxAge(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	clock := exceptionlesstest.NewClock(time.Now())
	mk := func() *daemon.Broker {
		return e.brokerWith(func(c *daemon.BrokerConfig) { c.Now, c.MaxAge = clock.Now, 24*time.Hour })
	}
	a, b := mk(), mk()
	project := e.ex.Account.Projects[0].ID
	first, err := a.ClientToken(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ClientToken(ctx, project); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	a.Tick(ctx)
	b.Tick(ctx)
	if got, _ := a.ClientToken(ctx, project); got.Token != first.Token {
		t.Fatal("rotated before max_age")
	}
	clock.Advance(24 * time.Hour)
	// Both daemons see the token as too old; only one rotation happens.
	a.Tick(ctx)
	b.Tick(ctx)
	na, _ := a.ClientToken(ctx, project)
	nb, _ := b.ClientToken(ctx, project)
	if na.Token == first.Token || nb.Token != na.Token {
		t.Fatalf("after max_age: rotated %v, both serve the same %v", na.Token != first.Token, nb.Token == na.Token)
	}
	if n := len(e.liveProjectTokens(project)); n != 2 {
		t.Errorf("live tokens = %d, want 2 (the new one and the old one in its grace period)", n)
	}
	if st := a.Status(); st.Counters.Rotations+b.Status().Counters.Rotations != 1 {
		t.Errorf("rotations = %d + %d, want 1 in all", st.Counters.Rotations, b.Status().Counters.Rotations)
	}
}
