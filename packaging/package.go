package packaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager

	"github.com/exless/exless/internal/buildflags"
)

// Formats are the package formats Build makes.
var Formats = []string{"deb", "rpm"}

// Options say what Build makes.
type Options struct {
	// Root is the repository root; nfpm.yaml's paths are relative to it.
	Root string
	// OutDir receives the packages (created if missing).
	OutDir string
	// Version is the package version; empty: Version(Root).
	Version string
	// Arch is a Go GOARCH; empty: runtime.GOARCH.
	Arch string
	// BinDir, when set, holds prebuilt exlessd and exlessctl; else Build
	// compiles them (with cgo) into a temporary directory.
	BinDir string
}

// Build compiles the binaries (unless Options.BinDir) and writes one package
// per format to OutDir. It returns the packages' paths, by format.
func Build(ctx context.Context, o Options) (map[string]string, error) {
	if o.Root == "" {
		return nil, errors.New("packaging: Options.Root is required")
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Version == "" {
		v, err := Version(ctx, o.Root)
		if err != nil {
			return nil, err
		}
		o.Version = v
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	if o.BinDir == "" {
		tmp, err := os.MkdirTemp("", "exless-bin")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if err := buildBinaries(ctx, o.Root, tmp, o.Version, o.Arch); err != nil {
			return nil, err
		}
		o.BinDir = tmp
	}
	binDir, err := filepath.Abs(o.BinDir)
	if err != nil {
		return nil, err
	}

	env := map[string]string{"VERSION": o.Version, "GOARCH": o.Arch, "BINDIR": binDir}
	cfg, err := nfpm.ParseFileWithEnvMapping(filepath.Join(o.Root, "packaging", "nfpm.yaml"), func(k string) string { return env[k] })
	if err != nil {
		return nil, fmt.Errorf("nfpm.yaml: %w", err)
	}
	out := map[string]string{}
	for _, format := range Formats {
		info, err := cfg.Get(format)
		if err != nil {
			return nil, fmt.Errorf("nfpm.yaml for %s: %w", format, err)
		}
		// Reproducible archives: every file gets the time of the commit,
		// not of the build.
		info.MTime = commitTime(ctx, o.Root)
		absolutize(o.Root, info)
		extra, err := optionalContents(o.Root)
		if err != nil {
			return nil, err
		}
		info.Contents = append(info.Contents, extra...)
		if err := nfpm.PrepareForPackager(info, format); err != nil {
			return nil, fmt.Errorf("%s: %w", format, err)
		}
		pkgr, err := nfpm.Get(format)
		if err != nil {
			return nil, err
		}
		name := filepath.Join(o.OutDir, pkgr.ConventionalFileName(info))
		if err := writePackage(pkgr, info, name); err != nil {
			return nil, fmt.Errorf("%s: %w", format, err)
		}
		out[format] = name
	}
	return out, nil
}

func writePackage(pkgr nfpm.Packager, info *nfpm.Info, name string) error {
	f, err := os.Create(name + ".partial")
	if err != nil {
		return err
	}
	if err := pkgr.Package(nfpm.WithDefaults(info), f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// absolutize makes the sources and scripts of info relative to root, so
// that Build works from any working directory (tests run in packaging/).
func absolutize(root string, info *nfpm.Info) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root, p)
	}
	for _, c := range info.Contents {
		if c.Type != files.TypeDir && c.Type != files.TypeSymlink {
			c.Source = abs(c.Source)
		}
	}
	s := &info.Scripts
	s.PreInstall, s.PostInstall, s.PreRemove, s.PostRemove = abs(s.PreInstall), abs(s.PostInstall), abs(s.PreRemove), abs(s.PostRemove)
}

// optionalContents packages the generated documentation when present:
// man pages in contrib/man/ (NAME.SECTION, e.g. exlessctl.1, exlessd.8) and
// shell completions in contrib/completion/ (CMD.bash, _CMD or CMD.zsh,
// CMD.fish), each where its tool looks for it. A new page or completion
// needs no change here.
func optionalContents(root string) (files.Contents, error) {
	var out files.Contents
	add := func(src, dst string) {
		out = append(out, &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	}
	mans, err := filepath.Glob(filepath.Join(root, "contrib", "man", "*.[1-8]"))
	if err != nil {
		return nil, err
	}
	for _, m := range mans {
		section := strings.TrimPrefix(filepath.Ext(m), ".")
		add(m, "/usr/share/man/man"+section+"/"+filepath.Base(m))
	}
	comps, err := filepath.Glob(filepath.Join(root, "contrib", "completion", "*"))
	if err != nil {
		return nil, err
	}
	for _, c := range comps {
		base := filepath.Base(c)
		switch cmd := strings.TrimSuffix(base, filepath.Ext(base)); {
		case filepath.Ext(base) == ".bash":
			add(c, "/usr/share/bash-completion/completions/"+cmd)
		case filepath.Ext(base) == ".zsh":
			add(c, "/usr/share/zsh/vendor-completions/_"+cmd)
		case strings.HasPrefix(base, "_") && filepath.Ext(base) == "":
			add(c, "/usr/share/zsh/vendor-completions/"+base)
		case filepath.Ext(base) == ".fish":
			add(c, "/usr/share/fish/vendor_completions.d/"+cmd+".fish")
		}
	}
	return out, nil
}

// buildBinaries compiles exlessd with cgo, so that names in the policy
// resolve through NSS (LDAP, SSSD), not only /etc/passwd, and exlessctl as
// buildflags says (static; it asks getent for names).
func buildBinaries(ctx context.Context, root, dir, version, arch string) error {
	if arch != runtime.GOARCH {
		return fmt.Errorf("cgo builds are native only: cannot build %s binaries on %s; pass prebuilt ones (-bindir)", arch, runtime.GOARCH)
	}
	return buildflags.Build(ctx, "go", root, dir, "-s -w -X main.version="+version, []string{"GOARCH=" + arch},
		"./cmd/exlessd", "./cmd/exlessctl")
}

// Version derives a package version from git: "1.2.3" on a tag v1.2.3,
// "1.2.3+git4.abcdef0" four commits after it, "0.0.0+git57.abcdef0" with no
// tag at all, and ".dirty" appended for uncommitted changes. The commit
// count makes later builds sort higher for dpkg and rpm.
func Version(ctx context.Context, root string) (string, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	sha, err := git("rev-parse", "--short=7", "HEAD")
	if err != nil {
		return "", fmt.Errorf("package version from git: %w", err)
	}
	dirty := ""
	if st, err := git("status", "--porcelain", "--untracked-files=no"); err == nil && st != "" {
		dirty = ".dirty"
	}
	if d, err := git("describe", "--tags", "--long", "--match", "v[0-9]*"); err == nil {
		// v1.2.3-4-gabcdef0
		parts := strings.Split(d, "-")
		if len(parts) >= 3 {
			base := strings.TrimPrefix(strings.Join(parts[:len(parts)-2], "-"), "v")
			n := parts[len(parts)-2]
			if n == "0" && dirty == "" {
				return base, nil
			}
			return base + "+git" + n + "." + sha + dirty, nil
		}
	}
	n, err := git("rev-list", "--count", "HEAD")
	if err != nil {
		return "", fmt.Errorf("package version from git: %w", err)
	}
	return "0.0.0+git" + n + "." + sha + dirty, nil
}

func commitTime(ctx context.Context, root string) time.Time {
	cmd := exec.CommandContext(ctx, "git", "log", "-1", "--format=%ct")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return time.Now()
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Now()
	}
	return time.Unix(sec, 0).UTC()
}
