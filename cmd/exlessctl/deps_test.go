package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/exless/exless/internal/buildflags"
)

// exlessctl starts once per token, and every package it links runs its
// init on every start: the daemon with its config parser and Prometheus
// client cost ~8 ms of a ~20 ms start here. Offline policy explain runs
// exlessd instead (see explainOffline).
func TestStartupLinksNoDaemon(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", buildflags.Tags, "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{
			"github.com/exless/exless/daemon",
			"github.com/hashicorp/hcl/",
			"github.com/prometheus/",
			"github.com/hashicorp/vault/",
			"github.com/russross/blackfriday/",
		} {
			if pkg == banned || strings.HasPrefix(pkg, banned) && strings.HasSuffix(banned, "/") {
				t.Errorf("exlessctl links %s", pkg)
			}
		}
	}
}
