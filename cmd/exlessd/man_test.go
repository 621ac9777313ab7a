package main

import (
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var updateMan = flag.Bool("update", false, "rewrite contrib/man/exlessd.8")

//go:generate go test -run ^TestManPage$ -update

const manPath = "../../contrib/man/exlessd.8"

// TestManPage regenerates exlessd's man page from its commands and compares
// it with the committed one (which the packages install); -update rewrites it.
func TestManPage(t *testing.T) {
	man, err := newApp(io.Discard, io.Discard).ToManWithSection(8)
	if err != nil {
		t.Fatal(err)
	}
	man = strings.TrimSpace(man) + "\n"
	for _, want := range []string{".TH exlessd 8", "validate", "--config"} {
		if !strings.Contains(man, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	if *updateMan {
		if err := os.WriteFile(manPath, []byte(man), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(manPath)
	if err != nil {
		t.Fatalf("%v (go generate ./cmd/exlessd creates it)", err)
	}
	if string(got) != man {
		t.Errorf("%s differs from what the commands generate; run go generate ./cmd/exlessd and commit it", filepath.Clean(manPath))
	}
	if groff, err := exec.LookPath("groff"); err == nil {
		out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", manPath).CombinedOutput()
		if err != nil || strings.Contains(string(out), "warning") {
			t.Errorf("groff: %v", err)
		}
	}
}
