package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/internal/testproc"
)

// A helper is this test binary run as a peer process: other tests need
// peers of other uids, in other units, or many processes at once.
const (
	helperEnv     = "EXLESS_DAEMON_TEST_HELPER" // the mode
	helperSockEnv = "EXLESS_DAEMON_TEST_SOCK"
	helperNEnv    = "EXLESS_DAEMON_TEST_N"
)

// runHelper runs one mode against the socket in helperSockEnv:
//
//	requests: N GETs of /v1/whoami, one connection each; prints each status
//	idle:     opens N connections, prints how many, then "closed" once the
//	          daemon closed them all; waits for stdin to close
//	churn:    N connects-and-closes from 50 goroutines; prints how many connected
func runHelper(mode string) int {
	sock := os.Getenv(helperSockEnv)
	n, _ := strconv.Atoi(os.Getenv(helperNEnv))
	dial := func() (net.Conn, error) { return net.Dial("unix", sock) }
	switch mode {
	case "requests":
		hc := &http.Client{Transport: &http.Transport{
			DialContext:       func(context.Context, string, string) (net.Conn, error) { return dial() },
			DisableKeepAlives: true,
		}, Timeout: 30 * time.Second}
		for range n {
			resp, err := hc.Get("http://exlessd/v1/whoami")
			if err != nil {
				fmt.Println("error")
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			fmt.Println(resp.StatusCode)
		}
	case "idle":
		var conns []net.Conn
		for range n {
			c, err := dial()
			if err != nil {
				fmt.Fprintln(os.Stderr, "dial:", err)
				break
			}
			conns = append(conns, c)
		}
		fmt.Println(len(conns))
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() { _, _ = io.Copy(io.Discard, c) })
		}
		wg.Wait()
		fmt.Println("closed")
		_, _ = io.Copy(io.Discard, os.Stdin)
	case "churn":
		var next, ok atomic.Int64
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if c, err := dial(); err == nil {
						ok.Add(1)
						c.Close()
					}
				}
			})
		}
		wg.Wait()
		fmt.Println(ok.Load())
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		return 2
	}
	return 0
}

// helperProc is a running helper.
type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	errb  bytes.Buffer
}

// helperBin copies the test binary where any uid can run it.
func helperBin(t *testing.T) string {
	t.Helper()
	bin, err := testproc.CopySelf(testproc.PublicDir(t), "peer", nil)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// openSocket lets other uids connect to the env's socket.
func (e *env) openSocket() {
	e.t.Helper()
	if err := os.Chmod(filepath.Dir(e.socket), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chmod(e.socket, 0o777); err != nil {
		e.t.Fatal(err)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	testproc.RequireRoot(t, "peers run as other uids or in other cgroups")
}

// startHelper runs bin in mode with n, under attr (nil: as this process).
func startHelper(t *testing.T, bin, socket, mode string, n int, attr *syscall.SysProcAttr) *helperProc {
	t.Helper()
	cmd := exec.Command(bin)
	// Under -race a binary sleeps a second at exit unless told not to.
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperSockEnv+"="+socket,
		helperNEnv+"="+strconv.Itoa(n), "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = attr
	h := &helperProc{cmd: cmd}
	cmd.Stderr = &h.errb
	var err error
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	t.Cleanup(func() { h.stop(t) })
	return h
}

// line reads the helper's next line of output.
func (h *helperProc) line(t *testing.T) string {
	t.Helper()
	s, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("helper output: %v; stderr: %s", err, h.errb.String())
	}
	return strings.TrimSpace(s)
}

// lineWithin is line, failing the test if none comes within d.
func (h *helperProc) lineWithin(t *testing.T, d time.Duration) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		s, _ := h.out.ReadString('\n')
		got <- strings.TrimSpace(s)
	}()
	select {
	case s := <-got:
		return s
	case <-time.After(d):
		t.Fatalf("no output from the helper within %s", d)
		return ""
	}
}

// stop closes the helper's stdin and waits for it.
func (h *helperProc) stop(t *testing.T) {
	if h.stdin == nil {
		return
	}
	h.stdin.Close()
	h.stdin = nil
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("helper: %v; stderr: %s", err, h.errb.String())
		}
	case <-time.After(30 * time.Second):
		h.cmd.Process.Kill()
		<-done
		t.Errorf("helper did not exit")
	}
}

// unitCgroup makes a cgroup v2 directory named like a system unit and
// returns it open, for SysProcAttr.CgroupFD. This machine need not run
// systemd: the daemon reads the unit from the cgroup path alone.
func unitCgroup(t *testing.T, unit string) *os.File {
	t.Helper()
	root := ""
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(mounts), "\n") {
		pre, post, _ := strings.Cut(line, " - ")
		if f := strings.Fields(pre); strings.HasPrefix(post, "cgroup2 ") && len(f) > 4 && f[3] == "/" {
			root = f[4]
			break
		}
	}
	if root == "" {
		t.Skip("no cgroup2 hierarchy mounted")
	}
	slice := filepath.Join(root, "system.slice")
	_, err = os.Stat(slice)
	madeSlice := errors.Is(err, os.ErrNotExist)
	dir := filepath.Join(slice, unit)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("cannot make a cgroup: %v", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		// The cgroup empties once its helper is reaped, which may lag.
		for range 100 {
			if err := syscall.Rmdir(dir); err == nil || !errors.Is(err, syscall.EBUSY) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if madeSlice {
			_ = syscall.Rmdir(slice)
		}
	})
	return f
}
