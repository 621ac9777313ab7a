package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/internal/testproc"
	"github.com/exless/exless/internal/testrun"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden and the committed completion scripts and man page")

// The test binary doubles as exlessctl and as the command exec runs, chosen
// by the name it is started under (symlinks made by binaries). The name, not
// an environment variable, decides: exec's command inherits exlessctl's
// environment.
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "exlessctl":
		if log := os.Getenv("EXLESSCTL_TEST_LOG"); log != "" {
			// The completion tests check how the scripts call exlessctl.
			f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err == nil {
				fmt.Fprintf(f, "%q\n", os.Args[1:])
				f.Close()
			}
		}
		main()
	case "exless-child":
		os.Exit(child(os.Args[1:]))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// child is the command exec runs in tests. Its modes:
//
//	report DIR        write what it can see of the token into DIR
//	print NAME        write $NAME to stdout and stderr, split across writes
//	trap SIG CODE     print "ready", then exit CODE when SIG arrives
//	kill SIG          kill itself with SIG
//	exit CODE         exit with CODE
func child(args []string) int {
	if len(args) < 2 {
		return 100
	}
	switch args[0] {
	case "report":
		dir := args[1]
		environ, _ := os.ReadFile("/proc/self/environ")
		cmdline, _ := os.ReadFile("/proc/self/cmdline")
		_ = os.WriteFile(filepath.Join(dir, "environ"), environ, 0o600)
		_ = os.WriteFile(filepath.Join(dir, "cmdline"), cmdline, 0o600)
		if s := os.Getenv(tokenFDEnv); s != "" {
			fd, err := strconv.Atoi(s)
			if err != nil {
				return 101
			}
			f := os.NewFile(uintptr(fd), "token")
			got, _ := io.ReadAll(f)
			_ = os.WriteFile(filepath.Join(dir, "fd"), got, 0o600)
			writable := "refused"
			if _, err := f.Write([]byte("x")); err == nil {
				writable = "allowed"
			}
			_ = os.WriteFile(filepath.Join(dir, "fdwrite"), []byte(writable), 0o600)
			again, _ := os.ReadFile("/dev/fd/" + s)
			_ = os.WriteFile(filepath.Join(dir, "fdagain"), again, 0o600)
		}
		return 0
	case "print":
		tok := os.Getenv(args[1])
		// Separate writes with pauses, so that exlessctl reads the
		// token in pieces.
		for _, piece := range []string{"<", tok[:5], tok[5:17], tok[17:], ">\n", "x" + tok + tok + "y\n", tok[:7] + "\n"} {
			os.Stdout.WriteString(piece)
			time.Sleep(20 * time.Millisecond)
		}
		os.Stderr.WriteString("err " + tok[:20])
		time.Sleep(20 * time.Millisecond)
		os.Stderr.WriteString(tok[20:] + "\n")
		return 0
	case "trap":
		sig, _ := strconv.Atoi(args[1])
		code, _ := strconv.Atoi(args[2])
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.Signal(sig))
		os.Stdout.WriteString("ready") // no newline: exlessctl must not hold it back
		select {
		case <-c:
			return code
		case <-time.After(20 * time.Second):
			return 102
		}
	case "kill":
		sig, _ := strconv.Atoi(args[1])
		_ = syscall.Kill(os.Getpid(), syscall.Signal(sig))
		time.Sleep(10 * time.Second)
		return 103
	case "exit":
		code, _ := strconv.Atoi(args[1])
		return code
	}
	return 100
}

// newToken returns a fresh fake token. It starts with "tk" so that no test
// output ("ready", prompts) ends in a prefix of it by chance.
func newToken(t *testing.T) string {
	t.Helper()
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 38)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return "tk" + string(b)
}

// fakeDaemon answers the socket API with canned replies. The real daemon
// is covered by the e2e tests; this one makes every error class easy.
type fakeDaemon struct {
	socket string
	dir    string

	mu       sync.Mutex
	replies  map[string]fakeReply
	requests []string
}

type fakeReply struct {
	status int
	body   any // marshalled to JSON, or written as is if a string
}

func newFakeDaemon(t *testing.T) *fakeDaemon {
	t.Helper()
	// Short, and traversable by other uids (the EACCES test): sun_path
	// holds 108 bytes, and t.TempDir is long and 0700.
	dir, err := os.MkdirTemp("", "exlctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fakeDaemon{socket: filepath.Join(dir, "d.sock"), dir: dir, replies: map[string]fakeReply{}}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.URL.RequestURI())
	reply, ok := f.replies[r.URL.Path]
	f.mu.Unlock()
	if !ok {
		reply = fakeReply{http.StatusNotFound, daemon.ErrorResponse{Error: "no such endpoint", Code: daemon.CodeNotFound}}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(reply.status)
	if s, ok := reply.body.(string); ok {
		io.WriteString(w, s)
		return
	}
	_ = json.NewEncoder(w).Encode(reply.body)
}

func (f *fakeDaemon) set(path string, status int, body any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[path] = fakeReply{status, body}
}

// serveToken makes /v1/token answer with tok.
func (f *fakeDaemon) serveToken(tok string) daemon.TokenResponse {
	obtained := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	resp := daemon.TokenResponse{
		Token: exceptionless.Token(tok), Scope: daemon.ScopeUser,
		ObtainedAt: &obtained, ObtainedBy: "host-a", CacheAgeSeconds: 12.5,
	}
	testrun.Secret(tok)
	f.set("/v1/token", http.StatusOK, resp)
	return resp
}

func (f *fakeDaemon) requested() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

type result struct {
	stdout, stderr string
	code           int
}

// ctl runs exlessctl in this process. Its stderr is saved for the
// end-of-run secret scan (stdout is where a token is meant to go).
func ctl(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"exlessctl"}, args...), &out, &errb)
	testrun.Save(t, "exlessctl-stderr", errb.String())
	return result{out.String(), errb.String(), code}
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries returns a directory holding exlessctl and exless-child: a copy
// of the test binary (in a directory other uids may use) under both names.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binErr = func() error {
			dir, err := testproc.MakePublicDir()
			if err != nil {
				return err
			}
			binDir = dir
			if _, err := testproc.CopySelf(dir, "exlessctl.test", nil); err != nil {
				return err
			}
			for _, name := range []string{"exlessctl", "exless-child"} {
				if err := os.Symlink("exlessctl.test", filepath.Join(dir, name)); err != nil {
					return err
				}
			}
			return nil
		}()
	})
	if binErr != nil {
		t.Fatalf("set up test binaries: %v", binErr)
	}
	return binDir
}

// ctlProcess prepares exlessctl as a separate process, in a session of its
// own (no controlling terminal, so that every signal is forwarded).
func ctlProcess(t *testing.T, socket string, args ...string) *exec.Cmd {
	t.Helper()
	dir := binaries(t)
	cmd := exec.Command(filepath.Join(dir, "exlessctl"), args...)
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "EXLESS_SOCKET=" + socket, "HOME=/", goraceEnv()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// goraceEnv keeps a -race build of the test binary (started as exlessctl
// and as the child) from sleeping a second at exit, as ThreadSanitizer does
// by default. A race in a child still fails it with status 66.
func goraceEnv() string {
	return strings.TrimSpace("GORACE=atexit_sleep_ms=0 " + os.Getenv("GORACE"))
}

// ctlRun runs exlessctl as a separate process to its end.
func ctlRun(t *testing.T, socket string, args ...string) result {
	t.Helper()
	cmd := ctlProcess(t, socket, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("exlessctl %s did not finish", strings.Join(args, " "))
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run exlessctl: %v", err)
	}
	// With --no-mask the user asked for the command's output as is, and a
	// test's command may print the token on purpose.
	if !slices.Contains(args, "--no-mask") {
		testrun.Save(t, "exlessctl-stderr", errb.String())
	}
	return result{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
}

// checkOneLineError checks the contract for a failure: nothing on stdout,
// one line on stderr starting "exlessctl: ".
func checkOneLineError(t *testing.T, r result) {
	t.Helper()
	if r.stdout != "" {
		t.Errorf("stdout has %d bytes on failure, want none", len(r.stdout))
	}
	if !strings.HasPrefix(r.stderr, "exlessctl: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr = %q, want one line starting \"exlessctl: \"", r.stderr)
	}
}

// golden compares got with testdata/NAME.golden, or rewrites it with -update.
// Only views without secrets go through here, so a mismatch shows both.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// noToken fails if tok appears in any of outs, without printing it.
func noToken(t *testing.T, tok string, outs ...string) {
	t.Helper()
	for i, o := range outs {
		if strings.Contains(o, tok) {
			t.Errorf("output %d contains the token", i)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--socket", "/nope", "version"}} {
		r := ctl(t, args...)
		if r.code != 0 || r.stdout != fmt.Sprintf("exlessctl %s\n", version) || r.stderr != "" {
			t.Errorf("exlessctl %v = %d %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
}
