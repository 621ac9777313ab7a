// Package peer reads who is on the other end of a Unix socket connection,
// as the kernel reports it (SO_PEERCRED, SO_PEERGROUPS). It owns nothing but
// that reading; deciding what a peer may do is the policy's job.
//
// The kernel records a stream socket's credentials when the peer calls
// connect (or socketpair), so they describe the process that opened the
// connection, not whoever writes to it later: a process that passes the
// descriptor on lends its identity. That is why the daemon reads them once,
// at accept, and never trusts anything the peer says about itself.
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
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Cred{}, ErrUnsupportedConn
	}
	if _, ok := c.(*net.UnixConn); !ok {
		return Cred{}, ErrUnsupportedConn
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("syscall conn: %w", err)
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
	})
	if cerr != nil {
		return Cred{}, fmt.Errorf("raw control: %w", cerr)
	}
	if credErr != nil {
		return Cred{}, credErr
	}
	// A pid of 0 means the peer is in a pid namespace we cannot see into,
	// or the socket was not connected by a process: nothing to vouch for.
	if cred.PID <= 0 {
		return Cred{}, errors.New("peer has no pid visible to this daemon")
	}
	return cred, nil
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
