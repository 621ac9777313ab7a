package vaulttest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/internal/testrun"
)

func TestMain(m *testing.M) { Main(m) }

func TestStartStop(t *testing.T) {
	t0 := time.Now()
	s := Start(t)
	t.Logf("started in %s", time.Since(t0).Round(time.Millisecond))
	if !strings.HasPrefix(s.Addr, "http://127.0.0.1:") {
		t.Errorf("Addr = %q, want http://127.0.0.1:PORT", s.Addr)
	}
	if !s.Healthy() {
		t.Fatal("server not healthy after Start")
	}
	if err := syscall.Kill(s.PID, 0); err != nil {
		t.Fatalf("kill(%d, 0) = %v, want the process alive", s.PID, err)
	}

	t1 := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %s", time.Since(t1).Round(time.Millisecond))
	// Stop reaps the process, so the pid no longer names anything (not even
	// a zombie) unless the kernel reused it within microseconds.
	if err := syscall.Kill(s.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(%d, 0) after Stop = %v, want ESRCH", s.PID, err)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(s.PID))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/proc/%d after Stop: %v, want it gone", s.PID, err)
	}
	if s.Healthy() {
		t.Error("server still answers after Stop")
	}
	if err := s.Stop(); err != nil { // idempotent, as Start's cleanup calls it again
		t.Errorf("second Stop: %v", err)
	}
}

func TestSharedAndDo(t *testing.T) {
	s := Shared(t)
	if s2 := Shared(t); s2 != s {
		t.Fatal("Shared returned a second server")
	}
	ctx := context.Background()
	code, _, err := s.Do(ctx, http.MethodPost, "secret/data/vaulttest/do", map[string]any{
		"data": map[string]any{"k": "v"},
	})
	if err != nil || code != http.StatusOK {
		t.Fatalf("write: code %d, err %v", code, err)
	}
	code, out, err := s.Do(ctx, http.MethodGet, "secret/data/vaulttest/do", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("read: code %d, err %v", code, err)
	}
	data, _ := out["data"].(map[string]any)
	inner, _ := data["data"].(map[string]any)
	if inner["k"] != "v" {
		t.Errorf("read back %v, want k=v", inner)
	}
	code, _, err = s.Do(ctx, http.MethodGet, "secret/data/vaulttest/absent", nil)
	if err != nil || code != http.StatusNotFound {
		t.Errorf("read absent: code %d, err %v, want 404", code, err)
	}
}

func TestEnv(t *testing.T) {
	s := &Server{Addr: "http://127.0.0.1:1", Token: "tok"}
	got := strings.Join(s.Env(), " ")
	if want := "VAULT_ADDR=http://127.0.0.1:1 VAULT_TOKEN=tok"; got != want {
		t.Errorf("Env() = %q, want %q", got, want)
	}
}

func TestBinaryMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-vault")
	t.Setenv("EXLESS_VAULT_BIN", missing)
	_, err := Binary()
	if err == nil {
		t.Fatal("Binary() with a missing file: no error")
	}
	for _, want := range []string{missing, "make vault", "scripts/vault.sh build", "never skip"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Binary() error %q does not mention %q", err, want)
		}
	}
}

func TestCacheDir(t *testing.T) {
	for _, tc := range []struct {
		name              string
		exless, xdg, home string
		want              string
	}{
		{name: "exless", exless: "/c/x", xdg: "/x", home: "/h", want: "/c/x"},
		{name: "xdg", xdg: "/x", home: "/h", want: "/x/exless"},
		{name: "home", home: "/h", want: "/h/.cache/exless"},
		{name: "empty means unset", exless: "", xdg: "", home: "/h", want: "/h/.cache/exless"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("EXLESS_CACHE_DIR", tc.exless)
			t.Setenv("XDG_CACHE_HOME", tc.xdg)
			t.Setenv("HOME", tc.home)
			got, err := cacheDir()
			if err != nil || got != tc.want {
				t.Errorf("cacheDir() = %q, %v, want %q", got, err, tc.want)
			}
		})
	}
}

func TestServerEnvDropsVault(t *testing.T) {
	t.Setenv("VAULT_DEV_ROOT_TOKEN_ID", "x")
	t.Setenv("VAULT_ADDR", "http://elsewhere")
	env := serverEnv("/home/v", "/tmp/v")
	for _, kv := range env {
		if strings.HasPrefix(kv, "VAULT_") {
			t.Errorf("server env keeps %q", kv)
		}
	}
	joined := strings.Join(env, "\n")
	if !strings.Contains(joined, "HOME=/home/v") || !strings.Contains(joined, "TMPDIR=/tmp/v") {
		t.Errorf("server env lacks its own HOME/TMPDIR: %q", joined)
	}
}

func TestStartRetriesTakenPort(t *testing.T) {
	// Hold a port so that the first attempt collides, as when another
	// process grabs the port between our probe and Vault's bind.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPort = func() (int, error) {
		calls++
		if calls == 1 {
			return busyPort, nil
		}
		return freePortPair()
	}
	t.Cleanup(func() { pickPort = freePortPair })

	s := Start(t)
	if calls < 2 {
		t.Fatalf("port picked %d times, want a retry after the clash", calls)
	}
	if s.Addr == "http://127.0.0.1:"+strconv.Itoa(busyPort) || !s.Healthy() {
		t.Errorf("server at %s (busy port %d), healthy %t", s.Addr, busyPort, s.Healthy())
	}
}

func TestLogTailMasksSecrets(t *testing.T) {
	s := &Server{Token: "root-abc123", logPath: filepath.Join(t.TempDir(), "vault.log")}
	log := "Unseal Key: c2VjcmV0LXVuc2VhbA==\nRoot Token: root-abc123\nready\n"
	if err := os.WriteFile(s.logPath, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got := s.logTail()
	if strings.Contains(got, "root-abc123") || strings.Contains(got, "c2VjcmV0LXVuc2VhbA==") {
		t.Errorf("logTail leaks a secret:\n%s", got)
	}
	if !strings.Contains(got, "ready") || !strings.Contains(got, "Root Token: [REDACTED]") {
		t.Errorf("logTail lost the rest of the log:\n%s", got)
	}
}

// TestSecretsRegistered: the root token and every token a test creates
// through Do are listed in the run directory for the end-of-run scan.
func TestSecretsRegistered(t *testing.T) {
	t.Setenv(testrun.EnvDir, t.TempDir())
	s := Start(t)
	_, out, err := s.Do(t.Context(), http.MethodPost, "auth/token/create", map[string]any{"ttl": "1m"})
	if err != nil {
		t.Fatal(err)
	}
	child, _ := out["auth"].(map[string]any)["client_token"].(string)
	got, err := testrun.Registered(testrun.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if !got[s.Token] || child == "" || !got[child] {
		t.Errorf("registered %d secrets; root token listed %v, child token listed %v", len(got), got[s.Token], got[child])
	}
}
