package peer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// How a peer's process was pinned for the duration of an attestation.
const (
	PinPidfd = "pidfd" // SO_PEERPIDFD: a handle on the very process that connected
	PinProc  = "proc"  // an open /proc/<pid> and the process's start time
)

// DefaultMaxExeSize is the largest executable Attest hashes unless
// Options.MaxExeSize says otherwise.
const DefaultMaxExeSize = 256 << 20

// ErrPeerGone is returned by Attest when the process that connected has
// exited (reaped or not), or its pid now names another process, before the
// attestation finished. The connection must not be served: what was read
// from /proc may describe some other process.
var ErrPeerGone = errors.New("peer process exited or its pid was reused")

// Options configure an Attestor. The zero value is what the daemon wants.
type Options struct {
	// NoPidfd pins with /proc/<pid> and the start time even on kernels
	// that have SO_PEERPIDFD (6.5+). For tests of the fallback.
	NoPidfd bool

	// MaxExeSize is the largest executable that is hashed; larger ones get
	// an ExeErr. Zero means DefaultMaxExeSize.
	MaxExeSize int64

	// ProcRoot is where procfs is mounted; empty means "/proc". It must be
	// the procfs of the daemon's own pid namespace, since SO_PEERCRED
	// reports pids in that namespace; Attest checks that ProcRoot/self is
	// the daemon.
	ProcRoot string
}

// Attestor reads who is behind a connection: the kernel's credentials, the
// systemd unit and, on request, the executable, while the process is pinned
// so that everything describes the process that connected. It is safe for
// concurrent use; the daemon needs one.
type Attestor struct {
	procRoot string
	noPidfd  bool
	maxExe   int64

	// pidfdMissing is set once the kernel refuses SO_PEERPIDFD with
	// ENOPROTOOPT (before 6.5), so Attest stops asking.
	pidfdMissing atomic.Bool
	procCheck    func() error
	selfLayout   atomic.Pointer[string]

	hashes *hashCache
}

// NewAttestor returns an Attestor with the given options.
func NewAttestor(opts Options) *Attestor {
	a := &Attestor{
		procRoot: opts.ProcRoot,
		noPidfd:  opts.NoPidfd,
		maxExe:   opts.MaxExeSize,
		hashes:   newHashCache(),
	}
	if a.procRoot == "" {
		a.procRoot = "/proc"
	}
	if a.maxExe <= 0 {
		a.maxExe = DefaultMaxExeSize
	}
	a.procCheck = sync.OnceValue(a.checkProcRoot)
	return a
}

// HashCount reports how many executables a has hashed (cache hits are not
// counted). For tests and metrics.
func (a *Attestor) HashCount() uint64 { return a.hashes.count.Load() }

// Identity is what Attest established about a peer.
type Identity struct {
	// Cred is what the kernel recorded when the peer connected.
	Cred

	// PinMethod is PinPidfd or PinProc.
	PinMethod string

	// StartTime is when the process started, in clock ticks after boot
	// (field 22 of /proc/<pid>/stat); with the pid it names one process.
	// It is read only to pin a process that has no pidfd (PinProc), and is
	// 0 with PinPidfd.
	StartTime uint64

	// Cgroup is the cgroup path systemd tracks the process by, Unit its
	// unit, and UserUnit and UserManagerUID say whether that unit belongs
	// to a per-user manager and whose; see ParseCgroup for the format.
	Cgroup         string
	Unit           string
	UserUnit       bool
	UserManagerUID uint32

	// ExePath is /proc/<pid>/exe's target (read only for ExePathHash).
	// ExeSHA256 is the hex sha256 of the file that link opens, set only
	// when ExeErr is empty. ExeErr says why the executable cannot vouch
	// for the peer (unreadable without CAP_SYS_PTRACE, deleted or
	// replaced, too large, moved while read). All three are empty when
	// Attest was not asked for the executable.
	ExePath    string
	ExeSHA256  string
	ExeErr     string
	ExeDeleted bool // the running file is no longer at its path
}

// ExeKnown reports whether the executable was read and hashed, so that exe
// path and hash rules may match this peer.
func (id *Identity) ExeKnown() bool {
	return id.ExeSHA256 != "" && id.ExeErr == "" && !id.ExeDeleted
}

// Exe says how much of a peer's executable Attest reads.
type Exe uint8

const (
	// ExeNone reads nothing of the executable.
	ExeNone Exe = iota
	// ExeHash hashes the running file (cached by inode and change time)
	// but does not read its path: two fewer procfs reads per connection,
	// for policies whose rules name hashes only.
	ExeHash
	// ExePathHash also reads the path, before and after the hash, so that
	// a path rule never matches a name the file was moved to or from
	// meanwhile.
	ExePathHash
)

// Attest identifies the peer of c. It reads SO_PEERCRED, SO_PEERGROUPS and
// SO_PEERPIDFD, pins the process (by the pidfd, or else by its start
// time), reads its cgroup and as much of its executable as exe says, then
// checks the pin again. It returns ErrPeerGone (wrapped) when the process
// exited or its pid was reused meanwhile, and an error when the
// credentials cannot be read; in both cases the connection must be closed
// unserved. An executable that cannot be read is not an error: it is
// reported in Identity.ExeErr.
//
// With ExeHash or ExePathHash, Attest may hash a file of up to MaxExeSize
// bytes (once per file, then cached); callers should not run it where a
// slow peer would hold up others, such as a listener's accept loop.
func (a *Attestor) Attest(c net.Conn, exe Exe) (*Identity, error) {
	if err := a.procCheck(); err != nil {
		return nil, err
	}
	usePidfd := !a.noPidfd && !a.pidfdMissing.Load()
	cred, pfd, err := readSocket(c, usePidfd)
	if err != nil {
		return nil, err
	}
	p := &pin{root: a.procRoot, pid: cred.PID, pidfd: -1, dirfd: -1, buf: readBufs.Get().(*[]byte)}
	defer p.close()
	if usePidfd {
		switch {
		case pfd.err == nil:
			p.pidfd = pfd.fd
		case errors.Is(pfd.err, unix.ENOPROTOOPT):
			a.pidfdMissing.Store(true)
		case errors.Is(pfd.err, unix.ESRCH), errors.Is(pfd.err, unix.EINVAL):
			// Before 6.16 the kernel refuses a pidfd for a peer
			// that has exited.
			return nil, fmt.Errorf("%w: getsockopt SO_PEERPIDFD: %v", ErrPeerGone, pfd.err)
		default:
			return nil, fmt.Errorf("getsockopt SO_PEERPIDFD: %w", pfd.err)
		}
	}
	id := &Identity{Cred: cred, PinMethod: PinProc}
	if p.pidfd >= 0 {
		id.PinMethod = PinPidfd
	}

	if err := p.open(); err != nil {
		return nil, err
	}
	// Without a pidfd, the start time comes first: the final check
	// compares against it. A pidfd pins the process by itself (see
	// verify), so its stat file is not read at all: three syscalls of
	// every connection's dozen.
	var st procStat
	if p.pidfd < 0 {
		var err error
		if st, err = p.stat(); err != nil {
			return nil, err
		}
		if st.pid != cred.PID {
			return nil, fmt.Errorf("/proc/%d/stat names pid %d", cred.PID, st.pid)
		}
		if st.exited() {
			return nil, fmt.Errorf("%w: pid %d is a zombie", ErrPeerGone, cred.PID)
		}
		id.StartTime = st.startTime
	}

	data, err := p.read("cgroup")
	if err != nil {
		return nil, err
	}
	lines, err := cgroupLines(data)
	if err != nil {
		return nil, fmt.Errorf("/proc/%d/cgroup: %w", cred.PID, err)
	}
	cg := cgroupOf(lines)
	if err := a.checkLayout(lines); err != nil {
		return nil, fmt.Errorf("/proc/%d/cgroup: %w", cred.PID, err)
	}
	id.Cgroup, id.Unit, id.UserUnit, id.UserManagerUID = cg.Path, cg.Unit, cg.UserUnit, cg.UserManagerUID

	if exe != ExeNone {
		a.readExe(p, id, exe == ExePathHash)
	}

	if testHookBeforeVerify != nil {
		testHookBeforeVerify()
	}
	if err := p.verify(st, cred); err != nil {
		return nil, err
	}
	return id, nil
}

// testHookBeforeVerify, when set, runs just before the final pin check.
var testHookBeforeVerify func()

// checkProcRoot makes sure procRoot is the procfs of the daemon's own pid
// namespace, the one SO_PEERCRED's pids are in.
func (a *Attestor) checkProcRoot() error {
	self := filepath.Join(a.procRoot, "self")
	got, err := os.Readlink(self)
	if err != nil {
		return fmt.Errorf("cannot attest peers: %w", err)
	}
	if want := strconv.Itoa(os.Getpid()); got != want {
		return fmt.Errorf("cannot attest peers: %s is %q, not this process (%s): procfs of another pid namespace", self, got, want)
	}
	return nil
}

// checkLayout compares the hierarchies listed in a peer's cgroup file with
// the daemon's own (see cgroupLayout). The daemon's is cached, and re-read
// once on a mismatch in case a hierarchy was mounted since.
func (a *Attestor) checkLayout(peer []cgroupLine) error {
	var buf [512]byte
	gotb := appendLayout(buf[:0], peer)
	// Compared without making a string: this runs for every connection.
	if cur := a.selfLayout.Load(); cur != nil && *cur == string(gotb) {
		return nil
	}
	got := string(gotb)
	self, err := os.ReadFile(filepath.Join(a.procRoot, "self", "cgroup"))
	if err != nil {
		return fmt.Errorf("read own cgroup file: %w", err)
	}
	want, err := cgroupLayout(self)
	if err != nil {
		return fmt.Errorf("own cgroup file: %w", err)
	}
	a.selfLayout.Store(&want)
	if got != want {
		return errors.New("hierarchies differ from this daemon's: a cgroup name with a newline forging lines?")
	}
	return nil
}

// pin holds the peer's process while it is read: a pidfd when the kernel
// gives one, else a directory fd on /proc/<pid>, through which every file
// is read so that all reads see the same process (once that process is
// gone, reads through it fail rather than reaching a successor). With a
// pidfd, files are read by path: verify's check that the pidfd's process
// still runs proves the pid named it throughout, and the open and close
// of the directory are two syscalls of every connection.
type pin struct {
	root  string
	pid   int32
	pidfd int
	dirfd int     // the directory fd, or AT_FDCWD with a pidfd
	dir   string  // "" with a directory fd, else "<root>/<pid>/"
	buf   *[]byte // for reads; what read returns is valid until the next read
}

// at returns where openat and friends find the file name of the process.
func (p *pin) at(name string) (int, string) {
	if p.dir == "" {
		return p.dirfd, name
	}
	return p.dirfd, p.dir + name
}

// readBufs hold the files Attest reads: a connection's stat, cgroup and
// status fit in one, and procfs fills it in one read.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

func (p *pin) close() {
	if p.buf != nil {
		readBufs.Put(p.buf)
		p.buf = nil
	}
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
	}
	if p.dirfd >= 0 {
		unix.Close(p.dirfd)
	}
}

func (p *pin) open() error {
	dir := filepath.Join(p.root, strconv.Itoa(int(p.pid)))
	if p.pidfd >= 0 {
		p.dirfd, p.dir = unix.AT_FDCWD, dir+"/"
		return nil
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if goneErrno(err) {
			return fmt.Errorf("%w: open %s: %v (or hidden by procfs hidepid=)", ErrPeerGone, dir, err)
		}
		return fmt.Errorf("open %s: %w", dir, err)
	}
	p.dirfd = fd
	return nil
}

// goneErrno reports whether err is how procfs says the process is gone.
func goneErrno(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

// read returns the contents of /proc/<pid>/name, read through the pin,
// in p.buf (valid until the next read).
func (p *pin) read(name string) ([]byte, error) {
	dfd, path := p.at(name)
	fd, err := unix.Openat(dfd, path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		var data []byte
		data, err = readProcFD(fd, (*p.buf)[:0], 1<<20)
		unix.Close(fd)
		if err == nil {
			if cap(data) > cap(*p.buf) && cap(data) <= 64<<10 {
				*p.buf = data[:cap(data)]
			}
			return data, nil
		}
	}
	if goneErrno(err) {
		return nil, fmt.Errorf("%w: read /proc/%d/%s: %v", ErrPeerGone, p.pid, name, err)
	}
	return nil, fmt.Errorf("read /proc/%d/%s: %w", p.pid, name, err)
}

func (p *pin) stat() (procStat, error) {
	data, err := p.read("stat")
	if err != nil {
		return procStat{}, err
	}
	st, err := parseStat(data)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/%w", p.pid, err)
	}
	return st, nil
}

// verify checks, after everything else was read, that the pinned process
// is still the one that connected and still running.
func (p *pin) verify(first procStat, cred Cred) error {
	if p.pidfd >= 0 {
		// Holding a pidfd proves nothing by itself: since 6.16 the
		// kernel hands one out for a peer that has already exited. It
		// polls readable once the process exited, reaped or not (a
		// reaped one also reports POLLHUP). A process still running now
		// was running since it connected, so its pid named it all along
		// and every file read through /proc/<pid> was its own: no second
		// look at the start time is needed.
		exited, err := pidfdExited(p.pidfd)
		if err != nil {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if exited {
			return fmt.Errorf("%w: pid %d exited", ErrPeerGone, p.pid)
		}
		return nil
	}
	st, err := p.stat()
	if err != nil {
		return err
	}
	if st.startTime != first.startTime {
		return fmt.Errorf("%w: pid %d now started at %d, not %d", ErrPeerGone, p.pid, st.startTime, first.startTime)
	}
	// Without a pidfd, a pid reused before /proc/<pid> was opened would
	// pass the checks above; a reuser under other ids at least does not
	// (SPIRE checks the same).
	if st.exited() {
		return fmt.Errorf("%w: pid %d is a zombie", ErrPeerGone, p.pid)
	}
	data, err := p.read("status")
	if err != nil {
		return err
	}
	euid, egid, err := parseStatusIDs(data)
	if err != nil {
		return fmt.Errorf("/proc/%d/%w", p.pid, err)
	}
	if euid != cred.UID || egid != cred.GID {
		return fmt.Errorf("%w: pid %d now runs as uid %d gid %d, not uid %d gid %d", ErrPeerGone, p.pid, euid, egid, cred.UID, cred.GID)
	}
	return nil
}

// pidfdExited reports whether the process behind a pidfd has exited: a
// pidfd polls readable once the whole thread group has exited.
func pidfdExited(fd int) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, err
		}
		return n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0, nil
	}
}

// readProcFD reads a procfs file into buf (growing it when needed),
// refusing more than limit bytes. A read that does not fill the buffer is
// taken as the end: procfs produces these files whole on the first read
// and copies out all that fits, which saves a second read per file. Were a
// kernel ever to return less, the file would look cut short, and a short
// stat, cgroup or status file fails its parse or layout check: refused,
// never misread as another process.
func readProcFD(fd int, buf []byte, limit int) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= limit {
				return nil, fmt.Errorf("longer than %d bytes", limit)
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
		if len(buf) < cap(buf) {
			return buf, nil
		}
	}
}
