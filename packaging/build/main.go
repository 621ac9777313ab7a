// Command build makes the exless .deb and .rpm packages with nfpm, used as
// a Go module so that nothing is downloaded outside the module proxy. Run
// it from the repository root (make package does):
//
//	go run ./packaging/build [-out dist] [-version V] [-arch amd64] [-bindir DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"

	"github.com/exless/exless/packaging"
)

func main() {
	var o packaging.Options
	flag.StringVar(&o.OutDir, "out", "dist", "write the packages to `DIR`")
	flag.StringVar(&o.Version, "version", "", "package version (default: from git)")
	flag.StringVar(&o.Arch, "arch", "", "GOARCH of the package (default: this machine's)")
	flag.StringVar(&o.BinDir, "bindir", "", "use prebuilt exlessd and exlessctl from `DIR` (default: build them with cgo)")
	flag.Parse()
	o.Root = "."
	pkgs, err := packaging.Build(context.Background(), o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n", err)
		os.Exit(1)
	}
	formats := make([]string, 0, len(pkgs))
	for f := range pkgs {
		formats = append(formats, f)
	}
	sort.Strings(formats)
	for _, f := range formats {
		fmt.Println(pkgs[f])
	}
}
