package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exless/exless/internal/testrun"
)

func TestHitFailsWithoutPrintingTheSecret(t *testing.T) {
	secret := "s3cr3t-planted-in-a-log"
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, testrun.SecretsFile), []byte(hex.EncodeToString([]byte(secret))+"\n"), 0o600)
	os.Mkdir(filepath.Join(dir, "logs"), 0o700)
	os.WriteFile(filepath.Join(dir, "logs", "d.log"), []byte("a\nb "+secret+"\n"), 0o600)

	var out, errb bytes.Buffer
	if code := run([]string{"-dir", dir}, &out, &errb); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	all := out.String() + errb.String()
	for _, s := range []string{secret, hex.EncodeToString([]byte(secret)), secret[:12]} {
		if strings.Contains(all, s) {
			t.Error("the output reveals the secret")
		}
	}
	if want := "logs/d.log:2: secret " + testrun.Fingerprint([]byte(secret)); !strings.Contains(errb.String(), want) {
		t.Errorf("stderr %q lacks %q", errb.String(), want)
	}
	if want := "1 secrets checked across 1 logs, 1 hits"; !strings.Contains(out.String(), want) {
		t.Errorf("stdout %q lacks %q", out.String(), want)
	}

	os.WriteFile(filepath.Join(dir, "logs", "d.log"), []byte("clean\n"), 0o600)
	out.Reset()
	if code := run([]string{"-dir", dir}, &out, &errb); code != 0 {
		t.Errorf("clean run: exit %d", code)
	}
	if want := "1 secrets checked across 1 logs, 0 hits\n"; out.String() != "secretscan: "+want {
		t.Errorf("stdout %q", out.String())
	}
}

func TestEmptyRunFails(t *testing.T) {
	t.Setenv(testrun.EnvDir, "")
	var out, errb bytes.Buffer
	if code := run([]string{"-dir", t.TempDir()}, &out, &errb); code != 1 {
		t.Errorf("exit %d for an empty run dir, want 1", code)
	}
	if code := run(nil, &out, &errb); code != 2 {
		t.Errorf("exit %d without a dir, want 2", code)
	}
}
