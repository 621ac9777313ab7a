package peer

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/exless/exless/internal/testproc"
)

// cgroupMounts finds this machine's cgroup v2 mount and, on legacy and
// hybrid hosts, the v1 name=systemd one, from /proc/self/mountinfo. Only
// mounts of a hierarchy's root are used, so a directory created under the
// mount shows in /proc/<pid>/cgroup as the same path.
func cgroupMounts(t *testing.T) (v2, v1 string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok {
			continue
		}
		fields, opts := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(opts) < 3 || fields[3] != "/" {
			continue
		}
		switch {
		case opts[0] == "cgroup2" && v2 == "":
			v2 = fields[4]
		case opts[0] == "cgroup" && strings.Contains(","+opts[2]+",", ",name=systemd,") && v1 == "":
			v1 = fields[4]
		}
	}
	return v2, v1
}

// makeCgroup creates rel (and missing parents) below mount and removes
// what it created when the test ends.
func makeCgroup(t *testing.T, mount, rel string) string {
	t.Helper()
	var created []string
	dir := mount
	for c := range strings.SplitSeq(strings.Trim(rel, "/"), "/") {
		dir = filepath.Join(dir, c)
		err := os.Mkdir(dir, 0o755)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		testproc.RequireAbility(t, "create cgroup "+dir, err)
		created = append(created, dir)
	}
	t.Cleanup(func() {
		for i := len(created) - 1; i >= 0; i-- {
			// A cgroup empties a moment after its last process is
			// reaped.
			var err error
			for range 100 {
				if err = unix.Rmdir(created[i]); !errors.Is(err, unix.EBUSY) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, unix.ENOENT) {
				t.Errorf("remove cgroup %s: %v", created[i], err)
			}
		}
	})
	return dir
}

// A caller inside a real cgroup named like a unit is attested with that
// unit. This machine may run no systemd; the cgroups are made by hand.
func TestAttestUnit(t *testing.T) {
	requireRoot(t)
	v2, v1 := cgroupMounts(t)
	if v2 == "" {
		testproc.RequireAbility(t, "find a cgroup2 mount", errors.New("none in /proc/self/mountinfo"))
	}
	tag := fmt.Sprintf("exless-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)

	start := func(t *testing.T, mount, rel string) *Identity {
		t.Helper()
		dir := makeCgroup(t, mount, rel)
		f, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		ln, sock := listen(t)
		p := startPeer(t, sock, peerSpec{cred: otherIDs, cgroupFD: f})
		c := p.connect(ln)
		id, err := NewAttestor(Options{}).Attest(c, ExeNone)
		if err != nil {
			t.Fatalf("Attest: %v", err)
		}
		return id
	}

	t.Run("system service", func(t *testing.T) {
		rel := "/system.slice/" + tag + ".service"
		id := start(t, v2, rel)
		if id.Unit != tag+".service" || id.UserUnit || id.Cgroup != rel {
			t.Errorf("Unit %q UserUnit %v Cgroup %q, want %q false %q", id.Unit, id.UserUnit, id.Cgroup, tag+".service", rel)
		}
	})
	t.Run("service in nested slices", func(t *testing.T) {
		rel := "/system.slice/system-exless.slice/" + tag + "@x.service/worker"
		id := start(t, v2, rel)
		if id.Unit != tag+"@x.service" || id.UserUnit {
			t.Errorf("Unit %q UserUnit %v, want %q false", id.Unit, id.UserUnit, tag+"@x.service")
		}
	})
	t.Run("user unit", func(t *testing.T) {
		rel := "/user.slice/user-4242.slice/user@4242.service/app.slice/" + tag + ".service"
		id := start(t, v2, rel)
		want := "user@4242.service/app.slice/" + tag + ".service"
		if id.Unit != want || !id.UserUnit || id.UserManagerUID != 4242 {
			t.Errorf("Unit %q UserUnit %v manager %d, want %q true 4242", id.Unit, id.UserUnit, id.UserManagerUID, want)
		}
	})
	t.Run("legacy name=systemd", func(t *testing.T) {
		if v1 == "" {
			t.Skip("no name=systemd hierarchy: this host is not legacy or hybrid")
		}
		if own := ownV2Path(t); own != "/" && own != "" {
			// On a real hybrid host systemd keeps both in step and
			// the v2 line wins; a v1-only move says nothing there.
			t.Skipf("this process is in v2 cgroup %s; the v1 line would not be used", own)
		}
		rel := "/system.slice/" + tag + "-v1.service"
		dir := makeCgroup(t, v1, rel)
		ln, sock := listen(t)
		p := startPeer(t, sock, peerSpec{cred: otherIDs})
		err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(p.pid())), 0)
		testproc.RequireAbility(t, "move a process into a name=systemd cgroup", err)
		c := p.connect(ln)
		id, err := NewAttestor(Options{}).Attest(c, ExeNone)
		if err != nil {
			t.Fatalf("Attest: %v", err)
		}
		if id.Unit != tag+"-v1.service" || id.Cgroup != rel {
			t.Errorf("Unit %q Cgroup %q, want %q %q", id.Unit, id.Cgroup, tag+"-v1.service", rel)
		}
	})
}

func ownV2Path(t *testing.T) string {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}
