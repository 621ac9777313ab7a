package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exless/exless/internal/testrun"
)

// TestHarnessSmoke runs the whole harness with tiny durations, so that
// `make test` proves it still builds, starts and measures everything. It
// asserts what ran and what was written, never how fast anything was.
func TestHarnessSmoke(t *testing.T) {
	out := t.TempDir()
	var table, progress bytes.Buffer
	cfg := Config{
		Duration: 50 * time.Millisecond, Warmup: 10 * time.Millisecond, Concurrency: []int{1, 8},
		Rounds: 1, Conns: []string{ConnKeepAlive, ConnNew}, CLIRuns: 2, Projects: 20, PolicyRules: 1000,
		OutDir: out, Out: &table, Progress: &progress, Go: "go",
		SaveLog: func(name string, log []byte) { testrun.Save(t, name, string(log)) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}

	// Every server at every concurrency, keep-alive and new connection
	// (Vault keep-alive only), answered without an error.
	want := map[string]bool{}
	for _, c := range []string{"1", "8"} {
		for _, s := range []string{"floor", "exless/uid", "exless/exe"} {
			want[s+" keepalive "+c] = true
			want[s+" new "+c] = true
		}
		want["vault keepalive "+c] = true
	}
	for _, r := range rep.Runs {
		k := r.Label() + " " + r.Conn + " " + strconv.Itoa(r.Concurrency)
		if !want[k] {
			t.Errorf("unexpected or repeated run %s", k)
		}
		delete(want, k)
		if r.Requests == 0 || r.Errors != 0 {
			t.Errorf("run %s: %d requests, %d errors (first: %s)", k, r.Requests, r.Errors, r.FirstError)
		}
	}
	for k := range want {
		t.Errorf("run %s missing", k)
	}
	// exlessd runs with its unit's environment.
	if !slices.ContainsFunc(rep.Meta.DaemonEnv, func(kv string) bool { return strings.HasPrefix(kv, "GOMEMLIMIT=") }) {
		t.Errorf("exlessd environment %q lacks the unit's GOMEMLIMIT", rep.Meta.DaemonEnv)
	}
	for _, name := range []string{"Go floor", "Go net/http floor"} {
		if _, ok := rep.cli(name); !ok {
			t.Errorf("no %s among the whole-process timings", name)
		}
	}
	if len(rep.CLI) < 3 {
		t.Errorf("CLI results: %d, want exlessctl token and --version and vault at least", len(rep.CLI))
	}
	for _, c := range rep.CLI {
		if c.Errors != 0 || c.Runs != cfg.CLIRuns {
			t.Errorf("%s: %d runs, %d errors (first: %s)", c.Name, c.Runs, c.Errors, c.FirstError)
		}
	}
	if len(rep.Memory) != 3 {
		t.Fatalf("memory results: %d, want 3", len(rep.Memory))
	}
	for _, m := range rep.Memory[1:] {
		// The seeded project the load runs warmed comes on top.
		if m.Tokens < cfg.Projects || m.RSS <= 0 {
			t.Errorf("memory %q: %d tokens, RSS %d", m.State, m.Tokens, m.RSS)
		}
	}
	if len(rep.Policy) != 3 {
		t.Errorf("policy results: %d, want 3", len(rep.Policy))
	}
	if len(rep.Targets) != 9 {
		t.Errorf("targets: %d, want the issue's 9", len(rep.Targets))
	}
	if rep.Meta.ExeAttestation == "" {
		t.Error("the report does not say whether executables were hashed")
	}

	// The files: JSON that reads back, and an SVG.
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(back.Runs) != len(rep.Runs) {
		t.Errorf("results.json has %d runs, want %d", len(back.Runs), len(rep.Runs))
	}
	svg, err := os.ReadFile(filepath.Join(out, "latency.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.HasSuffix(bytes.TrimSpace(svg), []byte("</svg>")) {
		t.Error("latency.svg is not an SVG document")
	}
	for _, s := range []string{"p50", "p99.9", "req/s", "whole process", "exlessd memory", "policy evaluation", "target"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("the table lacks %q", s)
		}
	}
}
