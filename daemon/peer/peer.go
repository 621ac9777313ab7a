package peer

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cred is a peer's identity as the kernel saw it at connect time.
type Cred struct {
	PID    int32
	UID    uint32
	GID    uint32   // primary group
	Groups []uint32 // supplementary groups; nil when the kernel could not say
}

// ErrUnsupportedConn is returned for connections that are not Unix stream
// sockets, whose peers the kernel cannot vouch for.
var ErrUnsupportedConn = errors.New("peer credentials need a unix socket connection")

// FromConn reads the credentials of the process at the other end of c.
func FromConn(c net.Conn) (Cred, error) {
	cred, _, err := readSocket(c, false)
	return cred, err
}

var errNotAsked = errors.New("SO_PEERPIDFD not asked for")

// pidfdResult is the outcome of asking for SO_PEERPIDFD.
type pidfdResult struct {
	fd  int // -1 unless err is nil
	err error
}

// readSocket reads SO_PEERCRED and SO_PEERGROUPS and, when wantPidfd,
// SO_PEERPIDFD, all under one Control call so they describe the same
// socket state.
func readSocket(c net.Conn, wantPidfd bool) (Cred, pidfdResult, error) {
	pfd := pidfdResult{fd: -1, err: errNotAsked}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Cred{}, pfd, ErrUnsupportedConn
	}
	if _, ok := c.(*net.UnixConn); !ok {
		return Cred{}, pfd, ErrUnsupportedConn
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Cred{}, pfd, fmt.Errorf("syscall conn: %w", err)
	}
	var (
		cred    Cred
		credErr error
	)
	cerr := raw.Control(func(fd uintptr) {
		uc, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			credErr = fmt.Errorf("getsockopt SO_PEERCRED: %w", err)
			return
		}
		cred = Cred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}
		groups, err := peerGroups(int(fd))
		if err != nil {
			credErr = fmt.Errorf("getsockopt SO_PEERGROUPS: %w", err)
			return
		}
		cred.Groups = groups
		if wantPidfd {
			pfd.fd, pfd.err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
			if pfd.err != nil {
				pfd.fd = -1
			}
		}
	})
	if cerr == nil && credErr == nil && cred.PID <= 0 {
		// A pid of 0 means the peer is in a pid namespace we cannot see
		// into, or the socket was not connected by a process: nothing to
		// vouch for.
		credErr = errors.New("peer has no pid visible to this daemon")
	}
	if cerr != nil || credErr != nil {
		if pfd.fd >= 0 {
			unix.Close(pfd.fd)
		}
		if cerr != nil {
			return Cred{}, pidfdResult{fd: -1}, fmt.Errorf("raw control: %w", cerr)
		}
		return Cred{}, pidfdResult{fd: -1}, credErr
	}
	return cred, pfd, nil
}

// peerGroups reads SO_PEERGROUPS, growing the buffer when the kernel says it
// is too small (it reports the size it needs with ERANGE).
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 32)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd),
			unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch errno {
		case 0:
			n := int(size / 4)
			out := make([]uint32, n)
			copy(out, buf[:n])
			return out, nil
		case unix.ERANGE:
			if int(size/4) <= len(buf) || size > 65536*4 {
				return nil, errno
			}
			buf = make([]uint32, size/4)
		default:
			return nil, errno
		}
	}
}

// HasGroup reports whether gid is the peer's primary or a supplementary group.
func (c Cred) HasGroup(gid uint32) bool {
	if c.GID == gid {
		return true
	}
	for _, g := range c.Groups {
		if g == gid {
			return true
		}
	}
	return false
}
