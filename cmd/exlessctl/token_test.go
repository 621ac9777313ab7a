package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/exless/exless/daemon"
)

func TestTokenFormats(t *testing.T) {
	d := newFakeDaemon(t)
	tok := newToken(t)
	want := d.serveToken(tok)
	const project = "0123456789abcdef01234567"
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, stdout string)
	}{
		{"raw by default", []string{"token", "--scope", "user"}, func(t *testing.T, out string) {
			if out != tok+"\n" {
				t.Errorf("stdout is not the token and a newline (%d bytes)", len(out))
			}
		}},
		{"raw", []string{"token", "--scope", "client", "--project", project, "--format", "raw"}, func(t *testing.T, out string) {
			if out != tok+"\n" {
				t.Errorf("stdout is not the token and a newline (%d bytes)", len(out))
			}
		}},
		{"json", []string{"token", "--scope", "user", "--format", "json"}, func(t *testing.T, out string) {
			var got daemon.TokenResponse
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("stdout is not JSON: %v", err)
			}
			if got.Token != want.Token {
				t.Errorf("json token differs from the daemon's")
			}
			if got.Scope != want.Scope || got.ObtainedBy != want.ObtainedBy || !got.ObtainedAt.Equal(*want.ObtainedAt) || got.CacheAgeSeconds != want.CacheAgeSeconds {
				t.Errorf("json record differs from the daemon's in its metadata")
			}
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Errorf("json is not one line")
			}
		}},
		{"env", []string{"token", "--scope", "user", "--format", "env"}, func(t *testing.T, out string) {
			if out != "EXCEPTIONLESS_API_KEY="+tok+"\n" {
				t.Errorf("stdout is not an EXCEPTIONLESS_API_KEY= line")
			}
		}},
		{"project by name", []string{"token", "--scope", "client", "--project", "Acme/web site"}, func(t *testing.T, out string) {
			if out != tok+"\n" {
				t.Errorf("stdout is not the token and a newline (%d bytes)", len(out))
			}
		}},
		{"env with a name", []string{"token", "--scope", "user", "--format", "env", "--env-name", "MY_KEY_2"}, func(t *testing.T, out string) {
			if out != "MY_KEY_2="+tok+"\n" {
				t.Errorf("stdout is not a MY_KEY_2= line")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(t, append([]string{"--socket", d.socket}, tc.args...)...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			tc.check(t, r.stdout)
		})
	}
	reqs := d.requested()
	if !slices.Contains(reqs, "/v1/token?scope=user") || !slices.Contains(reqs, "/v1/token?project="+project+"&scope=client") ||
		!slices.Contains(reqs, "/v1/token?project=Acme%2Fweb+site&scope=client") {
		t.Errorf("requests %q, want the user token, and the client token by id and by name, asked for", reqs)
	}
}

// TestShellQuote evaluates the env line in a real shell: the variable must
// come out equal, and nothing in the value may run.
func TestShellQuote(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	values := []string{
		"tkAbc123", "a b", "it's", "'", "''", `a\b`, "$HOME", "`touch " + marker + "`",
		"$(touch " + marker + ")", "a;touch " + marker, "line\nbreak", "~root", "*", "a=b", "-x", "!x", "#c", "",
	}
	for _, v := range values {
		line := "V=" + shellQuote(v)
		cmd := exec.Command(sh, "-c", `eval "$LINE"; printf %s "$V"`)
		cmd.Env = []string{"LINE=" + line, "PATH=/usr/bin:/bin"}
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("sh could not eval the line for %q: %v", v, err)
			continue
		}
		if string(out) != v {
			t.Errorf("shellQuote(%q) = %s, which sh reads as %q", v, shellQuote(v), out)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("evaluating a quoted value ran a command")
	}
	// Tokens stay bare, so that env files that do not unquote work too.
	if got := shellQuote("tkAbc123"); got != "tkAbc123" {
		t.Errorf("shellQuote(%q) = %s, want it bare", "tkAbc123", got)
	}
}
