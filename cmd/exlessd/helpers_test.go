package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/internal/syncbuf"
	"github.com/exless/exless/internal/testrun"
	"github.com/exless/exless/vaultstore/vaulttest"
)

func TestMain(m *testing.M) { vaulttest.Main(m) }

// shortDir returns a fresh directory with a short path: unix socket paths
// are limited to 107 bytes and t.TempDir's can be longer.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "exld")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// notifyRecorder is systemd's side of sd_notify: a unixgram socket named
// by $NOTIFY_SOCKET, collecting every message (go-systemd's test style).
type notifyRecorder struct {
	t    *testing.T
	msgs chan string
}

func listenNotify(t *testing.T) *notifyRecorder {
	t.Helper()
	path := filepath.Join(shortDir(t), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	r := &notifyRecorder{t: t, msgs: make(chan string, 1000)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			r.msgs <- string(buf[:n])
		}
	}()
	return r
}

// waitFor returns the first message that has all the given lines, failing
// the test after timeout. Messages before it are skipped.
func (r *notifyRecorder) waitFor(timeout time.Duration, lines ...string) string {
	r.t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case m := <-r.msgs:
			seen = append(seen, m)
			if hasLines(m, lines...) {
				return m
			}
		case <-deadline:
			r.t.Fatalf("no sd_notify message with %q within %s; got %q", lines, timeout, seen)
			return ""
		}
	}
}

// hasLines reports whether msg has a line matching each of lines, where
// "*" matches any text ("STATUS=logged in*").
func hasLines(msg string, lines ...string) bool {
	got := strings.Split(msg, "\n")
	for _, want := range lines {
		re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(want), `\*`, ".*") + "$")
		if !slices.ContainsFunc(got, re.MatchString) {
			return false
		}
	}
	return true
}

// testEnv is one exlessd config wired to the shared real Vault (on a path
// of its own) and a fresh Exceptionless test server.
type testEnv struct {
	t       *testing.T
	vault   *vaulttest.Server
	ex      *exceptionlesstest.Server
	dir     string // config, credentials and socket live here
	config  string
	credDir string
	socket  string
	logs    *syncbuf.Buffer
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{t: t, vault: vaulttest.Shared(t), logs: testrun.Buffer(t, "exlessd")}
	e.ex = exceptionlesstest.NewServer(exceptionlesstest.Config{})
	t.Cleanup(e.ex.Close)
	e.dir = shortDir(t)
	e.config = filepath.Join(e.dir, "exlessd.hcl")
	e.socket = filepath.Join(e.dir, "s.sock")
	// The secrets are systemd-credential style: bare names resolved in
	// $CREDENTIALS_DIRECTORY.
	e.credDir = filepath.Join(e.dir, "creds")
	if err := os.Mkdir(e.credDir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", e.credDir)
	writeFile(t, filepath.Join(e.credDir, "exceptionless-password"), e.ex.Account.Password+"\n")
	writeFile(t, filepath.Join(e.credDir, "vault-token"), e.vault.Token+"\n")
	return e
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// writeConfig writes the env's config file with the given rules (HCL).
func (e *testEnv) writeConfig(rules string) {
	e.t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	writeFile(e.t, e.config, fmt.Sprintf(`
socket = %q
exceptionless {
  url           = %q
  email         = %q
  password_file = "exceptionless-password"
}
vault {
  address    = %q
  token_file = "vault-token"
  mount      = "secret"
  path       = "exless/cmd-%s"
}
%s
`, e.socket, e.ex.URL, e.ex.Account.Email, e.vault.Addr, hex.EncodeToString(b), rules))
}

// myRule grants this test process tokens, status and reload.
func myRule() string {
	return fmt.Sprintf(`rule "me" {
  users    = ["%d"]
  scopes   = ["user", "client"]
  projects = ["*"]
  actions  = ["token", "status", "reload"]
}`, os.Getuid())
}

// otherRule grants only a uid that is not this process's.
func otherRule() string {
	return fmt.Sprintf(`rule "other" {
  users    = ["%d"]
  scopes   = ["client"]
  projects = ["*"]
}`, os.Getuid()+4242)
}

// start runs serve in the background until the test ends, and returns a
// function that stops it and returns serve's error.
func (e *testEnv) start(watchdog time.Duration) func() error {
	e.t.Helper()
	if watchdog > 0 {
		e.t.Setenv("WATCHDOG_USEC", fmt.Sprint(watchdog.Microseconds()))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, serveOptions{
			configPath: e.config, logLevel: "debug", stderr: e.logs,
			startWait: 10 * time.Second, statusEvery: 50 * time.Millisecond, drain: 2 * time.Second,
		})
	}()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("serve did not return within 10s of cancel")
			}
		})
		return err
	}
	e.t.Cleanup(func() {
		if err := stop(); err != nil {
			e.t.Errorf("serve: %v", err)
		}
		e.assertNoSecretsLogged()
		if e.t.Failed() {
			e.t.Logf("exlessd log:\n%s", e.logs.String())
		}
	})
	return stop
}

func (e *testEnv) client() *daemon.Client { return daemon.NewClient(e.socket) }

// assertNoSecretsLogged fails if a token or password appears in the log.
func (e *testEnv) assertNoSecretsLogged() {
	e.t.Helper()
	logs := e.logs.String()
	for _, ti := range e.ex.Tokens() {
		if strings.Contains(logs, ti.ID) {
			e.t.Errorf("a token id appears in exlessd's log")
		}
	}
	for _, s := range []string{e.ex.Account.Password, e.vault.Token} {
		if strings.Contains(logs, s) {
			e.t.Errorf("a secret appears in exlessd's log")
		}
	}
}
