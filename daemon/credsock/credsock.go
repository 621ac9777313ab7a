// Package credsock serves systemd's LoadCredential= protocol on a Unix
// socket, so that a unit can receive an Exceptionless token as a systemd
// credential without running any client:
//
//	LoadCredential=exceptionless-client.<project>:/run/exless/credentials.sock
//
// It owns the protocol and the attestation of the requester, not the
// decision: Server.Credential decides, and returns the bytes to hand out.
//
// # Protocol (systemd.exec(5), measured with systemd 252)
//
// For each command of the consuming unit that runs, a short-lived helper of
// PID 1 ("(sd-mkdcreds)", uid 0, already in the unit's cgroup) binds to the
// abstract address "\0<random hex>/unit/<unit>/<credential ID>", connects,
// sends nothing and reads until EOF into $CREDENTIALS_DIRECTORY/<ID>. A
// clean close with nothing written gives an empty credential (the unit still
// starts: consumers check with ExecStartPre=/usr/bin/test -s ...).
//
// # Threat model
//
// Anyone who can reach the socket can bind any abstract name, so the unit
// named in the peer's address is believed only when the kernel says the
// peer is root (SO_PEERCRED), and only when the peer's cgroup, read from
// /proc, places it in that unit. The socket itself is 0600 root. A refusal
// writes nothing and closes, and is logged with the reason.
package credsock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Request is one attested credential request.
type Request struct {
	// Unit is the unit systemd is starting, e.g. "deploy.service".
	Unit string
	// ID is the credential ID the unit asked for.
	ID string
	// PID is the systemd helper that connected.
	PID int32
}

// Server answers LoadCredential= connections.
type Server struct {
	// Credential returns the credential's content for an attested request,
	// or an error to refuse it. The error is logged; it must hold no secret.
	Credential func(ctx context.Context, req Request) ([]byte, error)
	// Logger receives one line per refused connection (decisions are the
	// Credential func's to log). Nil: discard.
	Logger *slog.Logger
	// Timeout bounds one connection (systemd waits for it until the
	// consuming unit's TimeoutStartSec=). Zero: 30 s.
	Timeout time.Duration

	// cgroup returns the cgroup paths of a process; tests replace it.
	cgroup func(pid int32) ([]string, error)
}

// Serve accepts connections on ln until ctx ends. Connections in flight are
// given Timeout to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("system", "credentials")
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(context.WithoutCancel(ctx), c, timeout, log)
		}()
	}
}

func (s *Server) handle(ctx context.Context, c net.Conn, timeout time.Duration, log *slog.Logger) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_ = c.SetDeadline(time.Now().Add(timeout))
	req, err := s.attest(c)
	if err != nil {
		log.Warn("refused credential request", "err", err)
		return
	}
	data, err := s.Credential(ctx, req)
	if err != nil {
		log.Warn("refused credential request", "unit", req.Unit, "credential", req.ID, "pid", req.PID, "err", err)
		return
	}
	if _, err := c.Write(data); err != nil {
		log.Warn("writing credential", "unit", req.Unit, "credential", req.ID, "err", err)
	}
}

// attest reads who is asking for what, and refuses anything but systemd
// asking for a unit it is starting.
func (s *Server) attest(c net.Conn) (Request, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Request{}, errors.New("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Request{}, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Request{}, err
	}
	if credErr != nil {
		return Request{}, fmt.Errorf("getsockopt SO_PEERCRED: %w", credErr)
	}
	if cred.Uid != 0 {
		// Only PID 1's helper may ask, and it runs as root; anyone else
		// could have bound any name.
		return Request{}, fmt.Errorf("peer uid %d pid %d is not root: only systemd asks for credentials here", cred.Uid, cred.Pid)
	}
	addr, _ := uc.RemoteAddr().(*net.UnixAddr)
	if addr == nil {
		return Request{}, fmt.Errorf("pid %d connected from an unnamed socket, not as systemd's credential helper", cred.Pid)
	}
	unit, id, err := ParseAddr(addr.Name)
	if err != nil {
		return Request{}, fmt.Errorf("pid %d: %w", cred.Pid, err)
	}
	if err := s.checkCgroup(cred.Pid, unit); err != nil {
		return Request{}, err
	}
	return Request{Unit: unit, ID: id, PID: cred.Pid}, nil
}

// ParseAddr splits systemd's abstract peer address
// "@<random hex>/unit/<unit>/<credential ID>" (Go shows the leading NUL
// as "@").
func ParseAddr(name string) (unit, id string, err error) {
	rest, ok := strings.CutPrefix(name, "@")
	if !ok {
		return "", "", fmt.Errorf("peer address %q is not abstract, not systemd's credential helper", name)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || parts[1] != "unit" || parts[0] == "" || !isHex(parts[0]) {
		return "", "", fmt.Errorf("peer address %q is not <random>/unit/<unit>/<id>", name)
	}
	unit, id = parts[2], parts[3]
	if !validUnitName(unit) {
		return "", "", fmt.Errorf("peer address names %q, not a unit", unit)
	}
	if id == "" || len(id) > 255 || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return "", "", fmt.Errorf("peer address names credential %q, not a valid credential ID", id)
	}
	return unit, id, nil
}

func isHex(s string) bool {
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
			return false
		}
	}
	return true
}

// validUnitName reports whether s looks like a unit name: name.type, made of
// the characters systemd allows (letters, digits, ":-_.\@").
func validUnitName(s string) bool {
	dot := strings.LastIndexByte(s, '.')
	if len(s) > 255 || dot <= 0 || dot == len(s)-1 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":-_.\\@", r)) {
			return false
		}
	}
	return true
}

// checkCgroup confirms that pid sits in unit's cgroup, and that pid still
// names the same process after reading it (a pid reused in between would
// vouch for another process).
func (s *Server) checkCgroup(pid int32, unit string) error {
	read := s.cgroup
	if read == nil {
		read = procCgroup
	}
	before, err := startTime(pid)
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	paths, err := read(pid)
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	after, err := startTime(pid)
	if err != nil || after != before {
		return fmt.Errorf("pid %d exited or was reused while it was checked", pid)
	}
	for _, p := range paths {
		for _, part := range strings.Split(p, "/") {
			if part == unit {
				return nil
			}
		}
	}
	return fmt.Errorf("pid %d claims unit %s but its cgroup is %q", pid, unit, paths)
}

// procCgroup returns the cgroup paths of pid from /proc/<pid>/cgroup: the
// unified hierarchy's and, on hybrid hosts, name=systemd's.
func procCgroup(pid int32) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/cgroup")
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// "0::/system.slice/x.service" or "1:name=systemd:/system.slice/x.service"
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && (f[1] == "" || f[1] == "name=systemd") {
			paths = append(paths, f[2])
		}
	}
	return paths, nil
}

// startTime returns field 22 of /proc/<pid>/stat (clock ticks since boot).
func startTime(pid int32) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		return "", err
	}
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after its last ')' are plain.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", errors.New("malformed stat")
	}
	return f[19], nil
}
