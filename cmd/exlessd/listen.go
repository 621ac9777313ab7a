package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/exless/exless/daemon"
)

// Socket names (FileDescriptorName=) of the units that activate exlessd.
const (
	fdNameAPI         = "api"         // exlessd.socket
	fdNameCredentials = "credentials" // exlessd-credentials.socket
)

// listeners are the sockets exlessd serves.
type listeners struct {
	api net.Listener
	// credentials is the LoadCredential= provider's socket; nil unless
	// systemd passed one.
	credentials net.Listener
}

func (l listeners) Close() {
	l.api.Close()
	if l.credentials != nil {
		l.credentials.Close()
	}
}

// listen uses the sockets systemd passed when socket-activated, told apart
// by name, else creates the configured API socket.
func listen(cfg daemon.Config, log *slog.Logger) (listeners, error) {
	named, err := activation.ListenersWithNames()
	if err != nil {
		return listeners{}, fmt.Errorf("socket activation: %w", err)
	}
	var ls listeners
	if c := named[fdNameCredentials]; len(c) > 0 {
		ls.credentials = c[0]
		log.Info("serving systemd credentials on the socket passed by systemd", "addr", c[0].Addr().String())
	}
	if a := named[fdNameAPI]; len(a) > 0 {
		ls.api = a[0]
	} else {
		// A socket unit without FileDescriptorName= (an older or a
		// site's own unit) passes its unit name: take it as the API.
		for name, lns := range named {
			if name != fdNameCredentials && len(lns) > 0 {
				ls.api = lns[0]
				break
			}
		}
	}
	if ls.api != nil {
		log.Info("using the socket passed by systemd", "addr", ls.api.Addr().String())
		return ls, nil
	}
	ls.api, err = listenUnix(cfg.Socket, cfg.SocketMode, cfg.SocketGroup)
	if err != nil && ls.credentials != nil {
		ls.credentials.Close()
	}
	return ls, err
}

func listenUnix(path string, mode os.FileMode, group string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket %s exists and is not a socket; remove it or change socket in the config", path)
		}
		// Dial first so that a live daemon's socket is never removed. A
		// daemon starting between the dial and the remove could still lose
		// its socket; systemd socket activation avoids that race entirely.
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another exlessd is already serving %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	gid := -1
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("socket_group %q: %w", group, err)
		}
		gid = g
	}
	// Create the socket with no access at all, then open it up: there is no
	// moment when it is reachable with wider permissions than configured.
	old := syscallUmask(0o777)
	ln, err := net.Listen("unix", path)
	syscallUmask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("chown socket to group %q: %w", group, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return ln, nil
}

func lookupGroup(name string) (int, error) {
	if id, err := strconv.Atoi(name); err == nil {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("no such group; create it (e.g. groupadd %s) or change socket_group", name)
		}
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}
