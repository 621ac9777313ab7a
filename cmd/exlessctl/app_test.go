package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/exless/exless/daemon"
)

// TestExitCodes drives every error class through every daemon command.
func TestExitCodes(t *testing.T) {
	denied := daemon.ErrorResponse{Error: "uid 1000 (bob) gid 1000 (bob) pid 42: no rule grants scope user", Code: daemon.CodeDenied}
	unavailable := daemon.ErrorResponse{Error: "token unavailable: vault unreachable", Code: daemon.CodeUnavailable}
	tests := []struct {
		name     string
		status   int
		body     any
		wantCode int
		wantErr  []string
	}{
		{"denied by the policy", http.StatusForbidden, denied, exitDenied,
			[]string{"uid 1000 (bob)", "no rule grants", "exlessctl whoami"}},
		{"unavailable", http.StatusServiceUnavailable, unavailable, exitUnavailable,
			[]string{"vault unreachable", "exlessctl status"}},
		{"not found", http.StatusNotFound, daemon.ErrorResponse{Error: "exceptionless has no project 0123456789abcdef01234567 for this account", Code: daemon.CodeNotFound}, exitError,
			[]string{"no project"}},
		{"internal", http.StatusInternalServerError, daemon.ErrorResponse{Error: "internal error; see the exlessd journal", Code: daemon.CodeInternal}, exitError,
			[]string{"journal"}},
		{"not JSON", http.StatusBadGateway, "<html>bad gateway</html>", exitError,
			[]string{"502"}},
		{"garbled success", http.StatusOK, "{not json", exitError,
			[]string{"decode reply from exlessd"}},
	}
	commands := map[string][]string{
		"/v1/token":  {"token", "--scope", "user"},
		"/v1/whoami": {"whoami"},
		"/v1/status": {"status"},
	}
	for _, tc := range tests {
		for path, args := range commands {
			t.Run(tc.name+"/"+args[0], func(t *testing.T) {
				d := newFakeDaemon(t)
				d.set(path, tc.status, tc.body)
				r := ctl(t, append([]string{"--socket", d.socket}, args...)...)
				if r.code != tc.wantCode {
					t.Errorf("exit %d, want %d; stderr %q", r.code, tc.wantCode, r.stderr)
				}
				checkOneLineError(t, r)
				for _, w := range tc.wantErr {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr %q does not contain %q", r.stderr, w)
					}
				}
			})
		}
	}
}

func TestUnreachable(t *testing.T) {
	dir, err := os.MkdirTemp("", "exlctl-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// A socket file nobody listens on (a crashed daemon) refuses.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	for _, socket := range []string{filepath.Join(dir, "missing.sock"), stale} {
		for _, args := range [][]string{{"token", "--scope", "user"}, {"whoami"}, {"status"}, {"exec", "--scope", "user", "--", "true"}} {
			r := ctl(t, append([]string{"--socket", socket}, args...)...)
			if r.code != exitUnreachable {
				t.Errorf("%s %v: exit %d, want %d", filepath.Base(socket), args, r.code, exitUnreachable)
			}
			checkOneLineError(t, r)
			for _, w := range []string{socket, "exlessd.service"} {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("%v: stderr %q does not name %q", args, r.stderr, w)
				}
			}
		}
	}
}

// TestSocketPermissionDenied: the kernel refuses the connection (EACCES),
// which is a denial (3), not an unreachable daemon (4).
func TestSocketPermissionDenied(t *testing.T) {
	d := newFakeDaemon(t)
	if err := os.Chmod(d.socket, 0o600); err != nil {
		t.Fatal(err)
	}
	var r result
	if os.Geteuid() == 0 {
		// root passes file permissions: ask as nobody.
		cmd := ctlProcess(t, d.socket, "status")
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run()
		r = result{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
	} else {
		if err := os.Chmod(d.socket, 0); err != nil {
			t.Fatal(err)
		}
		r = ctl(t, "--socket", d.socket, "status")
	}
	if r.code != exitDenied {
		t.Fatalf("exit %d, want %d; stderr %q", r.code, exitDenied, r.stderr)
	}
	checkOneLineError(t, r)
	if !strings.Contains(r.stderr, "permission denied") || !strings.Contains(r.stderr, "socket_group") {
		t.Errorf("stderr %q does not say what to do", r.stderr)
	}
	if n := len(d.requested()); n != 0 {
		t.Errorf("the daemon got %d requests through a socket it should not be reachable on", n)
	}
}

// TestSocketEverywhere: --socket before or after the command, or
// EXLESS_SOCKET; the flag beats the environment.
func TestSocketEverywhere(t *testing.T) {
	d := newFakeDaemon(t)
	tok := newToken(t)
	d.serveToken(tok)
	d.set("/v1/whoami", http.StatusOK, daemon.WhoAmI{UID: 1})
	d.set("/v1/status", http.StatusOK, daemon.Status{State: "ok"})
	wrong := filepath.Join(d.dir, "wrong.sock")
	commands := [][]string{{"token", "--scope", "user"}, {"whoami"}, {"status"}, {"version"}}
	for _, args := range commands {
		for _, tc := range []struct {
			name string
			env  string
			args []string
		}{
			{"before", wrong, append([]string{"--socket", d.socket}, args...)},
			{"after", wrong, append(slices.Clone(args), "--socket", d.socket)},
			{"env", d.socket, args},
			{"after beats before", "", append(append([]string{"--socket", wrong}, args...), "--socket", d.socket)},
		} {
			t.Run(args[0]+"/"+tc.name, func(t *testing.T) {
				t.Setenv("EXLESS_SOCKET", tc.env)
				r := ctl(t, tc.args...)
				if r.code != 0 {
					t.Errorf("exit %d: %q", r.code, r.stderr)
				}
			})
		}
	}
	// exec, as a process: its flags end at the command.
	r := ctlRun(t, wrong, "exec", "--scope", "user", "--socket", d.socket, "--", "exless-child", "exit", "0")
	if r.code != 0 {
		t.Errorf("exec --socket: exit %d: %q", r.code, r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	d := newFakeDaemon(t)
	d.serveToken(newToken(t))
	long := strings.Repeat("a", 40) // shaped like a token pasted into a flag
	tests := []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"nosuchcommand"}, `unknown command "nosuchcommand"`},
		{[]string{"--bogus", "status"}, "flag provided but not defined"},
		{[]string{"token"}, "--scope is required"},
		{[]string{"token", "--scope", "admin"}, `not "admin"`},
		{[]string{"token", "--scope", "user", "--project", "0123456789abcdef01234567"}, "--project goes with --scope client"},
		{[]string{"token", "--scope", "client"}, "needs --project"},
		{[]string{"token", "--scope", "client", "--project", "acme/web/x"}, "must be a project id"},
		{[]string{"token", "--scope", "client", "--project", "x"}, "must be a project id"},
		{[]string{"token", "--scope", "client", "--project", long}, "must be a project id"},
		{[]string{"token", "--scope", "user", "--format", "yaml"}, "--format must be raw, json or env"},
		{[]string{"token", "--scope", "user", "--env-name", "X"}, "--env-name goes with --format env"},
		{[]string{"token", "--scope", "user", "--format", "env", "--env-name", "1X"}, "shell variable name"},
		{[]string{"token", "--scope", "user", "--format", "env", "--env-name", "A-B"}, "shell variable name"},
		{[]string{"token", "--scope", "user", "extra"}, "unexpected argument"},
		{[]string{"token", "--scope", "user", long}, "(40 characters, not shown)"},
		{[]string{"token", "--scope"}, "flag needs an argument"},
		{[]string{"token", "--bogus"}, "flag provided but not defined"},
		{[]string{"exec", "--scope", "user"}, "needs a command"},
		{[]string{"exec", "--scope", "user", "--fd", "--env-name", "K", "--", "true"}, "exclude each other"},
		{[]string{"exec", "--scope", "user", "--env-name", "K=V", "--", "true"}, "shell variable name"},
		{[]string{"exec", "--", "true"}, "--scope is required"},
		{[]string{"status", "--format", "yaml"}, "--format must be text or json"},
		{[]string{"whoami", "--format", "yaml"}, "--format must be text or json"},
		{[]string{"status", "extra"}, "unexpected argument"},
		{[]string{"version", "extra"}, "unexpected argument"},
		{[]string{"rotate", "--scope", "user"}, "--password changes the account password"},
		{[]string{"rotate", "--scope", "client", "--password", "--project", "0123456789abcdef01234567"}, "--password goes with --scope user"},
		{[]string{"rotate", "--scope", "user", "--password", "--grace", "0"}, "takes no --project or --grace"},
		{[]string{"rotate", "--scope", "admin"}, "--scope must be client or user"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := ctl(t, append([]string{"--socket", d.socket}, tc.args...)...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			checkOneLineError(t, r)
			if !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "--help'") {
				t.Errorf("stderr %q, want %q and a --help hint", r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, long) {
				t.Errorf("a token-length value is echoed in the error")
			}
		})
	}
	if got := d.requested(); len(got) != 0 {
		t.Errorf("usage errors reached the daemon: %q", got)
	}
}

// TestNoSecretFlags guards the rule that no secret is taken on argv: no
// flag may be named for one, unless it is a switch that carries no value.
func TestNoSecretFlags(t *testing.T) {
	app := newApp(nil, nil, nil)
	check := func(where string, flags []cli.Flag) {
		for _, f := range flags {
			if _, ok := f.(*cli.BoolFlag); ok {
				continue // rotate --password: a switch, it takes no value
			}
			for _, n := range f.Names() {
				if n == "env-name" {
					continue // a variable's name, not its value
				}
				for _, bad := range []string{"token", "key", "password", "secret", "credential"} {
					if strings.Contains(n, bad) {
						t.Errorf("%s has a flag --%s", where, n)
					}
				}
			}
		}
	}
	check("exlessctl", app.Flags)
	for _, c := range app.Commands {
		check(c.Name, c.Flags)
	}
}

// Offline explain runs exlessd; without one, the error says what to do.
func TestExplainOfflineWithoutExlessd(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	r := ctl(t, "policy", "explain", "--config", "/etc/exless/exlessd.hcl", "--uid", "1", "--action", "reload")
	if r.code != 1 || !strings.Contains(r.stderr, "neither beside exlessctl nor on PATH") || !strings.Contains(r.stderr, "drop --config") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	checkOneLineError(t, r)
}
