// Package vaulttest starts real HashiCorp Vault servers for tests.
//
// It owns the test fixture only: finding the Vault binary that
// scripts/vault.sh builds, running `vault server -dev` on a free loopback
// port with a random root token (Start, Shared), a restartable server with
// file storage that keeps its data (StartPersistent, optionally with a TLS
// listener that requires client certificates), and a Raft cluster whose
// leader a test can kill (StartCluster). The non-dev servers are
// initialised with one key share and unsealed through the HTTP API, so the
// root token and the unseal key never appear on a command line, in a file
// or in test output. It talks to Vault with net/http alone, so that any
// package's tests can use it without linking the Vault API client.
//
// Root tokens and unseal keys are registered with testrun, so no saved test
// log may hold them. Vault's own logs are not saved: a dev server prints
// its root token at start by design.
//
// Tests never skip when Vault is missing: a skipped storage test is a hole
// nobody sees. Start and Shared fail the test with a message saying how to
// build the binary instead.
package vaulttest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exless/exless/internal/child"
	"github.com/exless/exless/internal/testrun"
)

// VaultVersion is the Vault release that scripts/vault.sh builds.
const VaultVersion = "v1.21.4"

const (
	startTimeout = 30 * time.Second // from exec to a healthy /v1/sys/health
	stopTimeout  = 5 * time.Second  // SIGTERM to exit, before SIGKILL
	portAttempts = 5                // fresh ports tried when one is taken
	logTailLines = 60               // lines of server log shown on failure
)

// Binary returns the path of the Vault server binary: $EXLESS_VAULT_BIN if
// set, else the cache path that scripts/vault.sh builds to. The error says
// how to get the binary.
func Binary() (string, error) {
	path := os.Getenv("EXLESS_VAULT_BIN")
	if path == "" {
		dir, err := cacheDir()
		if err != nil {
			return "", err
		}
		path = filepath.Join(dir, "vault-"+VaultVersion)
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("no Vault binary at %s: run `make vault` (scripts/vault.sh build) first; tests never skip Vault", path)
	}
	return path, nil
}

// cacheDir mirrors scripts/vault.sh:
// ${EXLESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/exless}. Like the
// shell's ":-", an empty variable counts as unset.
func cacheDir() (string, error) {
	if d := os.Getenv("EXLESS_CACHE_DIR"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "exless"), nil
	}
	home := os.Getenv("HOME")
	if home == "" {
		return "", errors.New("cannot locate the Vault binary: neither EXLESS_VAULT_BIN, EXLESS_CACHE_DIR, XDG_CACHE_HOME nor HOME is set")
	}
	return filepath.Join(home, ".cache", "exless"), nil
}

// Server is a running Vault dev server. It keeps everything in memory, with
// KV v2 mounted at "secret/".
type Server struct {
	Addr  string // base URL, "http://127.0.0.1:PORT"
	Token string // root token, random per server
	PID   int

	proc     *child.Proc
	logPath  string
	logFile  *os.File
	stopOnce sync.Once
	mask     []string // more secrets to mask in log tails (an unseal key)
}

// Start runs a fresh dev server for tb and stops it when tb's cleanup runs.
// It fails tb (never skips) if no server can be started. Starting takes about
// a quarter second and stopping about half a second; a package with many tests
// can share one server through Main and Shared instead.
func Start(tb testing.TB) *Server {
	tb.Helper()
	dir := tb.TempDir()
	s, err := start(dir)
	if err != nil {
		tb.Fatalf("vaulttest: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("vaulttest: server log (%s), last lines:\n%s", s.logPath, s.logTail())
		}
		if err := s.Stop(); err != nil {
			tb.Errorf("vaulttest: %v", err)
		}
	})
	return s
}

var shared struct {
	mu      sync.Mutex
	inMain  bool
	srv     *Server
	dir     string
	err     error // a failed start is remembered so later tests fail fast
	started bool
}

// Main runs the tests of a package with one shared server, started by the
// first call to Shared, and stops it afterwards. Use it as
//
//	func TestMain(m *testing.M) { vaulttest.Main(m) }
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()

	code := m.Run()

	shared.mu.Lock()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "vaulttest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// Shared returns the package's shared server, starting it on first use. Tests
// sharing it must use distinct KV paths. It requires the package's TestMain
// to call Main, which stops the server.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		tb.Fatalf("vaulttest: Shared needs `func TestMain(m *testing.M) { vaulttest.Main(m) }` in the package")
	}
	if !shared.started {
		shared.started = true
		shared.dir, shared.err = os.MkdirTemp("", "vaulttest-")
		if shared.err == nil {
			shared.srv, shared.err = start(shared.dir)
		}
	}
	if shared.err != nil {
		tb.Fatalf("vaulttest: %v", shared.err)
	}
	s := shared.srv
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("vaulttest: shared server log (%s), last lines:\n%s", s.logPath, s.logTail())
		}
	})
	return s
}

// start runs a server with its files under dir, retrying on a fresh port when
// the chosen one was taken in the meantime.
func start(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := range portAttempts {
		port, err := pickPort()
		if err != nil {
			return nil, err
		}
		s, err := startOnce(bin, filepath.Join(dir, "try"+strconv.Itoa(attempt)), port)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no free port after %d attempts: %w", portAttempts, lastErr)
}

var errPortTaken = errors.New("port already in use")

// pickPort is freePortPair; tests replace it to force a port clash.
var pickPort = freePortPair

func startOnce(bin, dir string, port int) (*Server, error) {
	home := filepath.Join(dir, "home")
	tmp := filepath.Join(dir, "tmp")
	for _, d := range []string{home, tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	tok, err := randomToken()
	if err != nil {
		return nil, err
	}
	testrun.Secret(tok)
	logPath := filepath.Join(dir, "vault.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// The root token goes in through the environment: argv is readable by
	// every user on the host (/proc/PID/cmdline).
	s, err := launch(bin, dir, []string{"server", "-dev",
		"-dev-no-store-token", // else it writes ~/.vault-token
		"-dev-listen-address=" + listen,
	}, append(serverEnv(home, tmp), "VAULT_DEV_ROOT_TOKEN_ID="+tok), logFile)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	s.Addr, s.Token, s.logPath = "http://"+listen, tok, logPath
	if err := s.waitHealthy(startTimeout); err != nil {
		// A server that never became healthy holds nothing worth a clean
		// shutdown, and after a failed bind Vault idles 2 s before exiting.
		s.kill()
		if errors.Is(err, errPortTaken) {
			return nil, fmt.Errorf("%s: %w", listen, err)
		}
		return nil, fmt.Errorf("vault dev server on %s: %v; log %s:\n%s", listen, err, logPath, s.logTail())
	}
	return s, nil
}

// launch starts bin with args in dir, its output going to logFile, and
// returns the running Server with PID and process fields set.
func launch(bin, dir string, args, env []string, logFile *os.File) (*Server, error) {
	p, err := child.Start(bin, args, env, dir, logFile)
	if err != nil {
		return nil, err
	}
	return &Server{PID: p.PID(), proc: p, logFile: logFile}, nil
}

// kill ends a server that failed to start, without the SIGTERM grace.
func (s *Server) kill() {
	s.stopOnce.Do(func() {
		s.proc.Kill()
		s.logFile.Close()
	})
}

// portClash reports whether the server log says a listener could not bind.
func (s *Server) portClash() bool {
	b, err := os.ReadFile(s.logPath)
	return err == nil && bytes.Contains(b, []byte("address already in use"))
}

// serverEnv keeps the caller's environment minus VAULT_* variables, which
// would otherwise reconfigure the dev server (VAULT_DEV_ROOT_TOKEN_ID,
// VAULT_ADDR, …), and gives it its own HOME and temp dir.
func serverEnv(home, tmp string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "VAULT_"), k == "HOME", k == "TMPDIR":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "TMPDIR="+tmp)
}

// freePortPair returns a loopback port p such that p+1, the dev server's
// cluster port, was free as well. Another process may still take either
// before Vault binds them; start retries then.
func freePortPair() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port >= 65535 {
			l.Close()
			continue
		}
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return port, nil
	}
	return 0, errors.New("find a free port: no pair of adjacent free loopback ports")
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "root-" + hex.EncodeToString(b), nil
}

// client skips proxies: the server is on loopback by construction.
var client = &http.Client{
	Transport: &http.Transport{Proxy: nil},
	Timeout:   10 * time.Second,
}

// tlsClients holds the HTTP client of each TLS node, by address.
var tlsClients sync.Map

// clientFor returns the HTTP client for a server address.
func clientFor(addr string) *http.Client {
	if c, ok := tlsClients.Load(addr); ok {
		return c.(*http.Client)
	}
	return client
}

func (s *Server) waitHealthy(timeout time.Duration) error {
	return s.waitFor(timeout, func(code int) bool { return code == http.StatusOK })
}

// waitFor polls /v1/sys/health until want accepts its status, the process
// exits, its log reports a port clash, or timeout passes.
func (s *Server) waitFor(timeout time.Duration, want func(code int) bool) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		// Before probing: on a clash the probe may reach the other
		// listener, which need not answer at all.
		if s.portClash() {
			return errPortTaken
		}
		select {
		case <-s.proc.Done():
			if s.portClash() {
				return errPortTaken
			}
			return fmt.Errorf("exited before becoming ready (%v)", s.proc.Err())
		default:
		}
		code, err := healthCode(s.Addr)
		if err == nil && want(code) {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("sys/health: %d", code)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %s", timeout, last)
		}
		select {
		case <-s.proc.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// health reports nil when /v1/sys/health answers 200 (initialised, unsealed,
// active).
func (s *Server) health() error {
	code, err := healthCode(s.Addr)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("sys/health: %d", code)
	}
	return nil
}

// healthCode returns the status of addr's /v1/sys/health: 200 active, 429
// standby, 501 not initialised, 503 sealed.
func healthCode(addr string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/v1/sys/health", nil)
	if err != nil {
		return 0, err
	}
	resp, err := clientFor(addr).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// Healthy reports whether the server answers /v1/sys/health with 200.
func (s *Server) Healthy() bool { return s.health() == nil }

// Stop stops the server: SIGTERM to its own pid, SIGKILL if it has not
// exited within a few seconds, then reaps it. It is safe to call more than
// once; Start's cleanup calls it too.
func (s *Server) Stop() error {
	var err error
	s.stopOnce.Do(func() {
		if err = s.proc.Stop(stopTimeout); err != nil {
			err = fmt.Errorf("vault dev server: %w", err)
		}
		s.logFile.Close()
	})
	return err
}

// Env returns VAULT_ADDR and VAULT_TOKEN for the server, ready to append to
// a child process's environment.
func (s *Server) Env() []string {
	return []string{"VAULT_ADDR=" + s.Addr, "VAULT_TOKEN=" + s.Token}
}

// Do sends one request to the server's HTTP API with the root token: path
// is relative to /v1/ (e.g. "secret/data/app"), body (if not nil) is sent as
// JSON. It returns the status and the decoded JSON response (nil when the
// body is empty). Other packages' tests use it to seed or inspect Vault.
func (s *Server) Do(ctx context.Context, method, path string, body any) (int, map[string]any, error) {
	return request(ctx, s.Addr, s.Token, method, path, body)
}

// request is Do against any address, with token if not empty.
func request(ctx context.Context, addr, token, method, path string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, addr+"/v1/"+strings.TrimPrefix(path, "/"), rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := clientFor(addr).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return resp.StatusCode, nil, nil
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	registerSecrets(out)
	return resp.StatusCode, out, nil
}

// registerSecrets registers the credentials in a Vault answer with testrun:
// every token, secret_id or key a test makes passes through here.
func registerSecrets(out map[string]any) {
	str := func(m any, key string) {
		if mm, ok := m.(map[string]any); ok {
			if v, ok := mm[key].(string); ok {
				testrun.Secret(v)
			}
		}
	}
	str(out["auth"], "client_token")
	str(out["data"], "secret_id")
	str(out["data"], "role_id")
	str(out, "root_token")
	for _, k := range []string{"keys", "keys_base64"} {
		list, _ := out[k].([]any)
		for _, v := range list {
			if v, ok := v.(string); ok {
				testrun.Secret(v)
			}
		}
	}
}

// logTail returns the last lines of the server log with the root token and
// unseal key masked: the dev server prints both at start, and test output
// must never carry a secret.
func (s *Server) logTail() string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if k, _, ok := strings.Cut(line, "Unseal Key:"); ok {
			line = k + "Unseal Key: [REDACTED]"
		}
		lines = append(lines, line)
		if len(lines) > logTailLines {
			lines = lines[1:]
		}
	}
	out := strings.Join(lines, "\n")
	for _, sec := range append([]string{s.Token}, s.mask...) {
		if sec != "" {
			out = strings.ReplaceAll(out, sec, "[REDACTED]")
		}
	}
	return out
}
