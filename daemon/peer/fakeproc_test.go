package peer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeProc builds a procfs stand-in for a real peer with pid: self is the
// test process (as Attest requires), and <pid> holds files the test
// writes. The socket, SO_PEERCRED and the pidfd stay real.
func fakeProc(t *testing.T, pid int) (root, peerDir string) {
	t.Helper()
	root = t.TempDir()
	own := filepath.Join(root, strconv.Itoa(os.Getpid()))
	peerDir = filepath.Join(root, strconv.Itoa(pid))
	for _, d := range []string{own, peerDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"stat", "cgroup", "status"} {
		data, err := os.ReadFile("/proc/self/" + name)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(own, name), string(data))
	}
	if err := os.Symlink(strconv.Itoa(os.Getpid()), filepath.Join(root, "self")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(peerDir, "stat"), fakeStat(pid, 'S', 1000))
	writeFile(t, filepath.Join(peerDir, "status"), fakeStatus(os.Geteuid(), os.Getegid()))
	writeFile(t, filepath.Join(peerDir, "cgroup"), ownCgroupWithPath(t, "/system.slice/fake.service"))
	return root, peerDir
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fakeStat(pid int, state byte, start uint64) string {
	return fmt.Sprintf("%d (peer) %c 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0 0\n", pid, state, start)
}

func fakeStatus(uid, gid int) string {
	return fmt.Sprintf("Name:\tpeer\nUid:\t%[1]d\t%[1]d\t%[1]d\t%[1]d\nGid:\t%[2]d\t%[2]d\t%[2]d\t%[2]d\n", uid, gid)
}

// ownCgroupWithPath is this machine's cgroup layout with every path set
// to path.
func ownCgroupWithPath(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
		id, rest, _ := strings.Cut(line, ":")
		ctl, _, _ := strings.Cut(rest, ":")
		fmt.Fprintf(&b, "%s:%s:%s\n", id, ctl, path)
	}
	return b.String()
}

func TestAttestFakeProc(t *testing.T) {
	ln, sock := listen(t)
	setup := func(t *testing.T) (*peerProc, string, string) {
		p := startPeer(t, sock, peerSpec{})
		root, dir := fakeProc(t, p.pid())
		return p, root, dir
	}

	pinModes(t, func(t *testing.T, noPidfd bool) {
		t.Run("reads the files", func(t *testing.T) {
			p, root, _ := setup(t)
			id, err := NewAttestor(Options{NoPidfd: noPidfd, ProcRoot: root}).Attest(p.connect(ln), ExeNone)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]uint64{true: 1000, false: 0}[noPidfd]; id.Unit != "fake.service" || id.StartTime != want {
				t.Errorf("Unit %q StartTime %d, want fake.service %d", id.Unit, id.StartTime, want)
			}
		})
		t.Run("forged cgroup line", func(t *testing.T) {
			p, root, dir := setup(t)
			// A cgroup named "x\n0::/system.slice/deploy.service" (or
			// another line when this host has a v2 line already).
			forged := "0::/system.slice/deploy.service"
			if strings.Contains(ownCgroupWithPath(t, "/"), "\n0::/") || strings.HasPrefix(ownCgroupWithPath(t, "/"), "0::/") {
				forged = "1000:name=forged:/system.slice/deploy.service"
			}
			data := ownCgroupWithPath(t, "/user.slice/x")
			data = strings.Replace(data, "/user.slice/x\n", "/user.slice/x\n"+forged+"\n", 1)
			writeFile(t, filepath.Join(dir, "cgroup"), data)
			id, err := NewAttestor(Options{NoPidfd: noPidfd, ProcRoot: root}).Attest(p.connect(ln), ExeNone)
			if err == nil || errors.Is(err, ErrPeerGone) {
				t.Errorf("Attest with forged cgroup lines = %+v, %v; want a refusal", id, err)
			}
		})
	})

	// A pidfd pins the process without its stat file, which is then not
	// read; the pid namespace check below covers a procfs that names other
	// processes.
	t.Run("proc/stat names another pid", func(t *testing.T) {
		p, root, dir := setup(t)
		writeFile(t, filepath.Join(dir, "stat"), fakeStat(p.pid()+1, 'S', 1000))
		if id, err := NewAttestor(Options{NoPidfd: true, ProcRoot: root}).Attest(p.connect(ln), ExeNone); err == nil {
			t.Errorf("Attest = %+v, want an error", id)
		}
	})

	// With a pidfd still running at the end, the start time is not read
	// again: a live process keeps its pid and its start time (the pidfd
	// tests of TestAttestPidReused cover a peer that exits).
	t.Run("proc/start time changes", func(t *testing.T) {
		p, root, dir := setup(t)
		testHookBeforeVerify = func() { writeFile(t, filepath.Join(dir, "stat"), fakeStat(p.pid(), 'S', 2000)) }
		defer func() { testHookBeforeVerify = nil }()
		id, err := NewAttestor(Options{NoPidfd: true, ProcRoot: root}).Attest(p.connect(ln), ExeNone)
		if !errors.Is(err, ErrPeerGone) {
			t.Errorf("Attest = %+v, %v; want ErrPeerGone", id, err)
		}
	})
	t.Run("proc/ids change", func(t *testing.T) {
		p, root, dir := setup(t)
		testHookBeforeVerify = func() { writeFile(t, filepath.Join(dir, "status"), fakeStatus(4242, os.Getegid())) }
		defer func() { testHookBeforeVerify = nil }()
		id, err := NewAttestor(Options{NoPidfd: true, ProcRoot: root}).Attest(p.connect(ln), ExeNone)
		if !errors.Is(err, ErrPeerGone) {
			t.Errorf("Attest = %+v, %v; want ErrPeerGone", id, err)
		}
	})
	t.Run("proc/zombie", func(t *testing.T) {
		p, root, dir := setup(t)
		writeFile(t, filepath.Join(dir, "stat"), fakeStat(p.pid(), 'Z', 1000))
		id, err := NewAttestor(Options{NoPidfd: true, ProcRoot: root}).Attest(p.connect(ln), ExeNone)
		if !errors.Is(err, ErrPeerGone) {
			t.Errorf("Attest = %+v, %v; want ErrPeerGone", id, err)
		}
	})
	t.Run("procfs of another pid namespace", func(t *testing.T) {
		p, root, _ := setup(t)
		os.Remove(filepath.Join(root, "self"))
		if err := os.Symlink("1", filepath.Join(root, "self")); err != nil {
			t.Fatal(err)
		}
		_, err := NewAttestor(Options{ProcRoot: root}).Attest(p.connect(ln), ExeNone)
		if err == nil || !strings.Contains(err.Error(), "pid namespace") {
			t.Errorf("Attest = %v, want a pid namespace error", err)
		}
	})
}
