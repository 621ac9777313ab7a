package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
)

func readReport(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("the command did not report %s: %v", name, err)
	}
	return b
}

func TestExecEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   []string
		envName string
	}{
		{"default name", nil, "EXCEPTIONLESS_API_KEY"},
		{"--env-name", []string{"--env-name", "MY_TOKEN"}, "MY_TOKEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newFakeDaemon(t)
			tok := newToken(t)
			d.serveToken(tok)
			dir := t.TempDir()
			args := append(append([]string{"exec", "--scope", "user"}, tc.flags...), "--", "exless-child", "report", dir)
			r := ctlRun(t, d.socket, args...)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			environ := readReport(t, dir, "environ")
			if !bytes.Contains(environ, []byte("\x00"+tc.envName+"="+tok+"\x00")) && !bytes.HasPrefix(environ, []byte(tc.envName+"="+tok+"\x00")) {
				t.Errorf("the command's environment has no %s=<token>", tc.envName)
			}
			if bytes.Count(environ, []byte(tok)) != 1 {
				t.Errorf("the token is in the command's environment %d times, want once", bytes.Count(environ, []byte(tok)))
			}
			if bytes.Contains(environ, []byte(tokenFDEnv+"=")) {
				t.Errorf("%s is set without --fd", tokenFDEnv)
			}
			if bytes.Contains(readReport(t, dir, "cmdline"), []byte(tok)) {
				t.Errorf("the token is on the command's argv")
			}
			noToken(t, tok, r.stdout, r.stderr)
		})
	}
}

// TestExecFD: with --fd the token is on a descriptor, not in the environ.
func TestExecFD(t *testing.T) {
	d := newFakeDaemon(t)
	tok := newToken(t)
	d.serveToken(tok)
	dir := t.TempDir()
	r := ctlRun(t, d.socket, "exec", "--fd", "--scope", "client", "--project", "0123456789abcdef01234567", "--", "exless-child", "report", dir)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	environ := readReport(t, dir, "environ")
	if bytes.Contains(environ, []byte(tok)) {
		t.Errorf("the token is in /proc/self/environ with --fd")
	}
	if !bytes.Contains(environ, []byte(tokenFDEnv+"=3\x00")) {
		t.Errorf("%s=3 is not in the command's environment", tokenFDEnv)
	}
	if bytes.Contains(environ, []byte("EXCEPTIONLESS_API_KEY=")) {
		t.Errorf("EXCEPTIONLESS_API_KEY is set with --fd")
	}
	if got := readReport(t, dir, "fd"); string(got) != tok+"\n" {
		t.Errorf("the descriptor holds %d bytes, want the token and a newline", len(got))
	}
	if got := readReport(t, dir, "fdagain"); string(got) != tok+"\n" {
		t.Errorf("reopening /dev/fd/N gives %d bytes, want the token and a newline (a memfd)", len(got))
	}
	if got := readReport(t, dir, "fdwrite"); string(got) != "refused" {
		t.Errorf("the command could write to the token's descriptor")
	}
	if bytes.Contains(readReport(t, dir, "cmdline"), []byte(tok)) {
		t.Errorf("the token is on the command's argv")
	}
	noToken(t, tok, r.stdout, r.stderr)
}

// TestTokenFile covers both kinds of descriptor exec --fd can pass.
func TestTokenFile(t *testing.T) {
	tok := newToken(t)
	data := []byte(tok + "\n")
	memfd, err := sealedMemfd(data)
	if err != nil {
		t.Fatalf("memfd: %v", err)
	}
	defer memfd.Close()
	pipe, err := tokenPipe(data)
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Close()
	for name, f := range map[string]*os.File{"memfd": memfd, "pipe": pipe} {
		got, err := io.ReadAll(f)
		if err != nil || string(got) != tok+"\n" {
			t.Errorf("%s: read %d bytes, %v; want the token and a newline", name, len(got), err)
		}
		if _, err := f.Write([]byte("x")); err == nil {
			t.Errorf("%s is writable", name)
		}
	}
	// Sealed: not even a writable reopening can change it.
	if f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", memfd.Fd()), os.O_WRONLY, 0); err == nil {
		_, werr := f.Write([]byte("x"))
		f.Close()
		if werr == nil {
			t.Errorf("the memfd is not sealed against writes")
		}
	}
}

func TestExecMasks(t *testing.T) {
	d := newFakeDaemon(t)
	tok := newToken(t)
	d.serveToken(tok)
	r := ctlRun(t, d.socket, "exec", "--scope", "user", "--", "exless-child", "print", "EXCEPTIONLESS_API_KEY")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	wantOut := "<" + mask + ">\nx" + mask + mask + "y\n" + tok[:7] + "\n"
	if r.stdout != wantOut {
		t.Errorf("stdout is not the masked output")
		noToken(t, tok, r.stdout)
	}
	if r.stderr != "err "+mask+"\n" {
		t.Errorf("stderr is not the masked output")
		noToken(t, tok, r.stderr)
	}

	r = ctlRun(t, d.socket, "exec", "--no-mask", "--scope", "user", "--", "exless-child", "print", "EXCEPTIONLESS_API_KEY")
	if r.code != 0 {
		t.Fatalf("--no-mask: exit %d", r.code)
	}
	if r.stdout != "<"+tok+">\nx"+tok+tok+"y\n"+tok[:7]+"\n" || r.stderr != "err "+tok+"\n" {
		t.Errorf("--no-mask changed the command's output")
	}
}

func TestExecExitStatus(t *testing.T) {
	d := newFakeDaemon(t)
	d.serveToken(newToken(t))
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"exit", "0"}, 0},
		{[]string{"exit", "3"}, 3}, // the command's 3, not a denial
		{[]string{"exit", "77"}, 77},
		{[]string{"kill", fmt.Sprint(int(syscall.SIGTERM))}, 128 + int(syscall.SIGTERM)},
		{[]string{"kill", fmt.Sprint(int(syscall.SIGKILL))}, 128 + int(syscall.SIGKILL)},
	} {
		for _, mode := range [][]string{nil, {"--no-mask"}, {"--fd"}} {
			t.Run(strings.Join(append(slices.Clone(mode), tc.args...), " "), func(t *testing.T) {
				t.Parallel()
				args := append(append([]string{"exec", "--scope", "user"}, mode...), "--", "exless-child")
				r := ctlRun(t, d.socket, append(args, tc.args...)...)
				if r.code != tc.want || r.stderr != "" {
					t.Errorf("exit %d, stderr %q; want %d and nothing", r.code, r.stderr, tc.want)
				}
			})
		}
	}
}

// TestExecForwardsSignals: the command traps a signal sent to exlessctl and
// exits with a code that proves it got it.
func TestExecForwardsSignals(t *testing.T) {
	d := newFakeDaemon(t)
	d.serveToken(newToken(t))
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH} {
		for _, mode := range []string{"--no-mask=false", "--no-mask"} {
			t.Run(sig.String()+mode, func(t *testing.T) {
				t.Parallel()
				code := 40 + int(sig)
				cmd := ctlProcess(t, d.socket, "exec", mode, "--scope", "user", "--", "exless-child", "trap", fmt.Sprint(int(sig)), fmt.Sprint(code))
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				// "ready" (no newline) passes through the masking copy
				// at once: it cannot be the start of the token.
				ready := make(chan error, 1)
				go func() {
					buf := make([]byte, 5)
					_, err := io.ReadFull(bufio.NewReader(stdout), buf)
					if err == nil && string(buf) != "ready" {
						err = fmt.Errorf("read %q", buf)
					}
					ready <- err
				}()
				select {
				case err := <-ready:
					if err != nil {
						t.Fatalf("waiting for the command: %v", err)
					}
				case <-time.After(20 * time.Second):
					_ = cmd.Process.Kill()
					t.Fatal("the command's output did not arrive")
				}
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				err = cmd.Wait()
				var ee *exec.ExitError
				if err != nil && !errors.As(err, &ee) {
					t.Fatal(err)
				}
				if got := cmd.ProcessState.ExitCode(); got != code {
					t.Errorf("exit %d, want %d (the command's, after trapping %v); stderr %q", got, code, sig, stderr.String())
				}
			})
		}
	}
}

// TestExecErrorsBeforeStart: exlessctl's own errors, before the command
// runs, follow the contract, and a command that cannot run gets no token.
func TestExecErrorsBeforeStart(t *testing.T) {
	d := newFakeDaemon(t)
	d.serveToken(newToken(t))
	dir := t.TempDir()
	r := ctlRun(t, d.socket, "exec", "--scope", "user", "--", "no-such-command-exless", "x")
	if r.code != exitError || !strings.Contains(r.stderr, "no-such-command-exless") {
		t.Errorf("missing command: exit %d, stderr %q", r.code, r.stderr)
	}
	checkOneLineError(t, r)
	if n := len(d.requested()); n != 0 {
		t.Errorf("a token was asked for a command that cannot run")
	}

	d.set("/v1/token", http.StatusForbidden, daemon.ErrorResponse{Error: "uid 1 gid 1 pid 2: no rule grants scope user", Code: daemon.CodeDenied})
	r = ctlRun(t, d.socket, "exec", "--scope", "user", "--", "exless-child", "report", dir)
	if r.code != exitDenied || !strings.Contains(r.stderr, "no rule grants") {
		t.Errorf("denied: exit %d, stderr %q", r.code, r.stderr)
	}
	checkOneLineError(t, r)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the command ran without a token")
	}
}

// TestCompletionRequestNeverRuns: a completion request for exec (the last
// word --generate-bash-completion, after --) must not run the command,
// which urfave/cli would otherwise do.
func TestCompletionRequestNeverRuns(t *testing.T) {
	d := newFakeDaemon(t)
	d.serveToken(newToken(t))
	dir := t.TempDir()
	r := ctlRun(t, d.socket, "exec", "--scope", "user", "--", "exless-child", "report", dir, completionFlag)
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and nothing", r.code, r.stdout, r.stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a completion request ran the command")
	}
	if n := len(d.requested()); n != 0 {
		t.Errorf("a completion request asked for a token")
	}
}
