package testproc

import (
	"bytes"
	"os"
	"syscall"
	"testing"
)

func TestCopySelfAndPublicDir(t *testing.T) {
	dir := PublicDir(t)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("PublicDir: %v, %v; want mode 0755", fi, err)
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	p, err := CopySelf(dir, "copy", []byte("extra"))
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	want, _ := os.ReadFile(self)
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, append(want, "extra"...)) {
		t.Errorf("copy differs from the test binary plus extra (%v)", err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("copy: %v, %v; want mode 0755 despite the umask", fi, err)
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
}
