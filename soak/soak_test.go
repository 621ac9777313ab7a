package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/daemon/policy"
	"github.com/exless/exless/internal/testproc"
	"github.com/exless/exless/internal/testrun"
	"github.com/exless/exless/vaultstore"
	"github.com/exless/exless/vaultstore/vaulttest"
)

// Environment of a peer process (this test binary run again as another uid).
const (
	peerEnv     = "EXLESS_SOAK_PEER" // "allowed" or "refused"
	socketEnv   = "EXLESS_SOAK_SOCKET"
	workersEnv  = "EXLESS_SOAK_WORKERS"
	projectsEnv = "EXLESS_SOAK_PROJECTS" // comma-separated ids
)

func TestMain(m *testing.M) {
	if os.Getenv(peerEnv) != "" {
		os.Exit(runPeer())
	}
	vaulttest.Main(m)
}

// counts is what a group of peers saw.
type counts struct {
	OK, Refused, Failed int64
	Errors              []string // the first few unexpected errors (never tokens)
}

func (c *counts) add(ok, refused bool, err error, mu *sync.Mutex) {
	switch {
	case ok:
		atomic.AddInt64(&c.OK, 1)
	case refused:
		atomic.AddInt64(&c.Refused, 1)
	default:
		atomic.AddInt64(&c.Failed, 1)
		mu.Lock()
		if len(c.Errors) < 5 {
			c.Errors = append(c.Errors, err.Error())
		}
		mu.Unlock()
	}
}

// runPeer fetches client tokens with several workers until standard input
// closes, then prints its counts as JSON.
func runPeer() int {
	socket := os.Getenv(socketEnv)
	projects := strings.Split(os.Getenv(projectsEnv), ",")
	workers, _ := strconv.Atoi(os.Getenv(workersEnv))
	var stop atomic.Bool
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop.Store(true) }()
	var c counts
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := daemon.NewClient(socket)
			for n := i; !stop.Load(); n++ {
				_, err := cl.Token(context.Background(), daemon.ScopeClient, projects[n%len(projects)])
				var denied *daemon.AccessDeniedError
				c.add(err == nil, errors.As(err, &denied) && !denied.Socket, err, &mu)
			}
		}()
	}
	wg.Wait()
	if err := json.NewEncoder(os.Stdout).Encode(&c); err != nil {
		return 1
	}
	return 0
}

// peerGroup is a running peer process.
type peerGroup struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer
}

func startPeers(t *testing.T, bin, socket, mode string, uid uint32, workers int, projects []string) *peerGroup {
	t.Helper()
	g := &peerGroup{cmd: exec.Command(bin, "-test.run=^$")}
	g.cmd.Env = []string{peerEnv + "=" + mode, socketEnv + "=" + socket, workersEnv + "=" + strconv.Itoa(workers),
		projectsEnv + "=" + strings.Join(projects, ","), "HOME=/"}
	g.cmd.Dir = "/"
	g.cmd.Stdout = &g.out
	g.cmd.Stderr = os.Stderr
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}, Pdeathsig: syscall.SIGKILL}
	var err error
	if g.stdin, err = g.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *peerGroup) finish(t *testing.T) counts {
	t.Helper()
	_ = g.stdin.Close()
	if err := g.cmd.Wait(); err != nil {
		t.Fatalf("peer process: %v", err)
	}
	var c counts
	if err := json.Unmarshal(g.out.Bytes(), &c); err != nil {
		t.Fatalf("peer process output: %v", err)
	}
	return c
}

// usage is what the soak watches for leaks.
type usage struct {
	goroutines int
	fds        int
	heapLive   uint64 // bytes, after a forced GC
	rss        uint64 // bytes, reported only: Go returns memory lazily
}

func measure() usage {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	u := usage{goroutines: runtime.NumGoroutine(), heapLive: s[0].Value.Uint64()}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		u.fds = len(ents)
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				u.rss = kb << 10
			}
		}
	}
	return u
}

func (u usage) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, live heap %.1f MiB, RSS %.1f MiB",
		u.goroutines, u.fds, float64(u.heapLive)/(1<<20), float64(u.rss)/(1<<20))
}

func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("EXLESS_SOAK_DURATION")
	if v == "" {
		return 2 * time.Minute
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 10*time.Second {
		t.Fatalf("EXLESS_SOAK_DURATION=%q: want a duration of at least 10s, e.g. 2m or 2h", v)
	}
	return d
}

func TestSoak(t *testing.T) {
	testproc.RequireRoot(t, "the soak runs peers as other uids")
	dur := soakDuration(t)
	ctx := context.Background()
	node := vaulttest.StartPersistent(t)
	ex := exceptionlesstest.NewServer(exceptionlesstest.Config{})
	t.Cleanup(ex.Close)
	api, err := exceptionless.New(ex.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := vaultstore.New(ctx, vaultstore.Config{
		Address: node.Addr, Token: node.Token(), Mount: "secret", Path: "exless/soak", Timeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}

	dir, err := os.MkdirTemp("", "exl-soak-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "exlessd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	logger := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	broker := daemon.NewBroker(daemon.BrokerConfig{
		Store: store, Upstream: api, Email: ex.Account.Email,
		Password:     func() ([]byte, error) { return []byte(ex.Account.Password), nil },
		Host:         "soak",
		Logger:       logger,
		PollInterval: 2 * time.Second,
		Grace:        3 * time.Second,
		LeaseWait:    5 * time.Second,
	})
	rules := []policy.Rule{
		{Name: "ops", Users: []string{"0"}, Scopes: []string{"user", "client"}, Projects: []string{"*"},
			Actions: []string{"token", "rotate", "status", "reload"}},
		{Name: "svc", Users: []string{"4242"}, Scopes: []string{"client"}, Projects: []string{"*"}},
	}
	pol, _, err := policy.Compile(rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	var reloads atomic.Int64
	var srv *daemon.Server
	srv = daemon.NewServer(daemon.ServerConfig{
		Broker: broker, Policy: pol, Logger: logger,
		// Sized for the soak's load, with timeouts that a busy 2-core
		// machine cannot trip: the limits have tests of their own.
		Limits: daemon.Limits{MaxConnections: 4096, MaxConnectionsPerUID: 4096, RequestsPerSecond: 1e6, Burst: 1 << 20,
			HeaderTimeout: 30 * time.Second, RequestTimeout: time.Minute, WriteTimeout: 2 * time.Minute},
		Reload: func(context.Context) error {
			p, _, err := policy.Compile(rules, nil)
			if err == nil {
				srv.SetPolicy(p)
				reloads.Add(1)
			}
			return err
		},
	})
	socket := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(socket, 0o666); err != nil {
		t.Fatal(err)
	}
	sctx, stopDaemon := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); broker.Run(sctx) }()

	ops := daemon.NewClient(socket)
	projects := []string{ex.Account.Projects[0].ID, ex.Account.Projects[1].ID}
	secrets := newSecretSet(ex.Account.Password, node.Token())
	for _, p := range projects {
		tok, err := ops.Token(ctx, daemon.ScopeClient, p)
		if err != nil {
			t.Fatalf("warm-up: %v", err)
		}
		secrets.add(tok.Token)
	}
	if _, err := ops.Token(ctx, daemon.ScopeUser, ""); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	before := measure()

	bin := filepath.Join(dir, "soak.test")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := copyFile(self, bin); err != nil {
		t.Fatal(err)
	}
	const inProcess, otherUID, refusedUID = 300, 60, 60
	allowedPeers := startPeers(t, bin, socket, "allowed", 4242, otherUID, projects)
	refusedPeers := startPeers(t, bin, socket, "refused", 65534, refusedUID, projects)

	// The allowed peers of this process; they may also fetch a project
	// added during the run once it has been fetched by the operator.
	var current atomic.Pointer[[]string]
	current.Store(&projects)
	var local counts
	var localMu sync.Mutex
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for i := range inProcess {
		workers.Add(1)
		go func() {
			defer workers.Done()
			c := daemon.NewClient(socket)
			for n := i; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ps := *current.Load()
				scope, project := daemon.ScopeClient, ps[n%len(ps)]
				if n%10 == 0 {
					scope, project = daemon.ScopeUser, ""
				}
				res, err := c.Token(ctx, scope, project)
				if err == nil && n%50 == 0 {
					secrets.add(res.Token)
				}
				local.add(err == nil, false, err, &localMu)
			}
		}()
	}

	// Trouble, on a schedule, until the time is up.
	var rotations, rotateFailures, faults, rotationsAfterRestart int
	start := time.Now()
	restarted, added := false, false
	rotateTick := time.NewTicker(5 * time.Second)
	reloadTick := time.NewTicker(7 * time.Second)
	// One fault every 10 s: a queued failure waits for the next matching
	// request, so faster injection would pile up and hold the daemon in
	// upstream backoff for the whole run, which tests nothing more.
	faultTick := time.NewTicker(10 * time.Second)
	for time.Since(start) < dur {
		select {
		case <-rotateTick.C:
			grace := time.Duration(0)
			if rand.IntN(2) == 0 {
				grace = 3 * time.Second
			}
			ps := *current.Load()
			if _, err := ops.Rotate(ctx, ps[rand.IntN(len(ps))], grace); err != nil {
				rotateFailures++
				t.Logf("%s rotate: %v", time.Since(start).Round(time.Second), err)
			} else {
				rotations++
				if restarted {
					rotationsAfterRestart++
				}
			}
		case <-reloadTick.C:
			if err := ops.Reload(ctx); err != nil {
				t.Errorf("reload: %v", err)
			}
		case <-faultTick.C:
			faults++
			switch faults % 3 {
			case 0:
				ex.FailNext("POST", "/api/v2/projects/", 503) // the next mint
			case 1:
				ex.SetLatency("", "/api/v2/", 150*time.Millisecond)
			case 2:
				ex.SetLatency("", "/api/v2/", 0)
				ex.FailNext("DELETE", "/api/v2/tokens/", 500) // the next revocation
			}
		}
		if !added && time.Since(start) > dur/3 {
			// A project appears: the operator fetches it first (the mint),
			// then every peer of this process asks for it too.
			added = true
			id := ex.AddProject(ex.Account.OrganizationID, "soak-new")
			tok, err := fetchRetrying(ctx, ops, id)
			if err != nil {
				t.Errorf("first fetch of a new project: %v", err)
			} else {
				secrets.add(tok)
				ps := append(append([]string(nil), projects...), id)
				current.Store(&ps)
			}
		}
		if !restarted && time.Since(start) > dur/2 {
			restarted = true
			t0 := time.Now()
			if err := node.Restart(); err != nil {
				t.Fatalf("vault restart: %v", err)
			}
			t.Logf("%s vault restarted in %s", time.Since(start).Round(time.Second), time.Since(t0).Round(time.Millisecond))
		}
	}
	rotateTick.Stop()
	reloadTick.Stop()
	faultTick.Stop()
	ex.SetLatency("", "/api/v2/", 0)
	close(stop)
	workers.Wait()
	other := allowedPeers.finish(t)
	refused := refusedPeers.finish(t)
	st, err := ops.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // let server-side connection goroutines end
	after := measure()

	t.Logf("soak %s: %d peers in this process (uid 0), %d as uid 4242, %d refused as uid 65534", dur, inProcess, otherUID, refusedUID)
	t.Logf("fetches: uid 0 ok %d failed %d; uid 4242 ok %d failed %d; uid 65534 refused %d, granted %d, failed %d",
		local.OK, local.Failed, other.OK, other.Failed, refused.Refused, refused.OK, refused.Failed)
	t.Logf("rotations %d (failed %d under injected faults), reloads %d, fault injections %d; daemon: logins %d, mints %d, revocations %d",
		rotations, rotateFailures, reloads.Load(), faults, st.Logins, st.Mints, st.Revocations)
	t.Logf("before: %s", before)
	t.Logf("after:  %s", after)

	if local.Failed+other.Failed != 0 {
		t.Errorf("allowed fetches failed: %d (first errors: %q %q)", local.Failed+other.Failed, local.Errors, other.Errors)
	}
	if local.OK == 0 || other.OK == 0 || refused.Refused == 0 {
		t.Errorf("a peer group made no progress")
	}
	if refused.OK != 0 || refused.Failed != 0 {
		t.Errorf("refused peers: %d granted, %d failed otherwise (%q)", refused.OK, refused.Failed, refused.Errors)
	}
	if rotations == 0 || reloads.Load() == 0 || !restarted {
		t.Errorf("the soak did not exercise rotations (%d), reloads (%d) and a vault restart (%v)", rotations, reloads.Load(), restarted)
	}
	if rotationsAfterRestart == 0 || !st.VaultReachable {
		t.Errorf("after the vault restart: %d rotations succeeded, vault reachable %v", rotationsAfterRestart, st.VaultReachable)
	}
	if d := after.goroutines - before.goroutines; d > 20 {
		t.Errorf("goroutines grew by %d", d)
	}
	if d := after.fds - before.fds; d > 20 {
		t.Errorf("open files grew by %d", d)
	}
	if after.heapLive > before.heapLive+max(before.heapLive/2, 8<<20) {
		t.Errorf("live heap grew from %d to %d bytes", before.heapLive, after.heapLive)
	}

	stopDaemon()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	bg.Wait()
	for _, ti := range ex.Tokens() {
		secrets.add(exceptionless.Token(ti.ID))
	}
	testrun.SaveFile(t, "exlessd", logPath)
	lines, hits := secrets.scan(t, logPath)
	t.Logf("log: %d lines checked for %d secrets, %d hits", lines, secrets.len(), hits)
	if hits != 0 {
		t.Errorf("%d log lines carry a token or password", hits)
	}
}

// fetchRetrying fetches a client token, retrying while injected faults
// make Exceptionless fail.
func fetchRetrying(ctx context.Context, c *daemon.Client, project string) (exceptionless.Token, error) {
	var err error
	for range 90 { // the daemon may be in upstream backoff after a fault
		var res daemon.TokenResponse
		if res, err = c.Token(ctx, daemon.ScopeClient, project); err == nil {
			return res.Token, nil
		}
		time.Sleep(time.Second)
	}
	return "", err
}

// secretSet holds every secret the soak saw, to look for in the log.
type secretSet struct {
	mu   sync.Mutex
	vals map[string]bool
}

func newSecretSet(vals ...string) *secretSet {
	s := &secretSet{vals: map[string]bool{}}
	for _, v := range vals {
		s.vals[v] = true
	}
	return s
}

func (s *secretSet) add(tok exceptionless.Token) {
	s.mu.Lock()
	if !s.vals[tok.Reveal()] {
		testrun.Secret(tok.Reveal()) // for make test's scan of every saved log
	}
	s.vals[tok.Reveal()] = true
	s.mu.Unlock()
}

func (s *secretSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.vals)
}

// scan counts the log's lines and the lines that hold any secret.
func (s *secretSet) scan(t *testing.T, path string) (lines, hits int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines++
		for v := range s.vals {
			if v != "" && bytes.Contains(sc.Bytes(), []byte(v)) {
				hits++
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines, hits
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}
