package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
)

// An operator rotates a client token and asks the policy why, with exlessctl.
func TestRotateAndExplain(t *testing.T) {
	e := startDaemon(t, "", func(a exceptionlesstest.Account) string {
		return fmt.Sprintf(`
rule "ops" {
  users    = ["%d"]
  scopes   = ["client"]
  projects = ["*"]
  actions  = ["token", "rotate", "status"]
}
rule "deploy" {
  units    = ["deploy.service"]
  scopes   = ["client"]
  projects = ["Acme/web"]
}`, os.Getuid())
	})
	project := e.ex.Account.Projects[0].ID
	old := e.ctl(nil, "token", "--scope", "client", "--project", "Acme/web")
	if old.code != 0 {
		t.Fatalf("token: %s", old.stderr)
	}
	r := e.ctl(nil, "rotate", "--project", project, "--grace", "0")
	if r.code != 0 || !strings.Contains(r.stdout, "revoked") || !strings.Contains(r.stdout, fmt.Sprintf("uid %d", os.Getuid())) {
		t.Fatalf("rotate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	api, err := exceptionless.New(e.ex.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	oldTok := exceptionless.Token(strings.TrimSpace(old.stdout))
	if _, err := api.ProjectConfig(context.Background(), oldTok); !errors.Is(err, exceptionless.ErrUnauthorized) {
		t.Errorf("the rotated-out token still works (%v)", err)
	}
	cur := e.ctl(nil, "token", "--scope", "client", "--project", project)
	if cur.code != 0 || cur.stdout == old.stdout {
		t.Fatalf("after rotate: exit %d, same token %v", cur.code, cur.stdout == old.stdout)
	}
	if r := e.ctl(nil, "rotate", "--scope", "user"); r.code != 2 {
		t.Errorf("rotate --scope user: exit %d, want 2", r.code)
	}

	// The daemon explains; so does the config file offline.
	for _, args := range [][]string{
		{"policy", "explain", "--uid", "4242", "--unit", "deploy.service", "--scope", "client", "--project", project},
		{"policy", "explain", "--config", e.config, "--uid", "4242", "--unit", "deploy.service", "--scope", "client", "--project", "Acme/web"},
	} {
		r := e.ctl(nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, `allow: allowed by rule "deploy"`) {
			t.Errorf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	// Offline, exlessctl runs the exlessd beside it, and passes its error on.
	r = e.ctl(nil, "policy", "explain", "--config", e.config+".missing", "--uid", "4242", "--action", "reload")
	if r.code != 1 || !strings.Contains(r.stderr, "pass --config FILE") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("explain a missing config: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = e.ctl(nil, "policy", "explain", "--uid", "4242", "--unit", "user@4242.service/deploy.service", "--scope", "client", "--project", project)
	if r.code != 0 || !strings.Contains(r.stdout, "deny") || !strings.Contains(r.stdout, "units:") {
		t.Errorf("explain a user unit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	e.checkNoSecrets(r.stdout, r.stderr)
}

// An operator keeps the account password in Vault and changes it with
// exlessctl: the new password and user token land in Vault, the old user
// token stops working, client tokens keep working.
func TestRotatePasswordWithExlessctl(t *testing.T) {
	rules := func(exceptionlesstest.Account) string {
		return fmt.Sprintf(`
rule "ops" {
  users    = ["%d"]
  scopes   = ["user", "client"]
  projects = ["*"]
  actions  = ["token", "rotate", "status"]
}`, os.Getuid())
	}
	e := startDaemonWith(t, "", rules, func(e *daemonEnv, _ string) string {
		cfg := vault.DefaultConfig()
		cfg.Address = e.vault.Addr
		c, err := vault.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(e.vault.Token)
		if _, err := c.KVv2("secret").Put(context.Background(), e.path+"/account", map[string]any{"password": e.ex.Account.Password}); err != nil {
			t.Fatal(err)
		}
		return `password_vault_key = "account"`
	})
	project := e.ex.Account.Projects[0].ID
	user := e.ctl(nil, "token", "--scope", "user")
	client := e.ctl(nil, "token", "--scope", "client", "--project", project)
	if user.code != 0 || client.code != 0 {
		t.Fatalf("tokens: %s%s", user.stderr, client.stderr)
	}
	r := e.ctl(nil, "rotate", "--scope", "user", "--password")
	if r.code != 0 || !strings.Contains(r.stdout, "new token") || !strings.Contains(r.stdout, fmt.Sprintf("uid %d", os.Getuid())) {
		t.Fatalf("rotate --password: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if e.ex.PasswordChanges() != 1 || e.ex.PasswordIs(e.ex.Account.Email, e.ex.Account.Password) {
		t.Fatal("the account password did not change")
	}
	api, err := exceptionless.New(e.ex.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := api.Me(ctx, exceptionless.Token(strings.TrimSpace(user.stdout))); !errors.Is(err, exceptionless.ErrUnauthorized) {
		t.Errorf("the old user token still works (%v)", err)
	}
	now := e.ctl(nil, "token", "--scope", "user")
	if now.code != 0 || now.stdout == user.stdout {
		t.Fatalf("user token after the change: exit %d, same %v", now.code, now.stdout == user.stdout)
	}
	if _, err := api.Me(ctx, exceptionless.Token(strings.TrimSpace(now.stdout))); err != nil {
		t.Errorf("the new user token does not work: %v", err)
	}
	if _, err := api.ProjectConfig(ctx, exceptionless.Token(strings.TrimSpace(client.stdout))); err != nil {
		t.Errorf("the client token stopped working: %v", err)
	}
	st := e.ctl(nil, "status")
	if st.code != 0 || !strings.Contains(st.stdout, "password changes 1") {
		t.Errorf("status after the change: exit %d\n%s", st.code, st.stdout)
	}
	// A restart logs in with nothing but what Vault holds.
	e.stop()
	logins := e.ex.LoginAttempts()
	e.start()
	again := e.ctl(nil, "token", "--scope", "user")
	if again.code != 0 || again.stdout != now.stdout || e.ex.LoginAttempts() != logins {
		t.Fatalf("after restart: exit %d, same token %v, logins %d", again.code, again.stdout == now.stdout, e.ex.LoginAttempts()-logins)
	}
	e.checkNoSecrets(r.stdout, r.stderr, st.stdout)
}
