package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/internal/testrun"
)

// cgroup2Root finds the machine's cgroup v2 mount. This machine runs no
// systemd, so the test makes cgroups named like units itself.
func cgroup2Root(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		pre, post, ok := strings.Cut(s.Text(), " - ")
		fields := strings.Fields(pre)
		if ok && strings.HasPrefix(post, "cgroup2 ") && len(fields) > 4 && fields[3] == "/" {
			return fields[4]
		}
	}
	t.Fatal("no cgroup2 mount of a hierarchy root in /proc/self/mountinfo")
	return ""
}

// unitCgroup creates a cgroup at rel under the v2 root and returns an open
// directory for SysProcAttr.CgroupFD; it is removed after the test.
func unitCgroup(t *testing.T, root, rel string) *os.File {
	t.Helper()
	dir := root
	var made []string
	for _, c := range strings.Split(strings.Trim(rel, "/"), "/") {
		dir = filepath.Join(dir, c)
		if err := os.Mkdir(dir, 0o755); err == nil {
			made = append(made, dir)
		} else if !errors.Is(err, os.ErrExist) {
			t.Fatalf("create cgroup: %v", err)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		for i := len(made) - 1; i >= 0; i-- {
			for range 100 {
				if err := syscall.Rmdir(made[i]); err == nil || !errors.Is(err, syscall.EBUSY) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
	return f
}

// ctlIn runs exlessctl inside a cgroup.
func (e *daemonEnv) ctlIn(cg *os.File, args ...string) result {
	e.t.Helper()
	return e.run(&syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}, args...)
}

// A rule for a system unit grants a process in that unit's cgroup, and
// nothing else: not the same process outside it, and not a same-named unit
// under a user manager.
func TestUnitRulesAgainstRealCgroups(t *testing.T) {
	requireRoot(t)
	root := cgroup2Root(t)
	tag := fmt.Sprintf("exless-e2e-%d", os.Getpid())
	e := startDaemon(t, "", func(a exceptionlesstest.Account) string {
		return fmt.Sprintf(`
rule "deploy" {
  units    = ["%s-deploy.service"]
  scopes   = ["client"]
  projects = ["*"]
}
rule "status" {
  users   = ["%d"]
  actions = ["status"]
}`, tag, os.Getuid())
	})
	project := e.ex.Account.Projects[0].ID
	args := []string{"token", "--scope", "client", "--project", project}

	system := unitCgroup(t, root, "/system.slice/"+tag+"-deploy.service")
	if r := e.ctlIn(system, args...); r.code != 0 {
		t.Errorf("in %s-deploy.service: exit %d: %s", tag, r.code, r.stderr)
	}
	if r := e.ctlIn(system, "whoami"); !strings.Contains(r.stdout, tag+"-deploy.service") {
		t.Errorf("whoami in the unit does not show it:\n%s", r.stdout)
	}
	other := unitCgroup(t, root, "/system.slice/"+tag+"-other.service")
	if r := e.ctlIn(other, args...); r.code != 3 || !strings.Contains(r.stderr, "no rule grants") {
		t.Errorf("in another unit: exit %d: %s", r.code, r.stderr)
	}
	user := unitCgroup(t, root, "/user.slice/user-4242.slice/user@4242.service/app.slice/"+tag+"-deploy.service")
	if r := e.ctlIn(user, args...); r.code != 3 {
		t.Errorf("a same-named unit under a user manager: exit %d, want 3 (%s)", r.code, r.stderr)
	}
	if r := e.ctl(nil, args...); r.code != 3 {
		t.Errorf("outside any unit: exit %d, want 3", r.code)
	}
	if !strings.Contains(e.stderr.String(), "unit="+tag+"-deploy.service") {
		t.Error("the audit records do not name the unit")
	}
}

// An exe rule pins one binary: the same uid running another binary is
// refused.
func TestExeRuleAllowsOnlyThePinnedBinary(t *testing.T) {
	bin := binaries(t)
	sum := sha256File(t, filepath.Join(bin, "exlessctl"))
	e := startDaemon(t, "", func(exceptionlesstest.Account) string {
		return fmt.Sprintf(`
rule "pinned" {
  users      = ["%d"]
  exe_sha256 = ["%s"]
  scopes     = ["user"]
}`, os.Getuid(), sum)
	})
	if r := e.ctl(nil, "token", "--scope", "user"); r.code != 0 {
		t.Fatalf("the pinned binary: exit %d: %s", r.code, r.stderr)
	}
	// Same code, another file with different bytes: a copy with a byte
	// appended (ELF ignores trailing data) is another binary to the policy.
	if code, stderr := e.ctlCopy([]byte{0}, "token", "--scope", "user"); code != 3 {
		t.Errorf("another binary of the same uid: exit %d (%s), want 3", code, stderr)
	}
	if r := e.ctl(nil, "whoami"); !strings.Contains(r.stdout, "sha256 "+sum+" (path not read") {
		t.Errorf("whoami does not show the binary's hash alone:\n%s", r.stdout)
	}
}

// An exe_paths rule matches the binary at that path, not the same bytes
// elsewhere; the daemon then reads the path as well as the hash.
func TestExePathRule(t *testing.T) {
	ctl := filepath.Join(binaries(t), "exlessctl")
	e := startDaemon(t, "", func(exceptionlesstest.Account) string {
		return fmt.Sprintf(`
rule "path" {
  users     = ["%d"]
  exe_paths = ["%s"]
  scopes    = ["user"]
}`, os.Getuid(), ctl)
	})
	if r := e.ctl(nil, "token", "--scope", "user"); r.code != 0 {
		t.Fatalf("the binary at the path: exit %d: %s", r.code, r.stderr)
	}
	if r := e.ctl(nil, "whoami"); !strings.Contains(r.stdout, ctl+" sha256 "+sha256File(t, ctl)) {
		t.Errorf("whoami does not show the path and hash:\n%s", r.stdout)
	}
	if code, stderr := e.ctlCopy(nil, "token", "--scope", "user"); code != 3 {
		t.Errorf("the same bytes at another path: exit %d (%s), want 3", code, stderr)
	}
}

// ctlCopy runs a copy of exlessctl, with extra appended to its bytes, from
// another path, and returns its exit status and stderr.
func (e *daemonEnv) ctlCopy(extra []byte, args ...string) (int, string) {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(binaries(e.t), "exlessctl"))
	if err != nil {
		e.t.Fatal(err)
	}
	other := filepath.Join(e.dir, "exlessctl-copy")
	if err := os.WriteFile(other, append(data, extra...), 0o755); err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(other, args...)
	cmd.Env = []string{"EXLESS_SOCKET=" + e.socket}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err = cmd.Run()
	testrun.Save(e.t, "exlessctl-stderr", errb.String())
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		e.t.Fatalf("run %s: %v", other, err)
	}
	return cmd.ProcessState.ExitCode(), errb.String()
}
