package peer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/exless/exless/internal/testproc"
)

// The test binary doubles as the peer: run with helperEnv set it waits for
// a line on stdin, connects to the socket in helperSockEnv, and holds the
// connection until stdin is closed.
const (
	helperEnv     = "EXLESS_PEER_TEST_HELPER"
	helperSockEnv = "EXLESS_PEER_TEST_SOCK"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	code := m.Run()
	if helpers.dir != "" {
		os.RemoveAll(helpers.dir)
	}
	os.Exit(code)
}

func runHelper() int {
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return 2
	}
	c, err := net.Dial("unix", os.Getenv(helperSockEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 3
	}
	io.Copy(io.Discard, in)
	c.Close()
	return 0
}

// helpers are two copies of the test binary in a directory every uid can
// read: A as is, B with bytes appended, so they run alike but hash apart.
var helpers struct {
	once sync.Once
	err  error
	dir  string
	a, b string
}

func helperBinaries(t testing.TB) (a, b string) {
	t.Helper()
	helpers.once.Do(func() {
		// Shared by the whole run, so not removed with any one test.
		if helpers.dir, helpers.err = testproc.MakePublicDir(); helpers.err != nil {
			return
		}
		if helpers.a, helpers.err = testproc.CopySelf(helpers.dir, "peer-a", nil); helpers.err != nil {
			return
		}
		helpers.b, helpers.err = testproc.CopySelf(helpers.dir, "peer-b", []byte("\nexless peer-b\n"))
	})
	if helpers.err != nil {
		t.Fatalf("helper binaries: %v", helpers.err)
	}
	return helpers.a, helpers.b
}

func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func requireRoot(t testing.TB) { t.Helper(); testproc.RequireRoot(t, "peers run as other uids") }

// listen opens a Unix socket every uid may connect to.
func listen(t testing.TB) (*net.UnixListener, string) {
	t.Helper()
	path := filepath.Join(testproc.PublicDir(t), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	return ln, path
}

func accept(t testing.TB, ln *net.UnixListener) *net.UnixConn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(20 * time.Second))
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// otherIDs are the credentials peers run under when the test wants a
// stranger: no such user exists, which is fine for the kernel.
var otherIDs = &syscall.Credential{Uid: 4242, Gid: 4343, Groups: []uint32{4444, 4545}}

type peerSpec struct {
	bin      string               // default: helper A
	cred     *syscall.Credential  // default: the test's own
	cgroupFD *os.File             // start the process in this cgroup v2
	attr     *syscall.SysProcAttr // overrides the above
}

// peerProc is a running helper.
type peerProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
	done   bool
}

func startPeer(t testing.TB, sock string, spec peerSpec) *peerProc {
	t.Helper()
	if spec.bin == "" {
		spec.bin, _ = helperBinaries(t)
	}
	p := &peerProc{t: t, cmd: exec.Command(spec.bin)}
	// Under -race a binary sleeps a second at exit unless told not to.
	p.cmd.Env = append(os.Environ(), helperEnv+"=1", helperSockEnv+"="+sock, "GORACE=atexit_sleep_ms=0")
	p.cmd.Stderr = &p.stderr
	attr := &syscall.SysProcAttr{Credential: spec.cred}
	if spec.cgroupFD != nil {
		attr.UseCgroupFD = true
		attr.CgroupFD = int(spec.cgroupFD.Fd())
	}
	if spec.attr != nil {
		attr = spec.attr
	}
	p.cmd.SysProcAttr = attr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start peer %s: %v", spec.bin, err)
	}
	t.Cleanup(func() { p.exit() })
	return p
}

func (p *peerProc) pid() int { return p.cmd.Process.Pid }

// connect tells the peer to connect and returns the accepted connection.
func (p *peerProc) connect(ln *net.UnixListener) *net.UnixConn {
	p.t.Helper()
	p.letConnect()
	return accept(p.t, ln)
}

func (p *peerProc) letConnect() {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, "\n"); err != nil {
		p.t.Fatalf("tell peer to connect: %v", err)
	}
}

// exit ends the peer and reaps it.
func (p *peerProc) exit() {
	if p.done {
		return
	}
	p.done = true
	p.stdin.Close()
	waited := make(chan error, 1)
	go func() { waited <- p.cmd.Wait() }()
	select {
	case <-waited:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-waited
		p.t.Errorf("peer %d did not exit; stderr: %s", p.pid(), p.stderr.String())
	}
}

// waitExited blocks until the peer has exited, without reaping it: it
// stays a zombie, its pid taken, until exit is called.
func (p *peerProc) waitExited() {
	p.t.Helper()
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, p.pid(), &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		p.t.Fatalf("waitid: %v", err)
	}
}

func startTimeOf(t testing.TB, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseStat(data)
	if err != nil {
		t.Fatal(err)
	}
	return st.startTime
}

// startPeerWithPid starts a peer that gets pid want, by setting
// ns_last_pid just before the fork. Other forks and new runtime threads
// may take the pid first, so it tries a few times.
func startPeerWithPid(t testing.TB, sock string, spec peerSpec, want int) *peerProc {
	t.Helper()
	for range 50 {
		err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(want-1)), 0)
		testproc.RequireAbility(t, "set ns_last_pid to reuse a pid", err)
		p := startPeer(t, sock, spec)
		if p.pid() == want {
			return p
		}
		p.exit()
	}
	t.Fatalf("could not get pid %d for a new process", want)
	return nil
}

// kernelAtLeast reports whether the running kernel is major.minor or newer.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(parts[0])
	mi, _ := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return ma > major || ma == major && mi >= minor
}

// pinModes runs f once per pin method.
func pinModes(t *testing.T, f func(t *testing.T, noPidfd bool)) {
	t.Run("pidfd", func(t *testing.T) { f(t, false) })
	t.Run("proc", func(t *testing.T) { f(t, true) })
}

func wantPin(t testing.TB, id *Identity, noPidfd bool) {
	t.Helper()
	want := PinPidfd
	if noPidfd {
		want = PinProc
	}
	if id.PinMethod == want {
		return
	}
	if want == PinPidfd && !kernelAtLeast(6, 5) {
		return // no SO_PEERPIDFD before 6.5: the fallback is right
	}
	t.Errorf("PinMethod = %q, want %q", id.PinMethod, want)
}
