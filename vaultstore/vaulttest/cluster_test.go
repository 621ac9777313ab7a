package vaulttest

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestPersistentRestartKeepsData(t *testing.T) {
	t0 := time.Now()
	n := StartPersistent(t)
	t.Logf("persistent server ready in %s", time.Since(t0).Round(time.Millisecond))
	ctx := t.Context()
	code, _, err := n.Do(ctx, http.MethodPost, "secret/data/vaulttest/keep", map[string]any{"data": map[string]any{"k": "v"}})
	if err != nil || code != http.StatusOK {
		t.Fatalf("write: %d, %v", code, err)
	}
	pid := n.PID()

	t1 := time.Now()
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart (stop, start, unseal) took %s", time.Since(t1).Round(time.Millisecond))
	if n.PID() == pid || n.PID() == 0 {
		t.Errorf("pid after restart = %d, before %d: want a new process", n.PID(), pid)
	}
	code, out, err := n.Do(ctx, http.MethodGet, "secret/data/vaulttest/keep", nil)
	data, _ := out["data"].(map[string]any)
	inner, _ := data["data"].(map[string]any)
	if err != nil || code != http.StatusOK || inner["k"] != "v" {
		t.Fatalf("read after restart: %d, %v, %v; want the data kept", code, err, inner)
	}

	// Sealed: Vault answers 503, which is what a store must fail over on.
	if err := n.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := n.Status(); code != http.StatusServiceUnavailable {
		t.Errorf("status of a sealed node = %d, want 503", code)
	}
	if err := n.Unseal(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoSecretsOnDisk(t, n)
}

// assertNoSecretsOnDisk checks that the node's config and log never hold the
// root token or the unseal key, and that argv never did (the config path
// only).
func assertNoSecretsOnDisk(t *testing.T, n *Node) {
	t.Helper()
	tok, key := n.keys.get()
	for _, f := range []string{n.cfgPath, n.logPath} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), tok) || strings.Contains(string(b), key) {
			t.Errorf("%s holds a secret", f)
		}
	}
	n.mu.Lock()
	args := strings.Join(n.srv.proc.Args(), " ")
	n.mu.Unlock()
	if strings.Contains(args, tok) || strings.Contains(args, key) {
		t.Error("argv holds a secret")
	}
}

func TestClusterKillLeader(t *testing.T) {
	t0 := time.Now()
	c := StartCluster(t, 3)
	t.Logf("3-node raft cluster ready in %s", time.Since(t0).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	leader, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	standbys := 0
	for _, n := range c.Nodes {
		if code, _ := n.Status(); code == http.StatusTooManyRequests {
			standbys++
		}
	}
	if standbys != 2 {
		t.Errorf("%d standbys, want 2", standbys)
	}
	code, _, err := c.Do(ctx, http.MethodPost, "secret/data/vaulttest/raft", map[string]any{"data": map[string]any{"k": "v"}})
	if err != nil || code != http.StatusOK {
		t.Fatalf("write: %d, %v", code, err)
	}

	killed, next, took, err := c.KillLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed leader %s; %s active after %s", killed.ID, next.ID, took.Round(time.Millisecond))
	if killed != leader || next == killed || killed.Running() {
		t.Errorf("killed %s (leader was %s), new leader %s, killed still running: %t", killed.ID, leader.ID, next.ID, killed.Running())
	}
	code, out, err := next.Do(ctx, http.MethodGet, "secret/data/vaulttest/raft", nil)
	data, _ := out["data"].(map[string]any)
	inner, _ := data["data"].(map[string]any)
	if err != nil || code != http.StatusOK || inner["k"] != "v" {
		t.Fatalf("read from the new leader: %d, %v, %v", code, err, inner)
	}

	// The killed node comes back, is unsealed and rejoins as a standby.
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	if code, _ := killed.Status(); code != http.StatusTooManyRequests {
		t.Errorf("restarted node status %d, want 429 (standby)", code)
	}
	for _, n := range c.Nodes {
		assertNoSecretsOnDisk(t, n)
	}
}
