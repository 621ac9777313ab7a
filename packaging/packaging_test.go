package packaging

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/exless/exless/daemon"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = ".."

var built struct {
	once sync.Once
	pkgs map[string]string
	dir  string
	err  error
}

// packages builds the .deb and .rpm once per test binary.
func packages(t *testing.T) map[string]string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "exless-pkg")
		if built.err != nil {
			return
		}
		root, _ := filepath.Abs(repoRoot)
		built.pkgs, built.err = Build(context.Background(), Options{Root: root, OutDir: built.dir})
	})
	if built.err != nil {
		t.Fatalf("building the packages: %v", built.err)
	}
	return built.pkgs
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// requireTool finds a host tool. Under CI=true a missing one is installed
// (as root) or the test fails; elsewhere the test skips and says how.
func requireTool(t *testing.T, tool, debPackage string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err == nil {
		return
	}
	if os.Getenv("CI") != "true" {
		t.Skipf("%s is missing: apt-get install %s (CI=true installs it)", tool, debPackage)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("%s is missing and installing %s needs root", tool, debPackage)
	}
	for _, args := range [][]string{{"-o", "DPkg::Lock::Timeout=300", "update", "-qq"}, {"-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", debPackage}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// wantFiles are what both packages install, with the mode each must have.
var wantFiles = map[string]string{
	"/usr/bin/exlessd":                                   "-rwxr-xr-x",
	"/usr/bin/exlessctl":                                 "-rwxr-xr-x",
	"/usr/lib/systemd/system/exlessd.service":            "-rw-r--r--",
	"/usr/lib/systemd/system/exlessd.socket":             "-rw-r--r--",
	"/usr/lib/systemd/system/exlessd-credentials.socket": "-rw-r--r--",
	"/usr/lib/sysusers.d/exless.conf":                    "-rw-r--r--",
	"/usr/lib/tmpfiles.d/exless.conf":                    "-rw-r--r--",
	"/usr/share/exless/ptrace.conf":                      "-rw-r--r--",
	"/etc/exless/exlessd.hcl":                            "-rw-r-----",
	"/etc/exless/credentials":                            "drwx------",
}

// docFiles are the generated man pages and completions (contrib/), where
// the packages must put them.
func docFiles(t *testing.T) map[string]string {
	t.Helper()
	want := map[string]string{}
	for src, dst := range map[string]string{
		"contrib/man/exlessctl.1":           "/usr/share/man/man1/exlessctl.1",
		"contrib/man/exlessd.8":             "/usr/share/man/man8/exlessd.8",
		"contrib/completion/exlessctl.bash": "/usr/share/bash-completion/completions/exlessctl",
		"contrib/completion/_exlessctl":     "/usr/share/zsh/vendor-completions/_exlessctl",
		"contrib/completion/exlessctl.fish": "/usr/share/fish/vendor_completions.d/exlessctl.fish",
	} {
		if _, err := os.Stat(filepath.Join(repoRoot, src)); err == nil {
			want[dst] = "-rw-r--r--"
		}
	}
	return want
}

func TestDebContents(t *testing.T) {
	deb := packages(t)["deb"]
	// dpkg-deb -c: "-rw-r--r-- root/root 1185 2026-11-28 22:47 ./usr/lib/..."
	got := map[string]string{}
	for _, line := range strings.Split(run(t, "dpkg-deb", "-c", deb), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		if f[1] != "root/root" {
			t.Errorf("%s is owned by %s, want root/root (postinst sets groups)", f[5], f[1])
		}
		got[strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")] = f[0]
	}
	for path, mode := range wantFiles {
		if got[path] != mode {
			t.Errorf("deb: %s has mode %q, want %q", path, got[path], mode)
		}
	}
	for path, mode := range docFiles(t) {
		if got[path] != mode {
			t.Errorf("deb: %s has mode %q, want %q", path, got[path], mode)
		}
	}

	info := run(t, "dpkg-deb", "-I", deb)
	for _, want := range []string{"Package: exless", "procps", "libc6", " postinst ", " prerm ", " postrm ", " conffiles "} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	if conf := run(t, "dpkg-deb", "-f", deb, "Version"); !regexp.MustCompile(`^\d+\.\d+\.\d+`).MatchString(conf) {
		t.Errorf("Version %q does not start like a version number", conf)
	}
	ctl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctl)
	conffiles, _ := os.ReadFile(filepath.Join(ctl, "conffiles"))
	if strings.TrimSpace(string(conffiles)) != "/etc/exless/exlessd.hcl" {
		t.Errorf("conffiles = %q, want only the config", conffiles)
	}
	postinst, _ := os.ReadFile(filepath.Join(ctl, "postinst"))
	// The user must exist before the socket (SocketGroup=exless) starts.
	if u, s := bytes.Index(postinst, []byte("systemd-sysusers")), bytes.Index(postinst, []byte("start exlessd.socket exlessd-credentials.socket")); u < 0 || s < 0 || u > s {
		t.Errorf("postinst must run systemd-sysusers before starting exlessd.socket")
	}
	for name, want := range map[string]string{
		"postinst": `deb-systemd-helper enable "$unit"`,
		"prerm":    "stop exlessd.socket exlessd-credentials.socket exlessd.service",
		"postrm":   "rm -rf /etc/exless/credentials",
	} {
		b, _ := os.ReadFile(filepath.Join(ctl, name))
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", name, want)
		}
	}

	// The daemon is built with cgo, so it is dynamically linked against
	// libc and resolves names through NSS.
	data := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, data)
	f, err := elf.Open(filepath.Join(data, "usr/bin/exlessd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	interp := false
	for _, p := range f.Progs {
		interp = interp || p.Type == elf.PT_INTERP
	}
	if !interp {
		t.Error("exlessd is statically linked; the packages want cgo builds (NSS)")
	}
}

func TestRpmContents(t *testing.T) {
	requireTool(t, "rpm", "rpm")
	pkg := packages(t)["rpm"]
	// %{FILEMODES:perms} and %{FILEFLAGS:fflags}: "c" config, "n" noreplace.
	out := run(t, "rpm", "-qp", "--qf", `[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags}\n]`, pkg)
	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		got[f[0]] = f[1:]
	}
	for path, mode := range wantFiles {
		if len(got[path]) < 2 || got[path][0] != mode || got[path][1] != "root:root" {
			t.Errorf("rpm: %s is %q, want mode %s root:root", path, got[path], mode)
		}
	}
	for path := range docFiles(t) {
		if _, ok := got[path]; !ok {
			t.Errorf("rpm lacks %s", path)
		}
	}
	if f := got["/etc/exless/exlessd.hcl"]; len(f) < 3 || f[2] != "cn" {
		t.Errorf("rpm: the config's flags are %q, want cn (config, noreplace)", f)
	}
	if list := run(t, "rpm", "-qpl", pkg); !strings.Contains(list, "/usr/bin/exlessd\n") {
		t.Errorf("rpm -qpl lacks /usr/bin/exlessd:\n%s", list)
	}
	scripts := run(t, "rpm", "-qp", "--scripts", pkg)
	for _, want := range []string{
		"postinstall scriptlet", "systemd-sysusers exless.conf", "systemctl enable exlessd.socket exlessd-credentials.socket",
		"preuninstall scriptlet", "disable --now exlessd.socket exlessd-credentials.socket exlessd.service",
		"postuninstall scriptlet", "try-restart exlessd.service",
	} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm --scripts lacks %q:\n%s", want, scripts)
		}
	}
	reqs := run(t, "rpm", "-qpR", pkg)
	if !strings.Contains(reqs, "util-linux") {
		t.Errorf("rpm requires lack util-linux (for /bin/kill):\n%s", reqs)
	}
}

func TestShippedConfig(t *testing.T) {
	src, err := os.ReadFile("exlessd.hcl")
	if err != nil {
		t.Fatal(err)
	}
	// Installed as is, exlessd runs "not configured" (see cmd/exlessd).
	if !regexp.MustCompile(`(?m)^configured = false$`).Match(src) {
		t.Fatal("the packaged exlessd.hcl must say configured = false until the site edits it")
	}
	// Without that line it is a complete, valid config.
	stripped := regexp.MustCompile(`(?m)^configured = false$`).ReplaceAll(src, nil)
	path := filepath.Join(t.TempDir(), "exlessd.hcl")
	if err := os.WriteFile(path, stripped, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.LoadConfig(path); err != nil {
		t.Fatalf("the packaged exlessd.hcl, once its marker line is removed, does not load: %v", err)
	}
}

func TestVersion(t *testing.T) {
	v, err := Version(context.Background(), repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+(\+git\d+\.[0-9a-f]{7}(\.dirty)?)?$`).MatchString(v) {
		t.Errorf("Version() = %q, want 1.2.3 or 1.2.3+gitN.abcdef0[.dirty]", v)
	}
}
