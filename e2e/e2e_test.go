package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/internal/buildflags"
	"github.com/exless/exless/internal/syncbuf"
	"github.com/exless/exless/internal/testproc"
	"github.com/exless/exless/internal/testrun"
	"github.com/exless/exless/vaultstore/vaulttest"
)

func TestMain(m *testing.M) { vaulttest.Main(m) }

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds exlessd and exlessctl once per test run, into a directory
// that other users can read and execute (test temp dirs are 0700).
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "exless-e2e-bin-")
		if buildErr != nil {
			return
		}
		if buildErr = os.Chmod(binDir, 0o755); buildErr != nil {
			return
		}
		// Built as shipped: exlessctl static, without urfave/cli's docs.
		buildErr = buildflags.Build(context.Background(), "go", "", binDir, "", nil,
			"github.com/exless/exless/cmd/exlessd", "github.com/exless/exless/cmd/exlessctl")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// sharedDir makes a directory that other uids can traverse, removed after t.
func sharedDir(t *testing.T) string {
	t.Helper()
	// Short: the socket path must fit in 108 bytes.
	d, err := os.MkdirTemp("", "exl-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func requireRoot(t *testing.T) {
	t.Helper()
	testproc.RequireRoot(t, "peers run as other uids")
}

// daemonEnv is a running exlessd binary with its Vault and Exceptionless.
type daemonEnv struct {
	t      *testing.T
	bin    string
	dir    string
	socket string
	config string
	path   string // the Vault KV path under mount "secret"
	vault  *vaulttest.Server
	ex     *exceptionlesstest.Server
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	exited chan struct{}
}

// startDaemon writes a config with the given extra top-level lines and the
// rules made for the seeded account, and starts exlessd on it.
func startDaemon(t *testing.T, extra string, rulesFor func(exceptionlesstest.Account) string) *daemonEnv {
	t.Helper()
	return startDaemonWith(t, extra, rulesFor, func(e *daemonEnv, secrets string) string {
		pw := filepath.Join(secrets, "password")
		mustWrite(t, pw, e.ex.Account.Password+"\n")
		return fmt.Sprintf("password_file = %q", pw)
	})
}

// startDaemonWith is startDaemon with the exceptionless block's password
// line made by password, which may also arrange what it names.
func startDaemonWith(t *testing.T, extra string, rulesFor func(exceptionlesstest.Account) string,
	password func(e *daemonEnv, secrets string) string) *daemonEnv {
	t.Helper()
	e := &daemonEnv{t: t, bin: binaries(t), dir: sharedDir(t), vault: vaulttest.Shared(t)}
	e.ex = exceptionlesstest.NewServer(exceptionlesstest.Config{})
	t.Cleanup(e.ex.Close)
	e.socket = filepath.Join(e.dir, "exlessd.sock")
	secrets := t.TempDir()
	vt := filepath.Join(secrets, "vault-token")
	mustWrite(t, vt, e.vault.Token)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	e.path = "exless/e2e-" + hex.EncodeToString(b)
	e.config = filepath.Join(secrets, "exlessd.hcl")
	mustWrite(t, e.config, fmt.Sprintf(`
socket = %q
%s
exceptionless {
  url   = %q
  email = %q
  %s
}
vault {
  address    = %q
  token_file = %q
  path       = %q
}
%s
`, e.socket, extra, e.ex.URL, e.ex.Account.Email, password(e, secrets), e.vault.Addr, vt, e.path, rulesFor(e.ex.Account)))
	e.start()
	return e
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *daemonEnv) start() {
	t := e.t
	t.Helper()
	if e.stderr == nil {
		e.stderr = testrun.Buffer(t, "exlessd")
	}
	e.cmd = exec.Command(filepath.Join(e.bin, "exlessd"), "--config", e.config, "--log-level", "debug")
	e.cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + e.dir}
	e.cmd.Stdout = e.stderr
	e.cmd.Stderr = e.stderr
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.exited = make(chan struct{})
	go func() { _ = e.cmd.Wait(); close(e.exited) }()
	t.Cleanup(e.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r := e.ctl(nil, "status"); r.code == 0 || r.code == 3 {
			return
		}
		select {
		case <-e.exited:
			t.Fatalf("exlessd exited early:\n%s", e.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("exlessd did not come up:\n%s", e.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *daemonEnv) stop() {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.exited
		e.t.Errorf("exlessd did not stop on SIGTERM")
	}
	e.cmd = nil
}

type result struct {
	stdout, stderr string
	code           int
}

// ctl runs exlessctl, as cred if not nil.
func (e *daemonEnv) ctl(cred *syscall.Credential, args ...string) result {
	e.t.Helper()
	var attr *syscall.SysProcAttr
	if cred != nil {
		attr = &syscall.SysProcAttr{Credential: cred}
	}
	return e.run(attr, args...)
}

// run runs exlessctl with the given process attributes.
func (e *daemonEnv) run(attr *syscall.SysProcAttr, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "exlessctl"), args...)
	cmd.Env = []string{"EXLESS_SOCKET=" + e.socket, "HOME=/"}
	cmd.Dir = "/"
	cmd.SysProcAttr = attr
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run exlessctl: %v", err)
	}
	// Saved for the end-of-run secret scan; stdout is where a token goes.
	testrun.Save(e.t, "exlessctl-stderr", errb.String())
	return result{out.String(), errb.String(), code}
}

// checkNoSecrets fails if a token the test server holds, or the password,
// shows up in the daemon's output.
func (e *daemonEnv) checkNoSecrets(outputs ...string) {
	e.t.Helper()
	all := e.stderr.String() + strings.Join(outputs, "")
	for _, ti := range e.ex.Tokens() {
		if strings.Contains(all, ti.ID) {
			e.t.Errorf("a token value appears in logs or error output")
		}
	}
	if strings.Contains(all, e.ex.Account.Password) || strings.Contains(all, e.vault.Token) {
		e.t.Errorf("a password or Vault token appears in logs or error output")
	}
}

func TestExlessctlAgainstExlessd(t *testing.T) {
	e := startDaemon(t, "", func(exceptionlesstest.Account) string {
		return fmt.Sprintf(`
rule "me" {
  users    = ["%d"]
  scopes   = ["user", "client"]
  projects = ["*"]
  actions  = ["token", "status"]
}`, os.Getuid())
	})
	project := e.ex.Account.Projects[0].ID

	user := e.ctl(nil, "token", "--scope", "user")
	if user.code != 0 {
		t.Fatalf("token --scope user: exit %d: %s", user.code, user.stderr)
	}
	userTok := strings.TrimSuffix(user.stdout, "\n")
	if len(userTok) != 40 || strings.Contains(userTok, "\n") {
		t.Fatalf("token output is not one 40-character token and a newline (%d bytes)", len(user.stdout))
	}
	api, err := exceptionless.New(e.ex.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.Me(context.Background(), exceptionless.Token(userTok)); err != nil {
		t.Errorf("the printed user token is not valid upstream: %v", err)
	}

	client := e.ctl(nil, "--socket", e.socket, "token", "--scope", "client", "--project", project)
	if client.code != 0 {
		t.Fatalf("token --scope client: exit %d: %s", client.code, client.stderr)
	}
	clientTok := strings.TrimSpace(client.stdout)
	if _, err := api.ProjectConfig(context.Background(), exceptionless.Token(clientTok)); err != nil {
		t.Errorf("the printed client token is not valid upstream: %v", err)
	}

	if r := e.ctl(nil, "whoami"); r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("uid\t%d", os.Getuid())) || !strings.Contains(r.stdout, `rule "me"`) {
		t.Errorf("whoami: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := e.ctl(nil, "status"); r.code != 0 || !strings.Contains(r.stdout, "state\tok") {
		t.Errorf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Usage errors: one line, exit 2.
	for _, args := range [][]string{{"token"}, {"token", "--scope", "admin"}, {"token", "--bogus"}, {"nosuchcommand"}} {
		r := e.ctl(nil, args...)
		if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "exlessctl: ") {
			t.Errorf("exlessctl %v: exit %d, stderr %q; want exit 2 and one line", args, r.code, r.stderr)
		}
	}
	// A socket nobody listens on: exit 4 with the path and the service.
	r := e.ctl(nil, "--socket", filepath.Join(e.dir, "nope.sock"), "status")
	if r.code != 4 || !strings.Contains(r.stderr, "nope.sock") || !strings.Contains(r.stderr, "exlessd.service") {
		t.Errorf("unreachable: exit %d, %q", r.code, r.stderr)
	}
	// An unknown project: exit 1 with the daemon's message.
	r = e.ctl(nil, "token", "--scope", "client", "--project", "0123456789abcdef01234567")
	if r.code != 1 || !strings.Contains(r.stderr, "no project") {
		t.Errorf("unknown project: exit %d, %q", r.code, r.stderr)
	}

	// Restart: the same tokens, from Vault, with no new login.
	e.stop()
	e.start()
	if got := strings.TrimSpace(e.ctl(nil, "token", "--scope", "user").stdout); got != userTok {
		t.Error("user token changed across a restart")
	}
	if got := strings.TrimSpace(e.ctl(nil, "token", "--scope", "client", "--project", project).stdout); got != clientTok {
		t.Error("client token changed across a restart")
	}
	if n := e.ex.LoginAttempts(); n != 1 {
		t.Errorf("logins = %d across a restart, want 1", n)
	}
	e.checkNoSecrets(r.stderr)
}

// The policy, not file permissions, refuses peers: every child below but the
// last is in the socket's group and can connect, and the daemon decides.
func TestPeersOfOtherUsersAndGroups(t *testing.T) {
	requireRoot(t)
	const (
		sockGID   = 54321 // may connect to the socket
		deployGID = 54325 // granted client tokens for one project
		allowUID  = 54330 // granted the user token
		otherUID  = 54331 // no rule
		otherGID  = 54332 // no rule
		memberUID = 54320
		outsider  = 54340 // not in the socket's group
	)
	e := startDaemon(t, fmt.Sprintf(`socket_mode = "0660"
socket_group = "%d"`, sockGID), func(a exceptionlesstest.Account) string {
		return fmt.Sprintf(`
rule "deployers" {
  groups   = ["%d"]
  scopes   = ["client"]
  projects = [%q]
}
rule "service" {
  users  = ["%d"]
  scopes = ["user"]
}`, deployGID, a.Projects[0].ID, allowUID)
	})
	project := e.ex.Account.Projects[0].ID
	other := e.ex.Account.Projects[1].ID

	fi, err := os.Stat(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || st.Gid != sockGID {
		t.Fatalf("socket mode %v gid %d, want 0660 gid %d", fi.Mode().Perm(), st.Gid, sockGID)
	}

	client := []string{"token", "--scope", "client", "--project", project}
	user := []string{"token", "--scope", "user"}
	tests := []struct {
		name     string
		cred     syscall.Credential
		args     []string
		wantCode int
		wantErr  []string
	}{
		{"primary group granted", syscall.Credential{Uid: memberUID, Gid: deployGID, Groups: []uint32{sockGID}},
			client, 0, nil},
		{"supplementary group granted", syscall.Credential{Uid: memberUID + 1, Gid: memberUID + 1, Groups: []uint32{sockGID, deployGID}},
			client, 0, nil},
		{"other gid refused by the policy", syscall.Credential{Uid: memberUID + 2, Gid: otherGID, Groups: []uint32{sockGID}},
			client, 3, []string{"no rule grants scope client", "uid 54322", "gid 54332"}},
		{"granted group refused another project", syscall.Credential{Uid: memberUID, Gid: deployGID, Groups: []uint32{sockGID}},
			[]string{"token", "--scope", "client", "--project", other}, 3, []string{"no rule grants", "uid 54320", "gid 54325"}},
		{"granted group refused the user token", syscall.Credential{Uid: memberUID, Gid: deployGID, Groups: []uint32{sockGID}},
			user, 3, []string{"no rule grants scope user", "uid 54320"}},
		{"allowed uid gets the user token", syscall.Credential{Uid: allowUID, Gid: otherGID, Groups: []uint32{sockGID}},
			user, 0, nil},
		{"other uid refused by the policy", syscall.Credential{Uid: otherUID, Gid: otherGID, Groups: []uint32{sockGID}},
			user, 3, []string{"no rule grants scope user", "uid 54331"}},
		{"outside the socket group refused by the kernel", syscall.Credential{Uid: outsider, Gid: outsider},
			user, 3, []string{"permission denied", "socket"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.ctl(&tc.cred, tc.args...)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tc.wantCode, r.stderr)
			}
			if tc.wantCode == 0 && len(strings.TrimSpace(r.stdout)) != 40 {
				t.Errorf("stdout is not a token (%d bytes)", len(r.stdout))
			}
			if tc.wantCode != 0 && r.stdout != "" {
				t.Errorf("stdout on failure: %d bytes", len(r.stdout))
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q does not contain %q", r.stderr, w)
				}
			}
		})
	}
	// The policy refusals were made by the daemon and logged with the uid.
	logs := e.stderr.String()
	if !strings.Contains(logs, "decision=deny") || !strings.Contains(logs, "uid=54331") {
		t.Errorf("the daemon did not log the denial of uid 54331")
	}
	e.checkNoSecrets()
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
