package vaultstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/vaultstore"
	"github.com/exless/exless/vaultstore/vaulttest"
)

// deadNode is a loopback address that accepts connections and closes them
// at once, counting them: a node whose process is gone but whose port
// still answers (or a broken proxy).
func deadNode(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return "http://" + l.Addr().String(), &n
}

// refusedAddr is a loopback port nobody listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestFailoverFirstAddressDown: the first address refuses connections, the
// next one is answered, and the store stays with the one that answered.
func TestFailoverFirstAddressDown(t *testing.T) {
	srv := vaulttest.Shared(t)
	dead, accepts := deadNode(t)
	s, err := vaultstore.New(t.Context(), vaultstore.Config{
		Address: refusedAddr(t), Addresses: []string{dead, srv.Addr}, Token: srv.Token, Path: testPath(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	w := &saver{t: t, s: s}
	if err := w.save("first"); err != nil {
		t.Fatalf("save with the first two addresses down: %v", err)
	}
	t.Logf("first save and load past two dead addresses: %s", time.Since(t0).Round(time.Microsecond))
	if s.Address() != srv.Addr {
		t.Errorf("Address() = %s, want %s (the one that answered)", s.Address(), srv.Addr)
	}
	before := accepts.Load()
	if before == 0 {
		t.Error("the dead node was never tried")
	}
	for i := range 10 {
		if err := w.save(fmt.Sprintf("w%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if after := accepts.Load(); after != before {
		t.Errorf("the dead node got %d more connections after failover; the store should stay with the node that answered", after-before)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// TestFailoverAllDown: every address down gives one error naming each, not
// a conflict or not-found, and no token.
func TestFailoverAllDown(t *testing.T) {
	srv := vaulttest.Shared(t)
	a, b := refusedAddr(t), refusedAddr(t)
	s, err := vaultstore.New(t.Context(), vaultstore.Config{
		Addresses: []string{a, b}, Token: srv.Token, Path: testPath(t), Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The store retries across an election for several seconds; a caller's
	// deadline cuts that short, and the error still says what each node
	// said.
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	_, _, err = s.Load(ctx, daemon.UserKey)
	var ve *vaultstore.Error
	if !errors.As(err, &ve) || ve.StatusCode != 0 || errors.Is(err, daemon.ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) {
		t.Errorf("Load with every node down = %v, want a transport error naming both addresses", err)
	}
	t.Logf("Load: %v", err)
	checkErr(t, err, srv)
}

// TestFailoverBetweenDevServers: two independent servers; the store writes
// to the first until it stops, then carries on with the second.
func TestFailoverBetweenDevServers(t *testing.T) {
	second := vaulttest.Shared(t)
	first := vaulttest.Start(t)
	// Both take the same token: the second's root token, created on the
	// first too.
	must(t, first, "POST", "auth/token/create", map[string]any{"id": second.Token, "policies": []string{"root"}})
	s, err := vaultstore.New(t.Context(), vaultstore.Config{
		Addresses: []string{first.Addr, second.Addr}, Token: second.Token, Path: testPath(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(t.Context(), daemon.UserKey, record("on-first"), 0); err != nil {
		t.Fatal(err)
	}
	if s.Address() != first.Addr {
		t.Errorf("Address() = %s, want the first", s.Address())
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	// The second never saw the record: proof that the read went there.
	if _, v, err := s.Load(t.Context(), daemon.UserKey); !errors.Is(err, daemon.ErrNotFound) || v != 0 {
		t.Fatalf("Load after the first stopped = %d, %v; want ErrNotFound from the second", v, err)
	}
	if _, err := s.Save(t.Context(), daemon.UserKey, record("on-second"), 0); err != nil {
		t.Fatal(err)
	}
	if s.Address() != second.Addr {
		t.Errorf("Address() = %s, want the second", s.Address())
	}
}

// TestFailoverPastSealedNode: a sealed node answers 503; the store asks the
// next one.
func TestFailoverPastSealedNode(t *testing.T) {
	srv := vaulttest.Shared(t)
	sealed := vaulttest.StartPersistent(t)
	if err := sealed.Seal(t.Context()); err != nil {
		t.Fatal(err)
	}
	s, err := vaultstore.New(t.Context(), vaultstore.Config{
		Addresses: []string{sealed.Addr, srv.Addr}, Token: srv.Token, Path: testPath(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &saver{t: t, s: s}
	if err := w.save("x"); err != nil {
		t.Fatalf("save past a sealed node: %v", err)
	}
	if s.Address() != srv.Addr {
		t.Errorf("Address() = %s, want %s", s.Address(), srv.Addr)
	}

	// Alone, the sealed node's answer is the error.
	only, err := vaultstore.New(t.Context(), vaultstore.Config{
		Addresses: []string{sealed.Addr, refusedAddr(t)}, Token: srv.Token, Path: testPath(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Several addresses retry a sealed cluster for seconds (it may be
	// being unsealed); the caller's deadline ends that.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, _, err = only.Load(ctx, daemon.UserKey)
	if err == nil || !strings.Contains(err.Error(), "503: Vault is sealed") {
		t.Errorf("Load with only a sealed node = %v, want Vault's 503 named", err)
	}
	t.Logf("Load: %v", err)
}

// TestVaultRestartKeepsRecords: a Vault with persistent storage restarts
// (stop, start, unseal); while it is down the store fails with a transport
// error, afterwards it reads what it wrote and writes on.
func TestVaultRestartKeepsRecords(t *testing.T) {
	n := vaulttest.StartPersistent(t)
	s, err := vaultstore.New(t.Context(), vaultstore.Config{
		Address: n.Addr, Token: n.Token(), Path: testPath(t), Timeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &saver{t: t, s: s}
	if err := w.save("before"); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	_, _, err = s.Load(ctx, daemon.UserKey)
	cancel()
	var ve *vaultstore.Error
	if !errors.As(err, &ve) || ve.StatusCode != 0 || errors.Is(err, daemon.ErrNotFound) {
		t.Errorf("Load while Vault is down = %v, want a transport error", err)
	}
	t0 := time.Now()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("vault start and unseal: %s", time.Since(t0).Round(time.Millisecond))
	got, v, err := s.Load(t.Context(), daemon.UserKey)
	if err != nil || v != w.version || got.ObtainedBy != "before" {
		t.Fatalf("Load after the restart = %q at %d, %v; want %q at %d", got.ObtainedBy, v, err, "before", w.version)
	}
	if err := w.save("after"); err != nil {
		t.Fatalf("save after the restart: %v", err)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping after the restart: %v", err)
	}
}

// TestRaftLeaderKilled: a store with the three addresses of a Raft cluster,
// logged in with AppRole and renewing in the background, keeps saving while
// the active node is killed (SIGKILL). It logs the failover time: from the
// kill to the next successful check-and-set write.
func TestRaftLeaderKilled(t *testing.T) {
	c := vaulttest.StartCluster(t, 3)
	leader, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	appRole(t, c, "approle", testPath(t), dir, "1h", "2h")
	// The leader last, so that the store's first node survives and the
	// kill is seen by a store that just switched to the leader: the
	// addresses in an order where the killed node is the one in use.
	var addrs []string
	for _, n := range c.Nodes {
		if n != leader {
			addrs = append(addrs, n.Addr)
		}
	}
	addrs = append([]string{leader.Addr}, addrs...)
	s, err := vaultstore.New(t.Context(), vaultstore.Config{
		Addresses: addrs, Path: testPath(t), Timeout: 20 * time.Second,
		AppRole: &vaultstore.AppRoleConfig{
			RoleIDFile: filepath.Join(dir, "role-id"), SecretIDFile: filepath.Join(dir, "secret-id"),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runStore(t, s)
	w := &saver{t: t, s: s}
	for i := range 5 {
		if err := w.save(fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if s.Address() != leader.Addr {
		t.Fatalf("store uses %s, want the leader %s", s.Address(), leader.Addr)
	}

	// A writer saves continuously; the leader dies under it.
	type event struct {
		start, end time.Time
		ok         bool
	}
	var (
		mu       sync.Mutex
		events   []event
		failures []string
		replayed int
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			by := fmt.Sprintf("during-%d", i)
			start := time.Now()
			err := w.save(by)
			if errors.Is(err, daemon.ErrConflict) {
				// The write reached the leader (and Raft) just before it
				// died; the api replayed it on the new leader, whose
				// check-and-set refused the replay. Re-read, as the daemon
				// does: the record must be our own write, neither lost
				// nor doubled.
				got, v, lerr := s.Load(context.Background(), daemon.UserKey)
				if lerr == nil && got.ObtainedBy == by && v == w.version+1 {
					replayed++
					w.version = v
					w.failed = w.failed[:len(w.failed)-1]
					err = nil
				}
			}
			mu.Lock()
			events = append(events, event{start, time.Now(), err == nil})
			if err != nil {
				failures = append(failures, err.Error())
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	killed, next, election, err := c.KillLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now().Add(-election)
	resumed := func() (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			if e.ok && !e.start.Before(killedAt) {
				return e.end, true
			}
		}
		return time.Time{}, false
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := resumed(); ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done

	resumedAt, ok := resumed()
	if !ok {
		t.Fatalf("no save that started after the kill succeeded within 30 s; failures: %q", failures)
	}
	failover := resumedAt.Sub(killedAt)
	t.Logf("leader %s killed; %s active after %s; first save begun after the kill succeeded %s after it; "+
		"%d saves in all, %d replayed after landing (conflict on replay, record verified), %d failed",
		killed.ID, next.ID, election.Round(time.Millisecond), failover.Round(time.Millisecond), w.ok, replayed, len(failures))
	for _, f := range failures {
		t.Errorf("save failed: %s", f)
	}
	if s.Address() == killed.Addr {
		t.Errorf("store still on the killed node %s", killed.Addr)
	}
	got, v, err := s.Load(t.Context(), daemon.UserKey)
	if err != nil || v != w.version {
		t.Errorf("Load after failover = %q at %d, %v; want version %d", got.ObtainedBy, v, err, w.version)
	}
	if st := s.Auth(); !st.OK || st.Logins != 1 {
		t.Errorf("auth after failover = %+v, want OK with the same token (1 login): tokens are replicated", st)
	}
}
