package credsock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/internal/syncbuf"
	"github.com/exless/exless/internal/testproc"
	"github.com/exless/exless/internal/testrun"
)

// clientEnv makes the test binary act as systemd's credential helper:
// bind the abstract address it names, connect to the socket, print what
// it reads. Tests run it under other uids.
const clientEnv = "CREDSOCK_TEST_CLIENT"

func TestMain(m *testing.M) {
	if spec := os.Getenv(clientEnv); spec != "" {
		sock, local, _ := strings.Cut(spec, " ")
		data, err := fetch(sock, local)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(data)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fetch does what (sd-mkdcreds) does: connect from a named (abstract)
// address, send nothing, read until EOF.
func fetch(sock, local string) ([]byte, error) {
	var laddr *net.UnixAddr
	if local != "" {
		laddr = &net.UnixAddr{Name: local, Net: "unix"}
	}
	c, err := net.DialUnix("unix", laddr, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return io.ReadAll(c)
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// start serves s on a fresh socket (world-connectable, so that the uid
// check is what refuses) until the test ends.
func start(t *testing.T, s *Server) (string, *syncbuf.Buffer) {
	t.Helper()
	dir, err := os.MkdirTemp("", "credsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	logs := testrun.Buffer(t, "credsock")
	s.Logger = slog.New(slog.NewTextHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock, logs
}

// inUnit pretends every process sits in the given units' cgroups.
func inUnit(units ...string) func(int32) ([]string, error) {
	return func(int32) ([]string, error) {
		var paths []string
		for _, u := range units {
			paths = append(paths, "/system.slice/"+u)
		}
		return paths, nil
	}
}

func TestServesAttestedRequests(t *testing.T) {
	testproc.RequireRoot(t, "systemd's credential helper connects as root")
	var got []Request
	var mu sync.Mutex
	s := &Server{
		cgroup: inUnit("demo.service"),
		Credential: func(_ context.Context, r Request) ([]byte, error) {
			mu.Lock()
			got = append(got, r)
			mu.Unlock()
			if r.ID == "refuse-me" {
				return nil, errors.New("no rule grants it")
			}
			return []byte("tok-" + r.ID), nil
		},
	}
	sock, logs := start(t, s)

	for _, tc := range []struct {
		name, local, want, log string
	}{
		{"granted", "@" + randomHex() + "/unit/demo.service/exceptionless-user", "tok-exceptionless-user", ""},
		{"refused_by_decision", "@" + randomHex() + "/unit/demo.service/refuse-me", "", "no rule grants it"},
		{"other_unit_than_cgroup", "@" + randomHex() + "/unit/other.service/exceptionless-user", "", "claims unit other.service"},
		{"not_systemds_address", "@hello", "", "is not <random>/unit/<unit>/<id>"},
		{"unnamed", "", "", `peer address \"@\" is not`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := fetch(sock, tc.local)
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			if string(data) != tc.want {
				t.Errorf("got %q, want %q", data, tc.want)
			}
			if tc.log != "" {
				waitLog(t, logs, tc.log)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].Unit != "demo.service" || got[0].ID != "exceptionless-user" || got[0].PID != int32(os.Getpid()) {
		t.Errorf("Credential saw %+v, want two attested requests from this process for demo.service", got)
	}
}

func waitLog(t *testing.T, logs *syncbuf.Buffer, want string) {
	t.Helper()
	for range 100 {
		if strings.Contains(logs.String(), want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("log lacks %q:\n%s", want, logs.String())
}

func TestRefusesPeersThatAreNotRoot(t *testing.T) {
	testproc.RequireRoot(t, "a peer runs under another uid")
	called := false
	s := &Server{
		cgroup: inUnit("demo.service"),
		Credential: func(context.Context, Request) ([]byte, error) {
			called = true
			return []byte("secret"), nil
		},
	}
	sock, logs := start(t, s)
	// A non-root process binds the very name systemd would use. The test
	// binary sits in a private build directory; give it a reachable copy.
	bin := filepath.Join(filepath.Dir(sock), "client")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"="+sock+" @"+randomHex()+"/unit/demo.service/exceptionless-user")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client as uid 65534: %v", err)
	}
	if len(out) != 0 {
		t.Errorf("a non-root peer got %q", out)
	}
	waitLog(t, logs, "peer uid 65534")
	if called {
		t.Error("Credential was asked for a non-root peer")
	}
}

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in, unit, id string
		ok           bool
	}{
		{"@0123abcd/unit/deploy.service/exceptionless-client.537650f3b77efe23a47914f4", "deploy.service", "exceptionless-client.537650f3b77efe23a47914f4", true},
		{"@ff/unit/app@1.service/x", "app@1.service", "x", true},
		{"0123/unit/a.service/x", "", "", false},
		{"@0123/unit/a.service", "", "", false},
		{"@0123/unit/a.service/x/y", "", "", false},
		{"@zz/unit/a.service/x", "", "", false},
		{"@01/user/a.service/x", "", "", false},
		{"@01/unit/noservice/x", "", "", false},
		{"@01/unit/a b.service/x", "", "", false},
		{"@01/unit/a.service/..", "", "", false},
	} {
		unit, id, err := ParseAddr(tc.in)
		if (err == nil) != tc.ok || unit != tc.unit || id != tc.id {
			t.Errorf("ParseAddr(%q) = %q, %q, %v; want %q, %q, ok=%v", tc.in, unit, id, err, tc.unit, tc.id, tc.ok)
		}
	}
}

func TestProcCgroup(t *testing.T) {
	paths, err := procCgroup(int32(os.Getpid()))
	if err != nil || len(paths) == 0 {
		t.Fatalf("procCgroup(self) = %v, %v", paths, err)
	}
	if _, err := startTime(int32(os.Getpid())); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseAddr: any abstract address a peer binds must parse or fail,
// never panic, and a parsed unit and id never contain a slash or NUL that
// could climb out of a name.
func FuzzParseAddr(f *testing.F) {
	f.Add("@f3a9c1d2e4b5a6c7/unit/demo.service/exceptionless-client.537650f3b77efe23a47914f4")
	f.Add("@abc/unit/x.service/id")
	f.Add("")
	f.Add("\x00/unit//")
	f.Fuzz(func(t *testing.T, name string) {
		unit, id, err := ParseAddr(name)
		if err != nil {
			return
		}
		if unit == "" || id == "" || strings.ContainsAny(unit+id, "/\x00") {
			t.Fatalf("ParseAddr(%q) = %q, %q", name, unit, id)
		}
	})
}
