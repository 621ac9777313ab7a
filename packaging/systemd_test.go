package packaging

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exless/exless/internal/testrun"
	"github.com/exless/exless/packaging/internal/nspawn"
	"github.com/exless/exless/vaultstore/vaulttest"
)

// maxExposure is the highest `systemd-analyze security` exposure the
// shipped exlessd.service may have.
const maxExposure = 2.0

// TestPackageUnderSystemd installs the .deb in a container booted with a
// real systemd and checks the daemon, its units and the maintainer scripts
// the way an operator would meet them.
func TestPackageUnderSystemd(t *testing.T) {
	root, _ := filepath.Abs(repoRoot)
	rootfs := nspawn.Require(t, root)
	deb := packages(t)["deb"]
	vaultBin, err := vaulttest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	testserver := filepath.Join(t.TempDir(), "exceptionless-testserver")
	if out, err := exec.Command("go", "build", "-o", testserver, filepath.Join(root, "cmd", "exceptionless-testserver")).CombinedOutput(); err != nil {
		t.Fatalf("go build exceptionless-testserver: %v\n%s", err, out)
	}

	c := nspawn.Boot(t, rootfs)
	t.Cleanup(func() {
		if t.Failed() {
			c.SaveArtifacts(nspawn.ArtifactsDir(root, t.Name()))
		}
	})
	c.CopyFile(deb, "/tmp/exless.deb", 0o644)
	c.CopyFile(vaultBin, "/usr/local/bin/vault", 0o755)
	c.CopyFile(testserver, "/usr/local/bin/exceptionless-testserver", 0o755)

	e := &sdEnv{t: t, c: c}
	steps := []struct {
		name string
		f    func()
	}{
		{"install", e.install},
		{"units", e.units},
		{"not_configured", e.notConfigured},
		{"configure", e.configure},
		{"tokens", e.tokens},
		{"credentials", e.credentials},
		{"reload", e.reload},
		{"watchdog", e.watchdog},
		{"journal", e.journal},
		{"remove_and_purge", e.removeAndPurge},
	}
	for _, s := range steps {
		start := time.Now()
		ok := t.Run(s.name, func(t *testing.T) {
			e.t = t
			s.f()
		})
		t.Logf("%s: %.1fs", s.name, time.Since(start).Seconds())
		if !ok {
			// Later steps build on earlier ones.
			return
		}
	}
}

// sdEnv is the state the steps share.
type sdEnv struct {
	t       *testing.T
	c       *nspawn.Container
	project string
	served  []string // handed out during the test; must never reach the journal
	secrets []string // password and Vault token
}

func (e *sdEnv) sh(script string) string {
	e.t.Helper()
	out, err := e.c.Sh(script)
	if err != nil {
		e.t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return strings.TrimSpace(out)
}

// shCode runs a script and returns its output and exit status.
func (e *sdEnv) shCode(script string) (string, int) {
	e.t.Helper()
	out, err := e.c.Sh(script)
	if err == nil {
		return strings.TrimSpace(out), 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return strings.TrimSpace(out), ee.ExitCode()
	}
	e.t.Fatalf("%s: %v", script, err)
	return "", -1
}

func (e *sdEnv) prop(unit, name string) string {
	e.t.Helper()
	return e.sh("systemctl show -P " + name + " " + unit)
}

// waitFor polls a shell condition until it succeeds.
func (e *sdEnv) waitFor(what, script string, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := e.c.Sh(script)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not within %s (%s: %s)", what, timeout, script, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *sdEnv) install() {
	out := e.sh("DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/exless.deb 2>&1")
	if !strings.Contains(out, "Creating user 'exless'") {
		e.t.Errorf("dpkg -i did not create the exless user:\n%s", out)
	}
	if got := e.sh("stat -c '%A %U %G' /run/exless/exlessd.sock"); got != "srw-rw---- root exless" {
		e.t.Errorf("socket is %q, want srw-rw---- root exless", got)
	}
	if got := e.sh("stat -c '%A %U %G' /run/exless/credentials.sock"); got != "srw------- root root" {
		e.t.Errorf("credentials socket is %q, want srw------- root root", got)
	}
	if got := e.sh("systemctl is-enabled exlessd.socket exlessd-credentials.socket"); got != "enabled\nenabled" {
		e.t.Errorf("sockets are %q, want enabled", got)
	}
	// Socket activation: nothing runs until the first connection.
	if got, _ := e.shCode("systemctl is-active exlessd.service"); got != "inactive" {
		e.t.Errorf("exlessd.service is %s before any connection, want inactive", got)
	}
	if got := e.sh("stat -c '%a %U %G' /etc/exless /etc/exless/exlessd.hcl /etc/exless/credentials"); got != "750 root exless\n640 root exless\n700 root root" {
		e.t.Errorf("config permissions:\n%s", got)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`)

func (e *sdEnv) exposure() float64 {
	e.t.Helper()
	out := e.sh("systemd-analyze security --offline=yes --no-pager /usr/lib/systemd/system/exlessd.service")
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		e.t.Fatalf("no exposure level in:\n%s", out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func (e *sdEnv) units() {
	out, code := e.shCode("systemd-analyze verify /usr/lib/systemd/system/exlessd.service /usr/lib/systemd/system/exlessd.socket 2>&1")
	if code != 0 || out != "" {
		e.t.Errorf("systemd-analyze verify (status %d):\n%s", code, out)
	}
	v := e.exposure()
	e.t.Logf("systemd-analyze security exposure of exlessd.service: %.1f", v)
	if v > maxExposure {
		e.t.Errorf("exposure %.1f, want at most %.1f", v, maxExposure)
	}
	// The drop-in for exe rules, measured the same way (offline analysis
	// reads drop-ins next to the unit file).
	e.sh("mkdir -p /usr/lib/systemd/system/exlessd.service.d && cp /usr/share/exless/ptrace.conf /usr/lib/systemd/system/exlessd.service.d/")
	pv := e.exposure()
	e.sh("rm -r /usr/lib/systemd/system/exlessd.service.d")
	e.t.Logf("exposure with the CAP_SYS_PTRACE drop-in: %.1f", pv)
	if pv <= v {
		e.t.Errorf("the ptrace drop-in did not change the exposure (%.1f); is it read?", pv)
	}
	// The units as systemd runs them: no hidden /proc, no user namespace.
	for _, p := range []string{"ProtectProc=default", "PrivateUsers=no", "Type=notify"} {
		kv := strings.SplitN(p, "=", 2)
		if got := e.prop("exlessd.service", kv[0]); got != kv[1] {
			e.t.Errorf("%s=%s, want %s", kv[0], got, kv[1])
		}
	}
}

func (e *sdEnv) notConfigured() {
	// The first connection starts the daemon, which answers even though
	// the package's example config is not set up.
	out, code := e.shCode("exlessctl status")
	if code == 0 || !strings.Contains(out, "not configured: edit /etc/exless/exlessd.hcl") {
		e.t.Errorf("exlessctl status = %d %q, want the not-configured error", code, out)
	}
	e.waitFor("exlessd.service active", "systemctl is-active exlessd.service", 10*time.Second)
	if got := e.prop("exlessd.service", "StatusText"); !strings.HasPrefix(got, "not configured: edit /etc/exless/exlessd.hcl") {
		e.t.Errorf("StatusText = %q, want it to say not configured", got)
	}
	// systemd reports the watchdog once the service runs.
	if got := e.prop("exlessd.service", "WatchdogUSec"); got != "30s" {
		e.t.Errorf("WatchdogUSec = %s, want 30s", got)
	}
	if got := e.prop("exlessd.service", "NRestarts"); got != "0" {
		e.t.Errorf("NRestarts = %s, want 0", got)
	}
}

// randomHex returns a fresh secret for the test's Vault.
func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func (e *sdEnv) configure() {
	// Vault dev server and Exceptionless test server, inside (the
	// container has only loopback). Secrets go through files, never argv.
	vaultToken := randomHex(e.t)
	e.c.WriteFile("/etc/vault-dev.env", []byte("VAULT_DEV_ROOT_TOKEN_ID="+vaultToken+"\nHOME=/root\n"), 0o600)
	e.c.WriteFile("/etc/exless/credentials/vault-token", []byte(vaultToken+"\n"), 0o600)
	e.sh("systemd-run --unit=vault-dev -p EnvironmentFile=/etc/vault-dev.env " +
		"/usr/local/bin/vault server -dev -dev-listen-address=127.0.0.1:8200 -dev-no-store-token")
	e.sh("systemd-run --unit=extest /usr/local/bin/exceptionless-testserver -listen 127.0.0.1:8080 " +
		"-email ops@example.test -write-password-file /etc/exless/credentials/exceptionless-password -ready-file /run/extest.json")
	e.waitFor("vault dev server", "VAULT_ADDR=http://127.0.0.1:8200 vault status >/dev/null", 30*time.Second)
	e.waitFor("exceptionless test server", "test -s /run/extest.json", 30*time.Second)
	var ready struct {
		URL      string `json:"url"`
		Projects []struct {
			ID string `json:"id"`
		} `json:"projects"`
	}
	if err := json.Unmarshal([]byte(e.sh("cat /run/extest.json")), &ready); err != nil || len(ready.Projects) == 0 {
		e.t.Fatalf("ready file: %v", err)
	}
	e.project = ready.Projects[0].ID
	e.secrets = []string{vaultToken, e.sh("cat /etc/exless/credentials/exceptionless-password")}
	for _, sec := range e.secrets {
		testrun.Secret(sec)
	}

	// alice: in exless, named by a rule. bob: in exless, no rule.
	// mallory: not in exless.
	e.sh("useradd -m -G exless alice && useradd -m -G exless bob && useradd -m mallory")
	e.writeConfig(ready.URL, "")
	if out, code := e.shCode("exlessd config validate --config /etc/exless/exlessd.hcl"); code != 0 {
		e.t.Errorf("exlessd config validate: %d\n%s", code, out)
	}
	// Leaving "not configured" takes a restart (a reload says so).
	e.sh("systemctl restart exlessd.service")
	e.waitFor("logged in", `systemctl show -P StatusText exlessd.service | grep -q '^logged in'`, 30*time.Second)
}

// writeConfig writes a complete config; extraRules is appended.
func (e *sdEnv) writeConfig(url, extraRules string) {
	cfg := fmt.Sprintf(`
exceptionless {
  url           = %q
  email         = "ops@example.test"
  password_file = "exceptionless-password"
}
vault {
  address    = "http://127.0.0.1:8200"
  token_file = "vault-token"
  mount      = "secret"
  path       = "exless/e2e"
}
rule "alice" {
  users    = ["alice"]
  scopes   = ["client"]
  projects = ["*"]
}
rule "demo" {
  units    = ["exless-demo.service"]
  scopes   = ["client"]
  projects = ["*"]
}
rule "ops" {
  users    = ["root"]
  scopes   = ["user", "client"]
  projects = ["*"]
  actions  = ["token", "status", "reload"]
}
%s
`, url, extraRules)
	e.c.WriteFile("/etc/exless/exlessd.hcl.new", []byte(cfg), 0o640)
	e.sh("chgrp exless /etc/exless/exlessd.hcl.new && mv /etc/exless/exlessd.hcl.new /etc/exless/exlessd.hcl")
}

func (e *sdEnv) clientToken(user string) (string, int) {
	e.t.Helper()
	return e.shCode("runuser -u " + user + " -- exlessctl token --scope client --project " + e.project + " 2>&1")
}

func (e *sdEnv) tokens() {
	tok, code := e.clientToken("alice")
	if code != 0 || len(tok) < 20 || strings.ContainsAny(tok, " \n") {
		// The output may be a token: say only what went wrong.
		e.t.Fatalf("alice: exlessctl token exited %d with %d bytes, want a client token", code, len(tok))
	}
	e.served = append(e.served, tok)
	testrun.Secret(tok)
	if out, code := e.clientToken("bob"); code != 3 || !strings.Contains(out, "no rule grants") {
		e.t.Errorf("bob (exless member, no rule): %d %q, want exit 3 and a policy refusal", code, out)
	}
	if out, code := e.clientToken("mallory"); code != 3 || !strings.Contains(out, "permission denied") {
		e.t.Errorf("mallory (not in exless): %d %q, want exit 3 and permission denied on the socket", code, out)
	}
	if got := e.prop("exlessd.service", "StatusText"); !strings.Contains(got, "1 client tokens held; 1 tokens served") {
		// STATUS= follows within a couple of seconds.
		e.waitFor("STATUS= counting the token", `systemctl show -P StatusText exlessd.service | grep -q '1 tokens served'`, 10*time.Second)
	}
}

// demoCheck runs inside a consuming unit: it reads the credential and asks
// the Exceptionless test server with it (GET /api/v2/projects/config takes
// client tokens only). The token stays out of argv: printf is a builtin.
const demoCheck = `#!/bin/bash
set -e
tok=$(cat "$CREDENTIALS_DIRECTORY/exceptionless-client.$1")
exec 3<>/dev/tcp/127.0.0.1/8080
printf 'GET /api/v2/projects/config HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n\r\n' "$tok" >&3
head -n1 <&3 >"/run/$2.status"
`

// demoUnit is the README's consumer example.
func demoUnit(name, project string) string {
	return fmt.Sprintf(`[Unit]
Description=exless credential consumer %[1]s
After=exlessd-credentials.socket

[Service]
Type=oneshot
RemainAfterExit=yes
LoadCredential=exceptionless-client.%[2]s:/run/exless/credentials.sock
# A refused request gives an empty credential: fail the start then.
ExecStartPre=/usr/bin/test -s ${CREDENTIALS_DIRECTORY}/exceptionless-client.%[2]s
ExecStart=/usr/local/bin/exless-demo-check %[2]s %[1]s
`, name, project)
}

func (e *sdEnv) credentials() {
	e.c.WriteFile("/usr/local/bin/exless-demo-check", []byte(demoCheck), 0o755)
	e.c.WriteFile("/etc/systemd/system/exless-demo.service", []byte(demoUnit("exless-demo", e.project)), 0o644)
	e.c.WriteFile("/etc/systemd/system/exless-other.service", []byte(demoUnit("exless-other", e.project)), 0o644)
	e.sh("systemctl daemon-reload")

	// Allowed by a rule that names the unit: it starts, and the token works.
	if out, code := e.shCode("systemctl start exless-demo.service"); code != 0 {
		e.t.Fatalf("exless-demo.service did not start (%d): %s\n%s", code, out, e.sh("journalctl -u exless-demo.service --no-pager -o cat"))
	}
	if got := e.sh("cat /run/exless-demo.status"); !strings.Contains(got, " 200 ") {
		e.t.Errorf("the credential did not work against the test server: %q", got)
	}
	// ExecStartPre and ExecStart each made systemd connect; both got the
	// token the daemon already held (the one exlessctl gets), none minted.
	same := fmt.Sprintf(`[ "$(cat /run/credentials/exless-demo.service/exceptionless-client.%[1]s)" = "$(exlessctl token --scope client --project %[1]s)" ]`, e.project)
	if _, code := e.shCode(same); code != 0 {
		e.t.Error("the unit's credential is not the client token the daemon serves")
	}
	if got := e.sh("journalctl -u exlessd.service --no-pager -o cat | grep -c 'decision=allow action=credential unit=exless-demo.service'"); got != "2" {
		e.t.Errorf("%s allowed credential requests for exless-demo.service, want 2 (ExecStartPre and ExecStart)", got)
	}

	// No rule names exless-other: an empty credential, stopped by its check.
	if _, code := e.shCode("systemctl start exless-other.service"); code == 0 {
		e.t.Error("exless-other.service started although no rule names it")
	}
	if got := e.prop("exless-other.service", "ActiveState"); got != "failed" {
		e.t.Errorf("exless-other.service is %s, want failed", got)
	}
	if _, code := e.shCode("journalctl -u exlessd.service --no-pager -o cat | grep -q 'audit system=credentials decision=deny action=credential unit=exless-other.service'"); code != 0 {
		e.t.Error("the refusal of exless-other.service is not in the journal")
	}
	// A root-only rule ("ops" names users = ["root"]) must not have granted
	// it, although systemd's helper is root.
}

func (e *sdEnv) reload() {
	pid := e.prop("exlessd.service", "MainPID")
	url := strings.TrimSpace(e.sh(`sed -n 's/^ *url *= *"\(.*\)"/\1/p' /etc/exless/exlessd.hcl`))
	e.writeConfig(url, `rule "bob" {
  users    = ["bob"]
  scopes   = ["client"]
  projects = ["*"]
}`)
	e.sh("systemctl reload exlessd.service")
	e.waitFor("bob allowed after reload", "runuser -u bob -- exlessctl token --scope client --project "+e.project+" >/dev/null", 10*time.Second)
	if got := e.prop("exlessd.service", "MainPID"); got != pid {
		e.t.Errorf("MainPID changed from %s to %s across reload", pid, got)
	}
	// A broken file is rejected; the policy in force stays.
	e.sh(`echo 'rule "x" {' >> /etc/exless/exlessd.hcl`)
	e.sh("systemctl reload exlessd.service")
	e.waitFor("rejected reload in STATUS=", `systemctl show -P StatusText exlessd.service | grep -q 'last reload failed'`, 10*time.Second)
	if tok, code := e.clientToken("bob"); code != 0 {
		e.t.Errorf("bob after a rejected reload: exit %d, want the old policy to stay", code)
	} else {
		e.served = append(e.served, tok)
		testrun.Secret(tok)
	}
	if got := e.prop("exlessd.service", "ActiveState"); got != "active" {
		e.t.Errorf("ActiveState = %s after reloads, want active", got)
	}
	e.writeConfig(url, "")
	e.sh("systemctl reload exlessd.service")
}

func (e *sdEnv) watchdog() {
	// A short watchdog for the test; exlessd pings every third of it.
	e.c.WriteFile("/etc/systemd/system/exlessd.service.d/watchdog.conf", []byte("[Service]\nWatchdogSec=3s\nRestartSec=1s\n"), 0o644)
	e.sh("systemctl daemon-reload && systemctl restart exlessd.service")
	e.waitFor("active", "systemctl is-active exlessd.service", 30*time.Second)
	restarts := e.prop("exlessd.service", "NRestarts")
	pid := e.prop("exlessd.service", "MainPID")
	e.sh("kill -STOP " + pid)
	e.waitFor("watchdog restart", fmt.Sprintf(`p=$(systemctl show -P MainPID exlessd.service); [ "$p" != 0 ] && [ "$p" != %s ] && systemctl is-active exlessd.service`, pid), 30*time.Second)
	if got := e.prop("exlessd.service", "NRestarts"); got == restarts {
		e.t.Errorf("NRestarts still %s after the watchdog fired", got)
	}
	if out := e.sh("journalctl -u exlessd.service --no-pager -o cat"); !strings.Contains(out, "Watchdog timeout") {
		e.t.Error("the journal does not show the watchdog timeout")
	}
	e.sh("rm /etc/systemd/system/exlessd.service.d/watchdog.conf && systemctl daemon-reload")
}

func (e *sdEnv) journal() {
	out := e.sh("journalctl -u exlessd.service --no-pager -o cat")
	testrun.Save(e.t, "exlessd-journal", out)
	for _, want := range []string{"audit system=server decision=allow action=token", "audit system=server decision=deny action=token", "reload failed"} {
		if !strings.Contains(out, want) {
			e.t.Errorf("the journal lacks %q", want)
		}
	}
	for _, s := range append(append([]string{}, e.served...), e.secrets...) {
		if s != "" && strings.Contains(out, s) {
			e.t.Error("a token or secret appears in the journal")
		}
	}
	// Native journal fields: each attribute is a field of its own.
	fields := e.sh("journalctl -u exlessd.service --no-pager -o verbose DECISION=deny | grep -E '^ +(DECISION|UID|SYSLOG_IDENTIFIER|PRIORITY)=' | sort -u")
	for _, want := range []string{"DECISION=deny", "SYSLOG_IDENTIFIER=exlessd", "PRIORITY=4"} {
		if !strings.Contains(fields, want) {
			e.t.Errorf("journal fields lack %s:\n%s", want, fields)
		}
	}
}

func (e *sdEnv) removeAndPurge() {
	e.sh("DEBIAN_FRONTEND=noninteractive dpkg -r exless")
	for _, u := range []string{"exlessd.socket", "exlessd.service"} {
		if got, _ := e.shCode("systemctl is-active " + u); got == "active" {
			e.t.Errorf("%s still active after dpkg -r", u)
		}
	}
	if _, code := e.shCode("test -e /run/exless/exlessd.sock || test -e /usr/bin/exlessd"); code == 0 {
		e.t.Error("socket or binary left after dpkg -r")
	}
	if _, code := e.shCode("test -f /etc/exless/exlessd.hcl"); code != 0 {
		e.t.Error("dpkg -r removed the config; only --purge may")
	}
	e.sh("DEBIAN_FRONTEND=noninteractive dpkg --purge exless")
	if out, code := e.shCode("ls -d /etc/exless /etc/systemd/system/sockets.target.wants/exlessd*.socket /etc/systemd/system/exlessd*.socket 2>/dev/null"); code == 0 || out != "" {
		e.t.Errorf("left after dpkg --purge: %s", out)
	}
}
