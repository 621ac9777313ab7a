// Package buildflags says how exless's binaries are built for shipping, so
// that the packages, the benchmark harness and the end-to-end tests build
// (and measure, and test) the same binaries. The Makefile's build target
// repeats it.
package buildflags

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
)

// Tags leave urfave/cli's man page and markdown generators out: they link
// blackfriday and md2man, whose package init cost every start ~1.4 ms.
// The tests that generate the man pages build without the tag.
const Tags = "urfave_cli_no_docs"

// Static lists the commands built without cgo. exlessctl starts once per
// token, and a static binary skips the dynamic loader and libc: several
// milliseconds. It resolves names through getent(1) instead of NSS calls.
// exlessd keeps cgo, so that its policy's names resolve through NSS.
// The benchmark harness's start-up floors are built like exlessctl, to
// compare like with like.
var Static = map[string]bool{"exlessctl": true, "exless-gofloor": true, "exless-httpfloor": true}

// Build compiles the packages pkgs (import paths or ./cmd/... paths, in
// the module at dir; "" is the current directory) into outDir, with
// ldflags, -trimpath and Tags, cgo on or off as Static says. env is added
// to the go command's environment.
func Build(ctx context.Context, goCmd, dir, outDir, ldflags string, env []string, pkgs ...string) error {
	groups := map[bool][]string{}
	for _, p := range pkgs {
		groups[Static[path.Base(p)]] = append(groups[Static[path.Base(p)]], p)
	}
	for _, static := range []bool{false, true} {
		if len(groups[static]) == 0 {
			continue
		}
		args := []string{"build", "-trimpath", "-tags", Tags, "-ldflags", ldflags, "-o", outDir + "/"}
		cmd := exec.CommandContext(ctx, goCmd, append(args, groups[static]...)...)
		cmd.Dir = dir
		cgo := "CGO_ENABLED=1"
		if static {
			cgo = "CGO_ENABLED=0"
		}
		cmd.Env = append(append(os.Environ(), env...), cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %v: %w\n%s", groups[static], err, out)
		}
	}
	return nil
}
