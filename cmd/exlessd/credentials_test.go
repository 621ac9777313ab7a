package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/credsock"
	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/policy"
	"github.com/exless/exless/vaultstore"
)

func TestUnitRules(t *testing.T) {
	rules := []policy.Rule{
		{Name: "root", Users: []string{"root"}, Scopes: []string{"user"}},
		{Name: "unit", Units: []string{"deploy.service"}, Scopes: []string{"client"}, Projects: []string{"*"}},
		{Name: "unit-and-user", Units: []string{"x.service"}, Users: []string{"alice"}, Scopes: []string{"client"}, Projects: []string{"*"}},
		{Name: "unit-and-exe", Units: []string{"x.service"}, ExePaths: []string{"/usr/bin/x"}, Scopes: []string{"client"}, Projects: []string{"*"}},
		{Name: "unit-not-unit", Units: []string{"*.service"}, NotUnits: []string{"evil.service"}, Scopes: []string{"client"}, Projects: []string{"*"}},
	}
	var names []string
	for _, r := range unitRules(rules) {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); got != "unit,unit-not-unit" {
		t.Errorf("unitRules kept %s, want unit,unit-not-unit", got)
	}
}

func TestParseCredentialID(t *testing.T) {
	for id, want := range map[string]string{
		"exceptionless-user":                            "user/",
		"exceptionless-client.537650f3b77efe23a47914f4": "client/537650f3b77efe23a47914f4",
		"exceptionless-client.org/name":                 "",
		"exceptionless-client.":                         "",
		"vault-token":                                   "",
	} {
		r, err := parseCredentialID(id)
		got := ""
		if err == nil {
			got = r.Scope + "/" + r.Project
		}
		if got != want {
			t.Errorf("parseCredentialID(%q) = %q (%v), want %q", id, got, err, want)
		}
	}
}

func TestCredentialDecisions(t *testing.T) {
	e := newTestEnv(t)
	store, err := vaultstore.New(context.Background(), vaultstore.Config{
		Address: e.vault.Addr, Token: e.vault.Token, Mount: "secret", Path: "exless/cred-" + randomHex(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	api, err := exceptionless.New(e.ex.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	broker := daemon.NewBroker(daemon.BrokerConfig{
		Store: store, Upstream: api, Email: e.ex.Account.Email,
		Password: func() ([]byte, error) { return []byte(e.ex.Account.Password), nil },
		Host:     "test", Logger: log,
	})
	c := &credentials{log: log, broker: broker}
	if err := c.setRules([]policy.Rule{
		// A rule for root must never answer a credential request, though
		// systemd's helper is root.
		{Name: "root", Users: []string{"0"}, Scopes: []string{"user", "client"}, Projects: []string{"*"}},
		{Name: "deploy", Units: []string{"deploy.service"}, Scopes: []string{"client"}, Projects: []string{"*"}},
	}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	project := e.ex.Account.Projects[0].ID
	req := credsock.Request{Unit: "deploy.service", ID: credClientPrefix + project, PID: 1}

	first, err := c.credential(ctx, req)
	if err != nil || len(first) == 0 {
		t.Fatalf("deploy.service: %v (%d bytes)", err, len(first))
	}
	// systemd connects once per command of the unit: same token, no mint.
	second, err := c.credential(ctx, req)
	if err != nil || string(second) != string(first) {
		t.Errorf("second request: %v; same token: %v", err, string(second) == string(first))
	}
	if n := len(e.ex.Tokens()); n == 0 {
		t.Error("the test server minted no token")
	}
	for _, tc := range []credsock.Request{
		{Unit: "other.service", ID: credClientPrefix + project},
		{Unit: "deploy.service", ID: credUser},
	} {
		if data, err := c.credential(ctx, tc); err == nil || len(data) != 0 {
			t.Errorf("%s asking for %s: got %d bytes, err %v; want a refusal", tc.Unit, tc.ID, len(data), err)
		}
	}
	logs := e.logs.String()
	for _, want := range []string{"decision=allow action=credential unit=deploy.service", "decision=deny action=credential unit=other.service", "token_fp="} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(logs, string(first)) {
		t.Error("the token appears in the log")
	}
}
