package main

import (
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exless/exless/daemon/policy"
)

func TestConfigExplain(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "exlessd.hcl")
	body := `
exceptionless {
  url           = "https://e.example"
  email         = "a@example.com"
  password_file = "/nonexistent/pw"
}
vault {
  address    = "https://v.example"
  token_file = "/nonexistent/token"
  path       = "p"
}
rule "deploy" {
  users    = ["4242"]
  units    = ["deploy.service"]
  scopes   = ["client"]
  projects = ["Acme/web"]
}
rule "ops" {
  groups  = ["4343"]
  actions = ["reload"]
}
`
	writeFile(t, conf, body)
	explainQ := func(t *testing.T, q url.Values) policy.Explanation {
		t.Helper()
		out, err := runCmd(t, "config", "explain", "--config", conf, "--query", q.Encode())
		if err != nil {
			t.Fatalf("explain %s: %v\n%s", q.Encode(), err, out)
		}
		var ex policy.Explanation
		if err := json.Unmarshal([]byte(out), &ex); err != nil {
			t.Fatalf("output is not an explanation: %v\n%s", err, out)
		}
		return ex
	}
	for _, tc := range []struct {
		q     url.Values
		allow bool
		rule  string
	}{
		{url.Values{"uid": {"4242"}, "unit": {"deploy.service"}, "scope": {"client"}, "project": {"Acme/web"}}, true, "deploy"},
		{url.Values{"uid": {"4242"}, "unit": {"other.service"}, "scope": {"client"}, "project": {"Acme/web"}}, false, ""},
		{url.Values{"uid": {"4242"}, "unit": {"deploy.service"}, "scope": {"client"}, "project": {"Acme/api"}}, false, ""},
		{url.Values{"uid": {"4242"}, "unit": {"deploy.service"}, "scope": {"user"}}, false, ""},
		{url.Values{"uid": {"1"}, "gid": {"4343"}, "action": {"reload"}}, true, "ops"},
		{url.Values{"uid": {"1"}, "gid": {"4344"}, "action": {"reload"}}, false, ""},
	} {
		ex := explainQ(t, tc.q)
		if ex.Allow != tc.allow || ex.Rule != tc.rule || ex.Reason == "" {
			t.Errorf("%s: allow=%v rule=%q reason=%q, want allow=%v rule=%q", tc.q.Encode(), ex.Allow, ex.Rule, ex.Reason, tc.allow, tc.rule)
		}
	}

	for _, tc := range []struct {
		name, conf, query, want string
	}{
		{"bad uid", conf, "uid=x", "uid must be a number"},
		{"bad query", conf, "uid=%zz", "--query"},
		{"missing file", filepath.Join(dir, "none.hcl"), "uid=1", "pass --config FILE"},
		{"not configured", writeConf(t, "configured = false\n"+body), "uid=4242", "configured = false"},
		{"rule for nobody", writeConf(t, body+"rule \"x\" {\n  scopes = [\"user\"]\n}\n"), "uid=1", "rule.x.users"},
	} {
		out, err := runCmd(t, "config", "explain", "--config", tc.conf, "--query", tc.query)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to say %q (output %q)", tc.name, err, tc.want, out)
		}
	}
}

// writeConf writes body to a config file of its own.
func writeConf(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "exlessd.hcl")
	writeFile(t, p, body)
	return p
}
