package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/vaultstore/vaulttest"
)

// startFleet runs n exlessd processes that share one Exceptionless account
// and one Vault path, each on its own socket.
func startFleet(t *testing.T, n int, ex *exceptionlesstest.Server, extra string) []*daemonEnv {
	t.Helper()
	bin, vault := binaries(t), vaulttest.Shared(t)
	secrets := t.TempDir()
	pw := filepath.Join(secrets, "password")
	vt := filepath.Join(secrets, "vault-token")
	mustWrite(t, pw, ex.Account.Password+"\n")
	mustWrite(t, vt, vault.Token)
	path := fmt.Sprintf("exless/fleet-%d", time.Now().UnixNano())
	var fleet []*daemonEnv
	for i := range n {
		e := &daemonEnv{t: t, bin: bin, dir: sharedDir(t), vault: vault, ex: ex}
		e.socket = filepath.Join(e.dir, "exlessd.sock")
		e.config = filepath.Join(secrets, fmt.Sprintf("exlessd-%d.hcl", i))
		mustWrite(t, e.config, fmt.Sprintf(`
socket = %q
%s
exceptionless {
  url           = %q
  email         = %q
  password_file = %q
}
vault {
  address    = %q
  token_file = %q
  path       = %q
}
rule "me" {
  users    = ["%d"]
  scopes   = ["user", "client"]
  projects = ["*"]
  actions  = ["token", "status"]
}
`, e.socket, extra, ex.URL, ex.Account.Email, pw, vault.Addr, vt, path, os.Getuid()))
		fleet = append(fleet, e)
	}
	var wg sync.WaitGroup
	for _, e := range fleet {
		wg.Add(1)
		go func() { defer wg.Done(); e.start() }()
	}
	wg.Wait()
	return fleet
}

func countCalls(ex *exceptionlesstest.Server, method, prefix string) int {
	n := 0
	for _, c := range ex.Calls() {
		if c.Method == method && strings.HasPrefix(c.Path, prefix) {
			n++
		}
	}
	return n
}

func liveTokens(ex *exceptionlesstest.Server, project string) []string {
	var out []string
	for _, ti := range ex.Tokens() {
		if ti.ProjectID == project && ti.Kind == "access" {
			out = append(out, ti.ID)
		}
	}
	return out
}

// Five daemons start cold at once, and every one is asked for the same
// project at once: exactly one login and one mint in all.
func TestFleetOfFiveColdStart(t *testing.T) {
	ex := exceptionlesstest.NewServer(exceptionlesstest.Config{})
	t.Cleanup(ex.Close)
	fleet := startFleet(t, 5, ex, "")
	project := ex.Account.Projects[0].ID
	results := make([]result, len(fleet))
	var wg sync.WaitGroup
	for i, e := range fleet {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.ctl(nil, "token", "--scope", "client", "--project", project)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("daemon %d: exit %d: %s", i, r.code, r.stderr)
		}
		if r.stdout != results[0].stdout {
			t.Fatalf("daemon %d serves another token", i)
		}
	}
	logins, mints := ex.LoginAttempts(), countCalls(ex, "POST", "/api/v2/projects/"+project+"/tokens")
	if logins != 1 || mints != 1 {
		t.Errorf("logins %d, mints %d; want exactly 1 each", logins, mints)
	}
	t.Logf("5 exlessd processes, cold: %d login, %d mint, %d live client tokens", logins, mints, len(liveTokens(ex, project)))
	for _, e := range fleet {
		e.checkNoSecrets()
	}
}

// The lease holder is killed (SIGKILL) after Exceptionless created its
// client token but before it could store it. Another daemon waits out the
// lease, revokes the orphan and mints the one token everybody then uses.
func TestFleetLeaseHolderKilledMidMint(t *testing.T) {
	ex := exceptionlesstest.NewServer(exceptionlesstest.Config{})
	t.Cleanup(ex.Close)
	fleet := startFleet(t, 2, ex, "fleet {\n  lease_ttl = \"2s\"\n}")
	a, b := fleet[0], fleet[1]
	// Both log in (one does, the other adopts) before the test begins.
	for _, e := range fleet {
		if r := e.ctl(nil, "token", "--scope", "user"); r.code != 0 {
			t.Fatalf("user token: %s", r.stderr)
		}
	}
	project := ex.Account.Projects[1].ID
	mintPath := "/api/v2/projects/" + project + "/tokens"
	ex.SetLatency("POST", mintPath, 3*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = a.ctl(nil, "token", "--scope", "client", "--project", project) }()
	// Wait until a's mint has reached the server, then kill it.
	deadline := time.Now().Add(10 * time.Second)
	for countCalls(ex, "POST", mintPath) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("daemon a never minted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.exited
	a.cmd = nil
	ex.SetLatency("POST", mintPath, 0)
	if n := len(liveTokens(ex, project)); n != 1 {
		t.Fatalf("after the kill the server holds %d tokens for the project, want the 1 orphan", n)
	}
	_ = ctx
	start := time.Now()
	r := b.ctl(nil, "token", "--scope", "client", "--project", project)
	if r.code != 0 {
		t.Fatalf("daemon b after the holder died: exit %d: %s", r.code, r.stderr)
	}
	live := liveTokens(ex, project)
	if len(live) != 1 || live[0] != strings.TrimSpace(r.stdout) {
		t.Errorf("live client tokens = %d, want only the one served (the orphan revoked)", len(live))
	}
	t.Logf("b served after %s; mints %d, live tokens %d, logins %d", time.Since(start).Round(10*time.Millisecond),
		countCalls(ex, "POST", mintPath), len(live), ex.LoginAttempts())
}
