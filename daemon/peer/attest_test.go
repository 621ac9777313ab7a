package peer

import (
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/exless/exless/internal/testproc"
)

func TestAttestOtherUser(t *testing.T) {
	requireRoot(t)
	a, _ := helperBinaries(t)
	pinModes(t, func(t *testing.T, noPidfd bool) {
		ln, sock := listen(t)
		p := startPeer(t, sock, peerSpec{cred: otherIDs})
		c := p.connect(ln)

		id, err := NewAttestor(Options{NoPidfd: noPidfd}).Attest(c, ExePathHash)
		if err != nil {
			t.Fatalf("Attest: %v", err)
		}
		wantPin(t, id, noPidfd)
		if int(id.PID) != p.pid() || id.UID != otherIDs.Uid || id.GID != otherIDs.Gid {
			t.Errorf("pid %d uid %d gid %d, want %d %d %d", id.PID, id.UID, id.GID, p.pid(), otherIDs.Uid, otherIDs.Gid)
		}
		if got := slices.Sorted(slices.Values(id.Groups)); !slices.Equal(got, otherIDs.Groups) {
			t.Errorf("Groups = %v, want %v", got, otherIDs.Groups)
		}
		if !id.HasGroup(4545) || id.HasGroup(0) {
			t.Errorf("HasGroup: 4545 %v (want true), 0 %v (want false)", id.HasGroup(4545), id.HasGroup(0))
		}
		// The start time pins a process only where there is no pidfd.
		if want := startTimeOf(t, p.pid()); noPidfd && id.StartTime != want || !noPidfd && id.StartTime != 0 {
			t.Errorf("StartTime = %d, want %d without a pidfd, 0 with one", id.StartTime, want)
		}
		// Root reads anyone's executable.
		if !id.ExeKnown() || id.ExePath != a || id.ExeSHA256 != fileSHA256(t, a) {
			t.Errorf("exe = %q %q (err %q), want %q %q", id.ExePath, id.ExeSHA256, id.ExeErr, a, fileSHA256(t, a))
		}
		if id.Cgroup == "" {
			t.Errorf("Cgroup empty")
		}
	})
}

func TestAttestWithoutExe(t *testing.T) {
	ln, sock := listen(t)
	go net.Dial("unix", sock)
	c := accept(t, ln)
	id, err := NewAttestor(Options{}).Attest(c, ExeNone)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	if int(id.PID) != os.Getpid() || id.UID != uint32(os.Geteuid()) {
		t.Errorf("Attest = pid %d uid %d, want %d %d", id.PID, id.UID, os.Getpid(), os.Geteuid())
	}
	if id.ExePath != "" || id.ExeSHA256 != "" || id.ExeErr != "" || id.ExeKnown() {
		t.Errorf("exe fields set without wantExe: %+v", id)
	}
}

func TestAttestRefusesNonUnix(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := NewAttestor(Options{}).Attest(c, ExeNone); err != ErrUnsupportedConn {
		t.Errorf("Attest(tcp) error = %v, want ErrUnsupportedConn", err)
	}
}

// A peer that connects and exits before it is attested is refused, whether
// it was reaped (its pid is free) or is still a zombie (its pid is taken
// and /proc/<pid> still exists).
func TestAttestPeerGone(t *testing.T) {
	requireRoot(t)
	pinModes(t, func(t *testing.T, noPidfd bool) {
		for _, reaped := range []bool{true, false} {
			name := "zombie"
			if reaped {
				name = "reaped"
			}
			t.Run(name, func(t *testing.T) {
				ln, sock := listen(t)
				p := startPeer(t, sock, peerSpec{cred: otherIDs})
				p.letConnect()
				p.stdin.Close() // connect, then exit at once
				if reaped {
					p.exit()
				} else {
					p.waitExited()
				}
				c := accept(t, ln)
				id, err := NewAttestor(Options{NoPidfd: noPidfd}).Attest(c, ExePathHash)
				if !errors.Is(err, ErrPeerGone) {
					t.Fatalf("Attest = %+v, %v; want ErrPeerGone", id, err)
				}
			})
		}
	})
}

// A pid reused after the peer exited is told apart from the peer.
func TestAttestPidReused(t *testing.T) {
	requireRoot(t)
	pinModes(t, func(t *testing.T, noPidfd bool) {
		// Reuse between the connection and the attestation: the pidfd
		// still names the dead peer. Without one, only a change of ids
		// shows (see the package doc for what this leaves).
		t.Run("before attest, other uid", func(t *testing.T) {
			ln, sock := listen(t)
			p := startPeer(t, sock, peerSpec{})
			p.letConnect()
			p.stdin.Close()
			p.exit()
			startPeerWithPid(t, sock, peerSpec{cred: otherIDs}, p.pid())
			c := accept(t, ln)
			id, err := NewAttestor(Options{NoPidfd: noPidfd}).Attest(c, ExeNone)
			if !errors.Is(err, ErrPeerGone) {
				t.Fatalf("Attest = %+v, %v; want ErrPeerGone", id, err)
			}
		})
		t.Run("before attest, same uid", func(t *testing.T) {
			ln, sock := listen(t)
			p := startPeer(t, sock, peerSpec{cred: otherIDs})
			p.letConnect()
			p.stdin.Close()
			p.exit()
			startPeerWithPid(t, sock, peerSpec{cred: otherIDs}, p.pid())
			c := accept(t, ln)
			id, err := NewAttestor(Options{NoPidfd: noPidfd}).Attest(c, ExeNone)
			if noPidfd && kernelAtLeast(6, 5) {
				// The documented limit of the fallback: a successor
				// that was already there when /proc/<pid> was opened,
				// under the same ids, cannot be told apart.
				if err != nil {
					t.Logf("fallback refused a same-uid reuse before the pin (better than documented): %v", err)
				}
				return
			}
			if !errors.Is(err, ErrPeerGone) {
				t.Fatalf("Attest = %+v, %v; want ErrPeerGone", id, err)
			}
		})
		// Reuse while /proc is being read: both pins see it.
		t.Run("during attest, same uid", func(t *testing.T) {
			ln, sock := listen(t)
			p := startPeer(t, sock, peerSpec{cred: otherIDs})
			c := p.connect(ln)
			testHookBeforeVerify = func() {
				p.exit()
				startPeerWithPid(t, sock, peerSpec{cred: otherIDs}, p.pid())
			}
			defer func() { testHookBeforeVerify = nil }()
			id, err := NewAttestor(Options{NoPidfd: noPidfd}).Attest(c, ExePathHash)
			if !errors.Is(err, ErrPeerGone) {
				t.Fatalf("Attest = %+v, %v; want ErrPeerGone", id, err)
			}
		})
	})
}

func TestAttestExeDistinguishesBinaries(t *testing.T) {
	requireRoot(t)
	a, b := helperBinaries(t)
	ln, sock := listen(t)
	for _, mode := range exeModes {
		t.Run(mode.name, func(t *testing.T) {
			at := NewAttestor(Options{})
			got := map[string]string{}
			for _, bin := range []string{a, b} {
				p := startPeer(t, sock, peerSpec{bin: bin, cred: otherIDs})
				id, err := at.Attest(p.connect(ln), mode.exe)
				if err != nil {
					t.Fatalf("Attest(%s): %v", bin, err)
				}
				if id.ExePath != mode.path(bin) || id.ExeSHA256 != fileSHA256(t, bin) || !id.ExeKnown() {
					t.Errorf("%s: exe = %q %q (err %q), want path %q and its sha256", bin, id.ExePath, id.ExeSHA256, id.ExeErr, mode.path(bin))
				}
				got[bin] = id.ExeSHA256
			}
			if got[a] == got[b] {
				t.Errorf("two different binaries hash alike: %s", got[a])
			}
		})
	}
}

// exeModes are the ways Attest reads an executable. Without the path, the
// running file is vouched for by its inode (link count) alone.
var exeModes = []struct {
	name string
	exe  Exe
	path func(string) string // the ExePath expected for a file at p
}{
	{"path+hash", ExePathHash, func(p string) string { return p }},
	{"hash", ExeHash, func(string) string { return "" }},
}

func TestAttestExeCache(t *testing.T) {
	requireRoot(t)
	a, _ := helperBinaries(t)
	ln, sock := listen(t)
	at := NewAttestor(Options{})
	at.hashes.racy = 0 // the helper was written moments ago
	want := fileSHA256(t, a)
	for i := range 3 {
		p := startPeer(t, sock, peerSpec{cred: otherIDs})
		id, err := at.Attest(p.connect(ln), ExePathHash)
		if err != nil || id.ExeSHA256 != want {
			t.Fatalf("Attest %d = %q, %v; want %s", i, id.ExeSHA256, err, want)
		}
		p.exit()
	}
	if n := at.HashCount(); n != 1 {
		t.Errorf("HashCount after 3 peers of one binary = %d, want 1", n)
	}

	// Peers arriving together do not hash the same file side by side.
	at = NewAttestor(Options{})
	at.hashes.racy = 0
	const n = 6
	conns := make([]*net.UnixConn, n)
	for i := range conns {
		conns[i] = startPeer(t, sock, peerSpec{}).connect(ln)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range conns {
		wg.Go(func() {
			id, err := at.Attest(c, ExePathHash)
			if err == nil && id.ExeSHA256 != want {
				err = errors.New("wrong hash " + id.ExeSHA256 + " " + id.ExeErr)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Attest %d: %v", i, err)
		}
	}
	if got := at.HashCount(); got != 1 {
		t.Errorf("HashCount after %d concurrent peers of one binary = %d, want 1", n, got)
	}
}

// A file changed within the last few seconds may change again without its
// (size, mtime, ctime) moving; it is hashed every time until it settles.
func TestAttestExeRecentFileNotCached(t *testing.T) {
	requireRoot(t)
	a, _ := helperBinaries(t)
	bin := testproc.PublicDir(t) + "/fresh"
	if err := testproc.CopyFile(bin, a, nil); err != nil {
		t.Fatal(err)
	}
	ln, sock := listen(t)
	at := NewAttestor(Options{})
	for range 2 {
		p := startPeer(t, sock, peerSpec{bin: bin})
		id, err := at.Attest(p.connect(ln), ExePathHash)
		if err != nil || id.ExeSHA256 != fileSHA256(t, bin) {
			t.Fatalf("Attest = %+v, %v", id, err)
		}
	}
	if n := at.HashCount(); n != 2 {
		t.Errorf("HashCount = %d, want 2 (a fresh file is not cached)", n)
	}
}

// A binary replaced at its path (new file renamed over it): a new process
// is hashed with the new content; one still running the old file is not
// taken for the new one, nor hashed by path: its file is gone from the
// path, so it is marked deleted and can match no exe rule.
func TestAttestExeReplaced(t *testing.T) {
	requireRoot(t)
	a, b := helperBinaries(t)
	for _, mode := range exeModes {
		t.Run(mode.name, func(t *testing.T) {
			bin := testproc.PublicDir(t) + "/tool"
			if err := testproc.CopyFile(bin, a, nil); err != nil {
				t.Fatal(err)
			}
			ln, sock := listen(t)
			at := NewAttestor(Options{})
			oldPeer := startPeer(t, sock, peerSpec{bin: bin})
			oldConn := oldPeer.connect(ln)
			if err := testproc.CopyFile(bin, b, nil); err != nil { // rename over
				t.Fatal(err)
			}
			newPeer := startPeer(t, sock, peerSpec{bin: bin})
			newConn := newPeer.connect(ln)

			id, err := at.Attest(newConn, mode.exe)
			if err != nil || id.ExeSHA256 != fileSHA256(t, b) || id.ExePath != mode.path(bin) {
				t.Errorf("new process: %q %q (err %q, %v), want %q %s", id.ExePath, id.ExeSHA256, id.ExeErr, err, mode.path(bin), fileSHA256(t, b))
			}
			id, err = at.Attest(oldConn, mode.exe)
			if err != nil {
				t.Fatalf("old process: %v", err)
			}
			if !id.ExeDeleted || id.ExeErr == "" || id.ExeSHA256 != "" || id.ExeKnown() {
				t.Errorf("old process: deleted %v err %q sha %q, want deleted, an error and no hash", id.ExeDeleted, id.ExeErr, id.ExeSHA256)
			}
		})
	}
}

// The hash is of the file the process runs, wherever it is now: moving
// the directory and putting other content at the old path changes
// nothing about the running process.
func TestAttestExeHashesRunningFileNotPath(t *testing.T) {
	requireRoot(t)
	a, b := helperBinaries(t)
	dir := testproc.PublicDir(t)
	for _, d := range []string{"/d1", "/d2"} {
		if err := os.Mkdir(dir+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := testproc.CopyFile(dir+"/d1/tool", a, nil); err != nil {
		t.Fatal(err)
	}
	ln, sock := listen(t)
	p := startPeer(t, sock, peerSpec{bin: dir + "/d1/tool"})
	c := p.connect(ln)
	if err := os.Rename(dir+"/d1", dir+"/d3"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir+"/d1", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := testproc.CopyFile(dir+"/d1/tool", b, nil); err != nil {
		t.Fatal(err)
	}
	id, err := NewAttestor(Options{}).Attest(c, ExePathHash)
	if err != nil {
		t.Fatal(err)
	}
	if id.ExePath != dir+"/d3/tool" || id.ExeSHA256 != fileSHA256(t, a) || !id.ExeKnown() {
		t.Errorf("exe = %q %q (err %q), want %s/d3/tool with the old content %s", id.ExePath, id.ExeSHA256, id.ExeErr, dir, fileSHA256(t, a))
	}

	// The same swap while Attest is between reading the link and hashing:
	// the name no longer leads to the hashed file, so no exe rule may
	// match, and the other file's hash is never reported.
	p = startPeer(t, sock, peerSpec{bin: dir + "/d1/tool"})
	c = p.connect(ln)
	testHookExeReadlinked = func(string) {
		if err := os.Rename(dir+"/d1", dir+"/d4"); err != nil {
			t.Error(err)
		}
		os.Mkdir(dir+"/d1", 0o755)
		if err := testproc.CopyFile(dir+"/d1/tool", a, nil); err != nil {
			t.Error(err)
		}
	}
	defer func() { testHookExeReadlinked = nil }()
	id, err = NewAttestor(Options{}).Attest(c, ExePathHash)
	if err != nil {
		t.Fatal(err)
	}
	if id.ExeKnown() || id.ExeSHA256 != "" || !strings.Contains(id.ExeErr, "moved") {
		t.Errorf("swapped during attestation: sha %q err %q, want no hash and a 'moved' error", id.ExeSHA256, id.ExeErr)
	}
}

func TestAttestExeDeleted(t *testing.T) {
	requireRoot(t)
	a, _ := helperBinaries(t)
	for _, mode := range exeModes {
		t.Run(mode.name, func(t *testing.T) {
			bin := testproc.PublicDir(t) + "/gone"
			if err := testproc.CopyFile(bin, a, nil); err != nil {
				t.Fatal(err)
			}
			ln, sock := listen(t)
			p := startPeer(t, sock, peerSpec{bin: bin, cred: otherIDs})
			c := p.connect(ln)
			if err := os.Remove(bin); err != nil {
				t.Fatal(err)
			}
			id, err := NewAttestor(Options{}).Attest(c, mode.exe)
			if err != nil {
				t.Fatal(err)
			}
			if want := mode.path(bin + " (deleted)"); !id.ExeDeleted || id.ExeErr == "" || id.ExeSHA256 != "" || id.ExeKnown() || id.ExePath != want {
				t.Errorf("deleted exe: path %q (want %q) deleted %v err %q sha %q", id.ExePath, want, id.ExeDeleted, id.ExeErr, id.ExeSHA256)
			}
		})
	}
}

func TestAttestExeSizeLimit(t *testing.T) {
	requireRoot(t)
	ln, sock := listen(t)
	p := startPeer(t, sock, peerSpec{cred: otherIDs})
	at := NewAttestor(Options{MaxExeSize: 1 << 20})
	id, err := at.Attest(p.connect(ln), ExePathHash)
	if err != nil {
		t.Fatal(err)
	}
	if id.ExeKnown() || id.ExeSHA256 != "" || !strings.Contains(id.ExeErr, "over the 1048576-byte limit") {
		t.Errorf("over the limit: sha %q err %q", id.ExeSHA256, id.ExeErr)
	}
	if at.HashCount() != 0 {
		t.Errorf("HashCount = %d, want 0", at.HashCount())
	}
}

// Without CAP_SYS_PTRACE the daemon cannot read another user's executable:
// the peer is still attested, with ExeErr saying why exe rules cannot
// match. Capabilities are per thread, so the attestation runs on a locked
// thread that dropped CAP_SYS_PTRACE.
func TestAttestExeUnreadableWithoutPtrace(t *testing.T) {
	requireRoot(t)
	ln, sock := listen(t)
	p := startPeer(t, sock, peerSpec{cred: otherIDs})
	c := p.connect(ln)
	type result struct {
		id  *Identity
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, with its reduced capabilities,
		// ends with this goroutine.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- result{err: err}
			return
		}
		data[0].Effective &^= 1 << unix.CAP_SYS_PTRACE
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- result{err: err}
			return
		}
		id, err := NewAttestor(Options{}).Attest(c, ExePathHash)
		done <- result{id, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("Attest: %v", r.err)
	}
	if r.id.ExeKnown() || r.id.ExeSHA256 != "" || !strings.Contains(r.id.ExeErr, "CAP_SYS_PTRACE") {
		t.Errorf("exe without CAP_SYS_PTRACE: path %q sha %q err %q", r.id.ExePath, r.id.ExeSHA256, r.id.ExeErr)
	}
	if r.id.UID != otherIDs.Uid {
		t.Errorf("UID = %d, want %d", r.id.UID, otherIDs.Uid)
	}
}

func TestExeErrText(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{unix.EACCES, "cannot read /proc/7/exe: permission denied (exlessd needs CAP_SYS_PTRACE"},
		{unix.EPERM, "permission denied (exlessd needs CAP_SYS_PTRACE"},
		{unix.ENOENT, "process has no executable"},
		{unix.EIO, "cannot read /proc/7/exe: input/output error"},
	} {
		if got := exeErrText(7, tc.err); !strings.Contains(got, tc.want) {
			t.Errorf("exeErrText(%v) = %q, want it to contain %q", tc.err, got, tc.want)
		}
	}
}

func TestAttestClosesFDs(t *testing.T) {
	ln, sock := listen(t)
	at := NewAttestor(Options{})
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	attest := func() {
		cc, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ln.SetDeadline(time.Now().Add(10 * time.Second))
		c, err := ln.AcceptUnix()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := at.Attest(c, ExePathHash); err != nil {
			t.Fatal(err)
		}
	}
	attest() // warm up lazily opened runtime fds
	before := count()
	for range 20 {
		attest()
	}
	if after := count(); after != before {
		t.Errorf("open fds went from %d to %d over 20 attestations", before, after)
	}
}
