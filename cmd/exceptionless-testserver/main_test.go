package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/internal/testrun"
)

// TestRunServesSeededAccount runs the server in-process, waits for the
// ready file, logs in with the generated password and stops it by
// cancelling (what SIGINT does).
func TestRunServesSeededAccount(t *testing.T) {
	dir := t.TempDir()
	pwFile, readyFile := filepath.Join(dir, "pw"), filepath.Join(dir, "ready.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"-write-password-file", pwFile, "-ready-file", readyFile, "-email", "demo@example.test"}, &stderr)
	}()
	r := waitReady(t, readyFile, done)
	if r.Email != "demo@example.test" || len(r.Projects) != 2 || r.Projects[0].Name != "web" || r.OrganizationID == "" {
		t.Fatalf("ready file %+v", r)
	}
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(pwFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v, want 0600", fi.Mode().Perm())
	}
	c, err := exceptionless.New(r.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Login(context.Background(), r.Email, bytes.TrimSpace(pw)); err != nil {
		t.Fatalf("login with the written password: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	testrun.Save(t, "testserver-stderr", stderr.String())
	if strings.Contains(stderr.String(), strings.TrimSpace(string(pw))) {
		t.Fatal("the password was logged")
	}
}

func TestRunReadsPasswordFile(t *testing.T) {
	dir := t.TempDir()
	pwFile, readyFile := filepath.Join(dir, "pw"), filepath.Join(dir, "ready.json")
	os.WriteFile(pwFile, []byte("given-password\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-password-file", pwFile, "-ready-file", readyFile}, &bytes.Buffer{})
	}()
	r := waitReady(t, readyFile, done)
	c, _ := exceptionless.New(r.URL, nil)
	if _, err := c.Login(context.Background(), r.Email, []byte("given-password")); err != nil {
		t.Fatalf("login: %v", err)
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{}, // no way to know the password
		{"-password-file", "x", "extra"},
		{"-nope"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

// TestSignalExitsZero builds the binary and stops it with SIGTERM.
func TestSignalExitsZero(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "testserver")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	readyFile := filepath.Join(dir, "ready.json")
	cmd := exec.Command(bin, "-write-password-file", filepath.Join(dir, "pw"), "-ready-file", readyFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitReady(t, readyFile, done)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("no exit after SIGTERM")
	}
}

func waitReady(t *testing.T, path string, done <-chan error) ready {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			var r ready
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("ready file %q: %v", b, err)
			}
			return r
		}
		select {
		case err := <-done:
			t.Fatalf("server exited early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("no ready file")
	return ready{}
}
