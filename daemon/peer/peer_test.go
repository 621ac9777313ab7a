package peer

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestFromConnReadsOwnCredentials(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "p.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(done)
			return
		}
		done <- c
	}()
	client, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-done
	if server == nil {
		t.Fatal("accept failed")
	}
	defer server.Close()

	cred, err := FromConn(server)
	if err != nil {
		t.Fatalf("FromConn: %v", err)
	}
	if cred.UID != uint32(os.Getuid()) || cred.GID != uint32(os.Getgid()) || int(cred.PID) != os.Getpid() {
		t.Errorf("FromConn = %+v, want uid %d gid %d pid %d", cred, os.Getuid(), os.Getgid(), os.Getpid())
	}
	want, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range want {
		if !slices.Contains(cred.Groups, uint32(g)) {
			t.Errorf("supplementary group %d missing from %v", g, cred.Groups)
		}
	}
}

func TestFromConnRefusesNonUnix(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := FromConn(c); err != ErrUnsupportedConn {
		t.Errorf("FromConn(tcp) error = %v, want ErrUnsupportedConn", err)
	}
}

func TestHasGroup(t *testing.T) {
	c := Cred{GID: 10, Groups: []uint32{20, 30}}
	for _, tc := range []struct {
		gid  uint32
		want bool
	}{{10, true}, {20, true}, {30, true}, {40, false}} {
		if got := c.HasGroup(tc.gid); got != tc.want {
			t.Errorf("HasGroup(%d) = %v, want %v", tc.gid, got, tc.want)
		}
	}
}
