package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"exlessd"}, args...), &out, &out)
	return out.String(), err
}

func TestVersionCommand(t *testing.T) {
	out, err := runCmd(t, "version")
	if err != nil || out != "exlessd dev\n" {
		t.Errorf("exlessd version = %q, %v", out, err)
	}
}

func TestConfigValidate(t *testing.T) {
	e := newTestEnv(t)
	e.writeConfig(myRule())

	t.Run("ok", func(t *testing.T) {
		// Outside systemd there is no credentials directory: the bare
		// names are reported, not checked.
		t.Setenv("CREDENTIALS_DIRECTORY", "")
		out, err := runCmd(t, "config", "validate", "--config", e.config)
		if err != nil {
			t.Fatalf("validate: %v\n%s", err, out)
		}
		for _, want := range []string{"syntax and values ok", "policy: 1 rules compile", `systemd credential "exceptionless-password"`} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("online", func(t *testing.T) {
		t.Setenv("CREDENTIALS_DIRECTORY", e.credDir)
		out, err := runCmd(t, "--config", e.config, "config", "validate", "--online")
		if err != nil {
			t.Fatalf("validate --online: %v\n%s", err, out)
		}
		for _, want := range []string{"exceptionless.password_file: " + e.credDir + "/exceptionless-password is readable", "vault: reachable, token accepted"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, e.vault.Token) || strings.Contains(out, e.ex.Account.Password) {
			t.Error("validate printed a secret")
		}
	})
	t.Run("online_bad_token", func(t *testing.T) {
		creds := t.TempDir()
		writeFile(t, filepath.Join(creds, "exceptionless-password"), "pw")
		writeFile(t, filepath.Join(creds, "vault-token"), "not-a-token")
		t.Setenv("CREDENTIALS_DIRECTORY", creds)
		_, err := runCmd(t, "config", "validate", "--config", e.config, "--online")
		if err == nil || !strings.Contains(err.Error(), "vault") {
			t.Errorf("validate --online with a bad token: %v, want a vault error", err)
		}
	})
	t.Run("bad_file", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.hcl")
		writeFile(t, bad, "socket = \"relative\"\n")
		_, err := runCmd(t, "config", "validate", "--config", bad)
		var ce *configError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "socket") {
			t.Errorf("validate of a bad file: %v, want a configError naming socket", err)
		}
	})
	t.Run("not_configured", func(t *testing.T) {
		// The file the package ships.
		_, err := runCmd(t, "config", "validate", "--config", "../../packaging/exlessd.hcl")
		if err == nil || !strings.Contains(err.Error(), "configured = false") {
			t.Errorf("validate of the shipped example: %v, want it to say configured = false", err)
		}
	})
}

func TestParseConfigMarkerAndCredentials(t *testing.T) {
	src := []byte(`configured = false
socket = "/run/x.sock"
exceptionless {
  url = "https://e.example"
  email = "a@example.com"
  password_file = "pw"
}
vault {
  address = "https://v.example"
  token_file = "/abs/token"
  path = "p"
}
`)
	t.Setenv("CREDENTIALS_DIRECTORY", "/run/credentials/exlessd.service")
	lc, err := parseConfig("/etc/exless/exlessd.hcl", src)
	if err != nil || lc.Configured || lc.Socket != "/run/x.sock" {
		t.Fatalf("marker: Configured=%v Socket=%q err=%v", lc.Configured, lc.Socket, err)
	}
	complete := bytes.Replace(src, []byte("configured = false"), []byte("configured = true"), 1)
	lc, err = parseConfig("/etc/exless/exlessd.hcl", complete)
	if err != nil || !lc.Configured {
		t.Fatalf("configured = true: %v", err)
	}
	if lc.Exceptionless.PasswordFile != "/run/credentials/exlessd.service/pw" {
		t.Errorf("a bare name resolves to %q, want it in $CREDENTIALS_DIRECTORY", lc.Exceptionless.PasswordFile)
	}
	if lc.Vault.TokenFile != "/abs/token" {
		t.Errorf("an absolute path became %q", lc.Vault.TokenFile)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	lc, _ = parseConfig("/etc/exless/exlessd.hcl", complete)
	if lc.Exceptionless.PasswordFile != "/etc/exless/pw" {
		t.Errorf("without $CREDENTIALS_DIRECTORY a bare name is %q, want it next to the config", lc.Exceptionless.PasswordFile)
	}
	// Errors keep pointing at the right line after the marker is blanked.
	_, err = parseConfig("f.hcl", []byte("configured = true\nsocket = 3 +\n"))
	if err == nil || !strings.Contains(err.Error(), "f.hcl:2") {
		t.Errorf("syntax error = %v, want it on line 2", err)
	}
	_, err = parseConfig("f.hcl", []byte("configured = \"no\"\n"))
	if err == nil || !strings.Contains(err.Error(), "must be true or false") {
		t.Errorf("configured = \"no\": %v", err)
	}
}

func TestConfigErrorExitStatusMatchesUnit(t *testing.T) {
	// main maps configError to EX_CONFIG; the unit's
	// RestartPreventExitStatus= names the same number.
	unit, err := os.ReadFile("../../systemd/exlessd.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "RestartPreventExitStatus=78") || exitConfig != 78 {
		t.Error("exlessd.service and exitConfig disagree about the config-error exit status")
	}
}
