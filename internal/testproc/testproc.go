// Package testproc holds what tests need to run real processes as other
// users: a root check that fails under CI instead of skipping, short
// directories every uid can traverse, and copies of the test binary that
// every uid can execute (a test binary re-run as a peer is the usual way
// a test gets a process under another uid, group or cgroup).
package testproc

import (
	"os"
	"path/filepath"
	"testing"
)

// RequireRoot skips t unless it runs as root, or fails it under CI=true,
// where every test must run. why says what root is needed for.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs root (%s); CI must run as root", why)
	}
	t.Skipf("needs root (%s); CI runs it", why)
}

// RequireAbility skips t, or fails it under CI=true, when err says the
// machine cannot do what the test needs.
func RequireAbility(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s: %v (CI must be able to)", what, err)
	}
	t.Skipf("%s: %v", what, err)
}

// MakePublicDir makes a short directory under the temp dir that other uids
// can traverse (a socket's path must fit sun_path's 108 bytes). The caller
// removes it.
func MakePublicDir() (string, error) {
	d, err := os.MkdirTemp("", "exl-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(d, 0o755); err != nil {
		os.RemoveAll(d)
		return "", err
	}
	return d, nil
}

// PublicDir is MakePublicDir, removed when t ends.
func PublicDir(t testing.TB) string {
	t.Helper()
	d, err := MakePublicDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// CopyFile writes src's bytes and then extra to dst, mode 0755, through a
// temporary name renamed into place (so a process never runs it half
// written, and a rename over a running binary leaves that one intact).
func CopyFile(dst, src string, extra []byte) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, append(data, extra...), 0o755); err != nil {
		return err
	}
	// WriteFile's mode is cut by the umask.
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// CopySelf copies the running test binary to dir/name, with extra
// appended (to make a binary that hashes differently), and returns its
// path.
func CopySelf(dir, name string, extra []byte) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, name)
	return dst, CopyFile(dst, self, extra)
}
