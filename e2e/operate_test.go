package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

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
	r = e.ctl(nil, "policy", "explain", "--uid", "4242", "--unit", "user@4242.service/deploy.service", "--scope", "client", "--project", project)
	if r.code != 0 || !strings.Contains(r.stdout, "deny") || !strings.Contains(r.stdout, "units:") {
		t.Errorf("explain a user unit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	e.checkNoSecrets(r.stdout, r.stderr)
}
