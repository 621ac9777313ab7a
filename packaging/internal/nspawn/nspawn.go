// Package nspawn boots a Debian rootfs with systemd as PID 1 in
// systemd-nspawn, for tests that need a real systemd: units, sd_notify,
// socket activation, credentials and the packages' maintainer scripts.
//
// It works on hosts whose PID 1 is not systemd (CI sandboxes) by giving
// each container a cgroup of its own and running nspawn with --keep-unit
// --register=no. The rootfs comes from scripts/nspawn.sh (debootstrap,
// cached) and is never changed: containers boot it with
// --volatile=overlay, so several may share it.
package nspawn

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Require returns the cached rootfs, building it (and, under CI=true,
// installing the host tools) when needed. Without root or the tools it
// skips the test with a message saying how to run it; under CI=true it
// fails instead, since a skipped systemd test would be a hole nobody sees.
func Require(t testing.TB, repoRoot string) string {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if ci {
			t.Fatalf("systemd test under CI=true: %s", msg)
		}
		t.Skipf("skipping the systemd-nspawn test: %s (CI=true makes this a failure)", msg)
	}
	if os.Geteuid() != 0 {
		missing("needs root (it boots a container)")
	}
	script := filepath.Join(repoRoot, "scripts", "nspawn.sh")
	if !haveTools() {
		if !ci {
			missing("systemd-nspawn or debootstrap is missing; run scripts/nspawn.sh deps")
		}
		if out, err := exec.Command(script, "deps").CombinedOutput(); err != nil {
			t.Fatalf("installing systemd-container and debootstrap: %v\n%s", err, out)
		}
	}
	cmd := exec.Command(script, "rootfs")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/nspawn.sh rootfs: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func haveTools() bool {
	for _, c := range []string{"systemd-nspawn", "debootstrap", "nsenter"} {
		if _, err := exec.LookPath(c); err != nil {
			return false
		}
	}
	return true
}

// Container is one booted container.
type Container struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	console *os.File
	cgroups []string
	// PID is the container's init (systemd) as the host sees it.
	PID int
}

// Boot starts systemd in a container on rootfs and waits until the system
// is running (or degraded). The container has only a loopback network.
// It is shut down when the test ends; if the test failed, the journal and
// unit states are saved first (see ArtifactsDir).
func Boot(t testing.TB, rootfs string) *Container {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	c := &Container{t: t, name: "exless-" + hex.EncodeToString(b), done: make(chan struct{})}
	var err error
	c.console, err = os.CreateTemp("", "nspawn-console-*.log")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.makeCgroups(); err != nil {
		t.Fatalf("cgroup for the container: %v", err)
	}
	args := []string{
		"-D", rootfs, "--boot", "-M", c.name, "--hostname=exless-test",
		// Both are needed when the host's PID 1 is not systemd: there is
		// no machined to register with, nor a unit to move into.
		"--register=no", "--keep-unit",
		"--volatile=overlay", "--private-network", "--console=read-only", "--settings=no",
	}
	// The shell moves itself into the fresh cgroups, then becomes nspawn.
	script := `for d in "$@"; do [ "$d" = -- ] && break; echo $$ >"$d/cgroup.procs"; done; while [ "$1" != -- ]; do shift; done; shift; exec systemd-nspawn "$@"`
	shArgs := append([]string{"-c", script, "sh"}, c.cgroups...)
	shArgs = append(shArgs, "--")
	shArgs = append(shArgs, args...)
	c.cmd = exec.Command("/bin/sh", shArgs...)
	c.cmd.Stdin = nil
	c.cmd.Stdout = c.console
	c.cmd.Stderr = c.console
	if err := c.cmd.Start(); err != nil {
		c.removeCgroups()
		t.Fatalf("start systemd-nspawn: %v", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.shutdown)

	start := time.Now()
	deadline := start.Add(60 * time.Second)
	state := ""
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			t.Fatalf("systemd-nspawn exited during boot:\n%s", c.consoleLog())
		default:
		}
		if c.PID == 0 {
			c.PID = findInit(c.cmd.Process.Pid)
		}
		if c.PID != 0 {
			out, _ := c.Run("systemctl", "is-system-running")
			state = strings.TrimSpace(out)
			if state == "running" || state == "degraded" {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	switch state {
	case "running":
	case "degraded":
		failed, _ := c.Run("systemctl", "--failed", "--no-legend")
		t.Logf("container booted degraded: %s", failed)
	default:
		t.Fatalf("container did not finish booting in 60s (state %q):\n%s", state, c.consoleLog())
	}
	t.Logf("container %s booted in %.2fs (init pid %d)", c.name, time.Since(start).Seconds(), c.PID)
	return c
}

// findInit returns the container's init: the descendant of nspawn whose pid
// in its own namespace is 1.
func findInit(nspawnPID int) int {
	queue := []int{nspawnPID}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, tf := range tasks {
			b, _ := os.ReadFile(tf)
			for _, f := range strings.Fields(string(b)) {
				child, err := strconv.Atoi(f)
				if err != nil {
					continue
				}
				if nsPIDIsOne(child) {
					return child
				}
				queue = append(queue, child)
			}
		}
	}
	return 0
}

func nsPIDIsOne(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f, ok := strings.CutPrefix(line, "NSpid:"); ok {
			fs := strings.Fields(f)
			return len(fs) > 1 && fs[len(fs)-1] == "1"
		}
	}
	return false
}

// makeCgroups creates a cgroup of its own for the container in each
// hierarchy that systemd uses, so that nspawn (--keep-unit) leaves nothing
// behind in the host's root cgroup.
func (c *Container) makeCgroups() error {
	var dirs []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dirs = []string{"/sys/fs/cgroup/" + c.name}
	} else {
		if _, err := os.Stat("/sys/fs/cgroup/systemd"); err != nil {
			return errors.New("no name=systemd cgroup hierarchy at /sys/fs/cgroup/systemd")
		}
		dirs = []string{"/sys/fs/cgroup/systemd/" + c.name}
		if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.procs"); err == nil {
			dirs = append(dirs, "/sys/fs/cgroup/unified/"+c.name)
		}
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		c.cgroups = append(c.cgroups, d)
	}
	return nil
}

// removeCgroups removes the container's cgroups, deepest first.
func (c *Container) removeCgroups() {
	for _, root := range c.cgroups {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}

// Run runs a command inside the container, in all of its init's
// namespaces, with a clean environment, and returns its combined output.
func (c *Container) Run(args ...string) (string, error) {
	return c.RunEnv(nil, args...)
}

// RunEnv is Run with extra environment variables (KEY=VALUE). Use it, not
// argv, for anything secret.
func (c *Container) RunEnv(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"-t", strconv.Itoa(c.PID), "-a", "env", "-i",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"TERM=dumb", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}, env...)
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Sh runs a bash script inside the container.
func (c *Container) Sh(script string) (string, error) { return c.Run("/bin/bash", "-c", script) }

// MustSh runs a bash script and fails the test if it fails.
func (c *Container) MustSh(script string) string {
	c.t.Helper()
	out, err := c.Sh(script)
	if err != nil {
		c.t.Fatalf("in the container: %s: %v\n%s", script, err, out)
	}
	return out
}

// WriteFile writes a file inside the container (parents created).
func (c *Container) WriteFile(path string, data []byte, mode os.FileMode) {
	c.t.Helper()
	p := filepath.Join(fmt.Sprintf("/proc/%d/root", c.PID), path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		c.t.Fatal(err)
	}
}

// CopyFile copies a host file into the container.
func (c *Container) CopyFile(hostPath, path string, mode os.FileMode) {
	c.t.Helper()
	b, err := os.ReadFile(hostPath)
	if err != nil {
		c.t.Fatal(err)
	}
	c.WriteFile(path, b, mode)
}

// ArtifactsDir is where a failed test's journal goes:
// $EXLESS_ARTIFACTS/<test name>, default dist/test-artifacts/<test name>
// under the working directory's repository (the caller passes its root).
func ArtifactsDir(repoRoot, testName string) string {
	base := os.Getenv("EXLESS_ARTIFACTS")
	if base == "" {
		base = filepath.Join(repoRoot, "dist", "test-artifacts")
	}
	return filepath.Join(base, strings.ReplaceAll(testName, "/", "_"))
}

// SaveArtifacts writes the journal, the unit list and the console log to dir.
func (c *Container) SaveArtifacts(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Logf("artifacts: %v", err)
		return
	}
	save := func(name string, args ...string) {
		out, _ := c.Run(args...)
		_ = os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644)
	}
	save("journal.txt", "journalctl", "-b", "--no-pager", "-o", "short-monotonic")
	save("units.txt", "systemctl", "list-units", "--all", "--no-pager")
	save("failed.txt", "systemctl", "--failed", "--no-pager")
	_ = os.WriteFile(filepath.Join(dir, "console.txt"), []byte(c.consoleLog()), 0o644)
	c.t.Logf("container journal and unit states saved in %s", dir)
}

func (c *Container) consoleLog() string {
	b, _ := os.ReadFile(c.console.Name())
	return string(b)
}

// shutdown powers the container off, kills nspawn if that takes more than
// 30 s, and removes what Boot created.
func (c *Container) shutdown() {
	if c.PID != 0 {
		_, _ = c.Run("systemctl", "poweroff")
	} else {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.t.Logf("systemd-nspawn did not exit 30s after poweroff; killing it")
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	c.removeCgroups()
	_ = os.RemoveAll("/run/systemd/nspawn/propagate/" + c.name)
	c.console.Close()
	os.Remove(c.console.Name())
}
