package peer

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// hashCacheEntries bounds the cache of executable hashes.
	hashCacheEntries = 1024
	// DefaultHashConcurrency bounds how many executables are hashed at
	// once, so peers running many distinct binaries cannot make the daemon
	// hash in parallel without limit; LimitHashing changes it.
	DefaultHashConcurrency = 2
	// defaultHashWait is how long a peer waits for a turn to hash before
	// it is attested without its executable (see LimitHashing).
	defaultHashWait = 5 * time.Second
	// racyWindow: a file changed this recently is hashed but not cached.
	// File times come from a coarse clock, so a write in the same tick as
	// the previous one can leave (size, mtime, ctime) unchanged; once the
	// last change is older than any tick, a new write must move ctime,
	// which no one can set by hand. (Git calls this the racy-git problem.)
	racyWindow = 3 * time.Second
)

// testHookExeReadlinked, when set, runs between reading /proc/<pid>/exe's
// target and opening it.
var testHookExeReadlinked func(path string)

// testHookHashing, when set, runs while a hash holds its turn.
var testHookHashing func()

// errHashBusy is why an executable was not hashed when every turn stayed
// taken for as long as the peer may wait.
var errHashBusy = errors.New("exlessd is busy hashing other executables; try again")

// LimitHashing sets how many executables a hashes at once (n < 1 means
// DefaultHashConcurrency) and how long a peer waits for a turn (wait <= 0
// means 5s). A peer that waits longer is attested without its executable:
// exe rules do not match it. The daemon passes its header timeout, past
// which the connection is cut anyway. Call it before a is used.
func (a *Attestor) LimitHashing(n int, wait time.Duration) {
	if n < 1 {
		n = DefaultHashConcurrency
	}
	if wait <= 0 {
		wait = defaultHashWait
	}
	a.hashes.sem = make(chan struct{}, n)
	a.hashes.wait = wait
}

// MaxHashesInFlight reports the most executables a has hashed at once.
func (a *Attestor) MaxHashesInFlight() int { return int(a.hashes.maxInFlight.Load()) }

// readExe fills in the executable fields of id, with its path when
// withPath. Nothing here fails the attestation: an executable that cannot
// vouch for the peer gets ExeErr, and exe rules then do not match.
func (a *Attestor) readExe(p *pin, id *Identity, withPath bool) {
	var path string
	if withPath {
		var err error
		if path, err = readlinkAt(p.at("exe")); err != nil {
			id.ExeErr = exeErrText(p.pid, err)
			return
		}
		id.ExePath = path
		// The kernel marks a file that was unlinked (deleted, or replaced
		// by a rename over its path) since it was executed.
		if strings.HasSuffix(path, " (deleted)") {
			id.ExeDeleted = true
			id.ExeErr = "executable was deleted or replaced since the process started"
			return
		}
		if testHookExeReadlinked != nil {
			testHookExeReadlinked(path)
		}
	}
	// The file the process runs, reached through the magic link, not
	// whatever is at the path now. A stat through the link names it as
	// well as an open would (same access check, same inode), and is all
	// a cached hash needs: the file is opened only to be hashed.
	dfd, name := p.at("exe")
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, 0); err != nil {
		id.ExeErr = exeErrText(p.pid, err)
		return
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		id.ExeErr = "executable is not a regular file"
		return
	case st.Nlink == 0:
		// Unlinked since it was executed: the hash-only check of what
		// the path's " (deleted)" mark says.
		id.ExeDeleted = true
		id.ExeErr = "executable was deleted or replaced since the process started"
		return
	case st.Size > a.maxExe:
		id.ExeErr = fmt.Sprintf("executable is %d bytes, over the %d-byte limit", st.Size, a.maxExe)
		return
	}
	sum, ok := a.hashes.cached(&st)
	if !ok {
		var errText string
		if sum, errText = a.hashExe(p, &st); errText != "" {
			id.ExeErr = errText
			return
		}
	}
	if !withPath {
		id.ExeSHA256 = sum
		return
	}
	// The name must still lead to the file that was hashed: a path rule
	// must not match a name that was moved or replaced meanwhile.
	bp := linkBufs.Get().(*[]byte)
	defer linkBufs.Put(bp)
	again, err := readlinkInto(dfd, name, *bp)
	if err != nil {
		id.ExeErr = exeErrText(p.pid, err)
		return
	}
	if string(again) != path {
		id.ExeDeleted = bytes.HasSuffix(again, []byte(" (deleted)"))
		id.ExeErr = fmt.Sprintf("executable moved from %s to %s while it was read", path, again)
		return
	}
	id.ExeSHA256 = sum
}

// hashExe opens the executable through the magic link and hashes it,
// provided it is still the file st describes (the process may have
// exec'd meanwhile). It returns the hash, or why there is none.
func (a *Attestor) hashExe(p *pin, st *unix.Stat_t) (string, string) {
	dfd, name := p.at("exe")
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return "", exeErrText(p.pid, err)
	}
	defer unix.Close(fd)
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return "", fmt.Sprintf("cannot stat /proc/%d/exe: %v", p.pid, err)
	}
	if keyOf(&fst) != keyOf(st) {
		return "", "executable changed while it was read"
	}
	sum, err := a.hashes.sum(fd, &fst)
	if err != nil {
		return "", fmt.Sprintf("cannot hash /proc/%d/exe: %v", p.pid, err)
	}
	return sum, ""
}

func exeErrText(pid int32, err error) string {
	switch {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Sprintf("cannot read /proc/%d/exe: permission denied "+
			"(exlessd needs CAP_SYS_PTRACE for another user's or a non-dumpable process's executable)", pid)
	case errors.Is(err, unix.ENOENT):
		return fmt.Sprintf("cannot read /proc/%d/exe: process has no executable (exiting?)", pid)
	}
	return fmt.Sprintf("cannot read /proc/%d/exe: %v", pid, err)
}

// linkBufs hold any path the kernel prints (PATH_MAX) and " (deleted)".
var linkBufs = sync.Pool{New: func() any { b := make([]byte, 4096+64); return &b }}

func readlinkAt(dirfd int, name string) (string, error) {
	bp := linkBufs.Get().(*[]byte)
	defer linkBufs.Put(bp)
	b, err := readlinkInto(dirfd, name, *bp)
	return string(b), err
}

// readlinkInto reads a link's target into buf, or a larger buffer if it
// does not fit.
func readlinkInto(dirfd int, name string, buf []byte) ([]byte, error) {
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return nil, err
		}
		if n < len(buf) {
			return buf[:n], nil
		}
		if len(buf) > 1<<16 {
			return nil, errors.New("link target too long")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// fileKey identifies one version of one file: a write changes size, mtime
// or ctime, and ctime cannot be set back by anyone.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

func keyOf(st *unix.Stat_t) fileKey {
	return fileKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// hashCache remembers executables' hashes, so the same binary is hashed
// once however many peers run it.
type hashCache struct {
	mu       sync.Mutex
	max      int
	racy     time.Duration
	entries  map[fileKey]*list.Element // of *cacheEntry
	lru      list.List                 // most recently used first
	inflight map[fileKey]*hashCall
	sem      chan struct{} // one slot per hash allowed at once
	wait     time.Duration // longest wait for a slot
	count    atomic.Uint64

	inFlight, maxInFlight atomic.Int64
}

type cacheEntry struct {
	key fileKey
	sum string
}

// hashCall is a hash being computed; others wanting the same file wait
// for it instead of hashing it again.
type hashCall struct {
	done chan struct{}
	sum  string
	err  error
}

func newHashCache() *hashCache {
	return &hashCache{
		max:      hashCacheEntries,
		racy:     racyWindow,
		entries:  make(map[fileKey]*list.Element),
		inflight: make(map[fileKey]*hashCall),
		sem:      make(chan struct{}, DefaultHashConcurrency),
		wait:     defaultHashWait,
	}
}

// cached returns the hash of the file st describes if it is cached and
// not racy (see racyWindow).
func (h *hashCache) cached(st *unix.Stat_t) (string, bool) {
	if h.recent(st) {
		return "", false
	}
	key := keyOf(st)
	h.mu.Lock()
	defer h.mu.Unlock()
	if e, ok := h.entries[key]; ok {
		h.lru.MoveToFront(e)
		return e.Value.(*cacheEntry).sum, true
	}
	return "", false
}

// sum returns the hex sha256 of the file open at fd, whose fstat is st.
func (h *hashCache) sum(fd int, st *unix.Stat_t) (string, error) {
	key := keyOf(st)
	if h.recent(st) {
		return h.hash(fd, key)
	}
	h.mu.Lock()
	if e, ok := h.entries[key]; ok {
		h.lru.MoveToFront(e)
		sum := e.Value.(*cacheEntry).sum
		h.mu.Unlock()
		return sum, nil
	}
	if c, ok := h.inflight[key]; ok {
		h.mu.Unlock()
		<-c.done
		return c.sum, c.err
	}
	c := &hashCall{done: make(chan struct{})}
	h.inflight[key] = c
	h.mu.Unlock()

	c.sum, c.err = h.hash(fd, key)

	h.mu.Lock()
	delete(h.inflight, key)
	if c.err == nil {
		h.entries[key] = h.lru.PushFront(&cacheEntry{key: key, sum: c.sum})
		for h.lru.Len() > h.max {
			old := h.lru.Back()
			h.lru.Remove(old)
			delete(h.entries, old.Value.(*cacheEntry).key)
		}
	}
	h.mu.Unlock()
	close(c.done)
	return c.sum, c.err
}

// recent reports whether st's file changed too recently for its key to be
// trusted (see racyWindow); a clock set back counts as recent.
func (h *hashCache) recent(st *unix.Stat_t) bool {
	now := time.Now()
	return now.Sub(time.Unix(st.Mtim.Unix())) < h.racy || now.Sub(time.Unix(st.Ctim.Unix())) < h.racy
}

// acquire takes a hashing slot, waiting at most h.wait for one.
func (h *hashCache) acquire() bool {
	select {
	case h.sem <- struct{}{}:
	default:
		t := time.NewTimer(h.wait)
		defer t.Stop()
		select {
		case h.sem <- struct{}{}:
		case <-t.C:
			return false
		}
	}
	n := h.inFlight.Add(1)
	for {
		m := h.maxInFlight.Load()
		if n <= m || h.maxInFlight.CompareAndSwap(m, n) {
			return true
		}
	}
}

func (h *hashCache) release() {
	h.inFlight.Add(-1)
	<-h.sem
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// hash reads exactly key.size bytes of fd from offset 0 and checks the
// file did not change while it was read.
func (h *hashCache) hash(fd int, key fileKey) (string, error) {
	if !h.acquire() {
		return "", errHashBusy
	}
	defer h.release()
	h.count.Add(1)
	if testHookHashing != nil {
		testHookHashing()
	}

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	sha := sha256.New()
	var off int64
	for off < key.size {
		n, err := unix.Pread(fd, buf[:min(int64(len(buf)), key.size-off)], off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return "", err
		}
		if n == 0 {
			return "", errors.New("file shrank while it was hashed")
		}
		sha.Write(buf[:n])
		off += int64(n)
	}
	if n, err := unix.Pread(fd, buf[:1], off); err != nil || n != 0 {
		return "", errors.New("file grew while it was hashed")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	if keyOf(&st) != key {
		return "", errors.New("file changed while it was hashed")
	}
	return hex.EncodeToString(sha.Sum(nil)), nil
}
