package daemon

import (
	"errors"
	"github.com/exless/exless/daemon/policy"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// contractConfig is the config from the walking-skeleton issue, which must
// keep working as written.
const contractConfig = `
socket       = "/run/exless/exlessd.sock"
socket_mode  = "0660"     # optional; default 0660
socket_group = "exless"   # optional; default: the daemon's group

exceptionless {
  url           = "https://api.exceptionless.com"
  email         = "ops@example.com"
  password_file = "/run/credentials/exlessd.service/exceptionless-password"
}

vault {
  address    = "https://vault.example.com:8200"
  token_file = "/run/credentials/exlessd.service/vault-token"   # or VAULT_TOKEN in the environment
  mount      = "secret"
  path       = "exless/prod"
}

rule "deployers" {
  groups   = ["exless-client"]
  scopes   = ["client"]
  projects = ["*"]
}

rule "ops" {
  users    = ["root"]
  scopes   = ["user", "client"]
  projects = ["*"]
}
`

func TestParseContractConfig(t *testing.T) {
	cfg, err := ParseConfig("exlessd.hcl", []byte(contractConfig))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if cfg.Socket != "/run/exless/exlessd.sock" || cfg.SocketMode != 0o660 || cfg.SocketGroup != "exless" {
		t.Errorf("socket settings = %q %o %q", cfg.Socket, cfg.SocketMode, cfg.SocketGroup)
	}
	if cfg.Exceptionless.Email != "ops@example.com" || cfg.Vault.Path != "exless/prod" || cfg.Vault.Mount != "secret" {
		t.Errorf("parsed %+v", cfg)
	}
	if len(cfg.Rules) != 2 || cfg.Rules[0].Name != "deployers" || cfg.Rules[1].Users[0] != "root" {
		t.Errorf("rules = %+v", cfg.Rules)
	}
}

func TestParseConfigDefaultsAndRelativePaths(t *testing.T) {
	cfg, err := ParseConfig("/etc/exless/exlessd.hcl", []byte(`
exceptionless {
  url = "http://127.0.0.1:5000"
  email = "a@b"
  password_file = "pw"
}
vault {
  address = "http://127.0.0.1:8200"
  path = "exless"
}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Socket != DefaultConfig().Socket || cfg.SocketMode != 0o660 || cfg.Vault.Mount != "secret" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.Exceptionless.PasswordFile != "/etc/exless/pw" {
		t.Errorf("password_file = %q, want it relative to the config", cfg.Exceptionless.PasswordFile)
	}
}

func TestConfigErrorsNameFileLineAndField(t *testing.T) {
	t.Setenv("VAULT_ADDR", "")
	tests := []struct {
		name    string
		edit    func(string) string
		want    []string // substrings of the error
		parsing bool
	}{
		{"unknown attribute", func(s string) string {
			return strings.Replace(s, `mount      = "secret"`, `mount = "secret"`+"\n  mout = 1", 1)
		},
			[]string{"exlessd.hcl:16", "mout"}, true},
		{"syntax", func(s string) string { return s + "\nrule {" }, []string{"exlessd.hcl:"}, true},
		{"bad mode", func(s string) string { return strings.Replace(s, `"0660"`, `"rw"`, 1) },
			[]string{"exlessd.hcl:3", "socket_mode"}, true},
		{"world mode", func(s string) string { return strings.Replace(s, `"0660"`, `"0666"`, 1) },
			[]string{"exlessd.hcl:3", "socket_mode"}, false},
		{"relative socket", func(s string) string { return strings.Replace(s, `"/run/exless/exlessd.sock"`, `"x.sock"`, 1) },
			[]string{"exlessd.hcl:2", "socket:"}, false},
		{"bad url", func(s string) string { return strings.Replace(s, `"https://api.exceptionless.com"`, `"ftp://x"`, 1) },
			[]string{"exlessd.hcl:7", "exceptionless.url"}, false},
		{"missing email", func(s string) string { return strings.Replace(s, `email         = "ops@example.com"`, ``, 1) },
			[]string{"exlessd.hcl:6", "exceptionless.email"}, false},
		{"missing vault address", func(s string) string {
			return strings.Replace(s, `address    = "https://vault.example.com:8200"`, ``, 1)
		},
			[]string{"exlessd.hcl:12", "vault.address"}, false},
		{"bad path", func(s string) string { return strings.Replace(s, `"exless/prod"`, `"/abs"`, 1) },
			[]string{"exlessd.hcl:16", "vault.path"}, false},
		{"bad scope", func(s string) string { return strings.Replace(s, `scopes   = ["client"]`, `scopes = ["admin"]`, 1) },
			[]string{"exlessd.hcl:21", "rule.deployers.scopes", "admin"}, false},
		{"rule without matcher", func(s string) string { return strings.Replace(s, `groups   = ["exless-client"]`, ``, 1) },
			[]string{"exlessd.hcl:19", "rule.deployers.users"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("exlessd.hcl", []byte(tc.edit(contractConfig)))
			if tc.parsing {
				if err == nil {
					t.Fatal("ParseConfig accepted a bad file")
				}
			} else {
				if err != nil {
					t.Fatalf("ParseConfig: %v", err)
				}
				err = cfg.Validate()
				var ce *ConfigError
				if !errors.As(err, &ce) {
					t.Fatalf("Validate = %v, want a *ConfigError", err)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigMissingFileSaysWhatToDo(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.hcl"))
	if err == nil || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("LoadConfig(missing) = %v, want a hint about --config", err)
	}
}

func TestLoadConfigFromFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "exlessd.hcl")
	if err := os.WriteFile(p, []byte(contractConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err != nil {
		t.Fatal(err)
	}
}

func TestParseFullRule(t *testing.T) {
	src := contractConfig + `
rule "deploy-unit" {
  units      = ["deploy*.service", "user@1000.service/app.slice/deploy.service"]
  not_units  = ["deploy-test.service"]
  exe_paths  = ["/usr/local/bin/deploy"]
  exe_sha256 = ["` + strings.Repeat("ab", 32) + `"]
  not_users  = ["nobody"]
  not_groups = ["nogroup"]
  scopes     = ["client"]
  projects   = ["Acme/web"]
  actions    = ["token", "rotate", "status"]
}`
	cfg, err := ParseConfig("exlessd.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := cfg.Rules[2]
	if len(r.Units) != 2 || r.NotUnits[0] != "deploy-test.service" || r.ExePaths[0] != "/usr/local/bin/deploy" ||
		len(r.ExeSHA256) != 1 || r.NotUsers[0] != "nobody" || r.NotGroups[0] != "nogroup" ||
		r.Projects[0] != "Acme/web" || len(r.Actions) != 3 {
		t.Errorf("rule = %+v", r)
	}
}

// FuzzParseConfig feeds arbitrary text to the config and policy parsers: they
// must return an error or a config, never panic, and a config that validates
// must compile.
func FuzzParseConfig(f *testing.F) {
	f.Add(contractConfig)
	f.Add(`rule "x" { users = ["0"] scopes = ["user"] }`)
	f.Add(`rule "x" { units = ["user@1000.service/*"] not_groups = ["0"] actions = ["status"] }`)
	f.Add(`socket_mode = "0777"` + "\n" + `vault { path = "../x" }`)
	f.Fuzz(func(t *testing.T, src string) {
		cfg, err := ParseConfig("fuzz.hcl", []byte(src))
		if err != nil {
			return
		}
		if cfg.Validate() != nil {
			return
		}
		if _, _, err := policy.Compile(cfg.Rules, fixedResolver{}); err != nil {
			// Only negations that do not resolve may fail here.
			if !strings.Contains(err.Error(), "not_") {
				t.Fatalf("a validated config does not compile: %v", err)
			}
		}
	})
}

type fixedResolver struct{}

func (fixedResolver) LookupUser(string) (uint32, error)  { return 0, errors.New("unknown") }
func (fixedResolver) LookupGroup(string) (uint32, error) { return 0, errors.New("unknown") }

func TestLifecycleSettings(t *testing.T) {
	src := contractConfig + `
poll_interval = "10s"
max_staleness = "30m"
rotation {
  grace   = "1h"
  max_age = "720h"
}
fleet {
  lease_ttl    = "20s"
  login_budget = 2
}`
	cfg, err := ParseConfig("exlessd.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.PollInterval != 10*time.Second || cfg.MaxStaleness != 30*time.Minute || cfg.Rotation.Grace != time.Hour ||
		cfg.Rotation.MaxAge != 720*time.Hour || cfg.Fleet.LeaseTTL != 20*time.Second || cfg.Fleet.LoginBudget != 2 {
		t.Errorf("parsed %+v %+v %+v", cfg.Rotation, cfg.Fleet, cfg.PollInterval)
	}
	for _, tc := range []struct{ edit, field string }{
		{`poll_interval = "soon"`, "poll_interval"},
		{"rotation {\n grace = \"1m\"\n}", "rotation.grace"},
		{"fleet {\n login_budget = 5\n}", "fleet.login_budget"},
		{`max_staleness = "1s"`, "max_staleness"},
	} {
		cfg, err := ParseConfig("exlessd.hcl", []byte(contractConfig+"\n"+tc.edit))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v, want one naming %s", tc.edit, err, tc.field)
		}
	}
}

func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	for _, tc := range []struct {
		url, extra string
		ok         bool
	}{
		{"http://127.0.0.1:5000", "", true},
		{"http://localhost:5000", "", true},
		{"http://[::1]:5000", "", true},
		{"http://api.example.com", "", false},
		{"http://api.example.com", "allow_plain_http = true", true},
		{"https://api.example.com", "", true},
	} {
		src := strings.Replace(contractConfig, `"https://api.exceptionless.com"`, `"`+tc.url+`"`, 1) + "\n" + tc.extra
		cfg, err := ParseConfig("exlessd.hcl", []byte(src))
		if err == nil {
			err = cfg.Validate()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s %s: %v, want ok=%v", tc.url, tc.extra, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "allow_plain_http") {
			t.Errorf("error %q does not say how to allow it", err)
		}
	}
}

func TestCredentialNames(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "/run/credentials/exlessd.service")
	src := strings.Replace(contractConfig, `"/run/credentials/exlessd.service/exceptionless-password"`, `"exceptionless-password"`, 1)
	src = strings.Replace(src, `token_file = "/run/credentials/exlessd.service/vault-token"`, `approle {
    role_id_file   = "role-id"
    secret_id_file = "secret-id"
  }`, 1)
	cfg, err := ParseConfig("/etc/exless/exlessd.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Exceptionless.PasswordFile != "/run/credentials/exlessd.service/exceptionless-password" ||
		cfg.Vault.AppRole == nil || cfg.Vault.AppRole.SecretIDFile != "/run/credentials/exlessd.service/secret-id" {
		t.Errorf("credential names not resolved: %q %+v", cfg.Exceptionless.PasswordFile, cfg.Vault.AppRole)
	}
}

func TestPasswordVaultKey(t *testing.T) {
	inVault := strings.Replace(contractConfig,
		`password_file = "/run/credentials/exlessd.service/exceptionless-password"`, `password_vault_key = "account"`, 1)
	cfg, err := ParseConfig("exlessd.hcl", []byte(inVault))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil || cfg.Exceptionless.PasswordVaultKey != "account" || cfg.Exceptionless.PasswordFile != "" {
		t.Fatalf("password_vault_key: %v", err)
	}
	for _, tc := range []struct{ edit, want string }{
		{`password_vault_key = "account"` + "\n" + `password_file = "pw"`, "not both"},
		{`password_vault_key = "lease"`, "exless uses for itself"},
		{`password_vault_key = "user"`, "exless uses for itself"},
		{`password_vault_key = "client/x"`, "exless uses for itself"},
		{`password_vault_key = "/abs"`, "without leading"},
		{`password_vault_key = "a//b"`, "empty"},
		{`password_vault_key = "a b"`, "letters, digits"},
		{``, "or password_vault_key"},
	} {
		src := strings.Replace(contractConfig,
			`password_file = "/run/credentials/exlessd.service/exceptionless-password"`, tc.edit, 1)
		cfg, err := ParseConfig("exlessd.hcl", []byte(src))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "exceptionless.password") {
			t.Errorf("%q: %v, want an error on exceptionless.password_* saying %q", tc.edit, err, tc.want)
		}
	}
}

func TestLimitsSettings(t *testing.T) {
	cfg, err := ParseConfig("exlessd.hcl", []byte(contractConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits != DefaultLimits {
		t.Errorf("a file without limits gets %+v, want the defaults %+v", cfg.Limits, DefaultLimits)
	}
	src := contractConfig + `
limits {
  max_connections         = 100
  max_connections_per_uid = 10
  requests_per_second     = 5
  burst                   = 10
  header_timeout          = "2s"
  request_timeout         = "4s"
  write_timeout           = "30s"
  idle_timeout            = "20s"
  max_header_bytes        = 8192
  max_body_bytes          = 1024
  exe_hash_concurrency    = 1
}`
	if cfg, err = ParseConfig("exlessd.hcl", []byte(src)); err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{
		MaxConnections: 100, MaxConnectionsPerUID: 10, RequestsPerSecond: 5, Burst: 10,
		HeaderTimeout: 2 * time.Second, RequestTimeout: 4 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 20 * time.Second, MaxHeaderBytes: 8192, MaxBodyBytes: 1024, ExeHashConcurrency: 1,
	}
	if cfg.Limits != want {
		t.Errorf("parsed %+v, want %+v", cfg.Limits, want)
	}
	for _, tc := range []struct{ edit, field, hint string }{
		{"max_connections_per_uid = 300", "limits.max_connections_per_uid", "between 1 and max_connections (256)"},
		{"max_connections = 0", "limits.max_connections", "at least 1"},
		{`header_timeout = "soon"`, "limits.header_timeout", "duration"},
		{`header_timeout = "1ms"`, "limits.header_timeout", "at least 100ms"},
		{`request_timeout = "1s"`, "limits.request_timeout", "at least header_timeout (5s)"},
		{`write_timeout = "5s"`, "limits.write_timeout", "at least request_timeout (10s)"},
		{`write_timeout = "15s"`, "limits.write_timeout", "may wait 20s for the fleet lease"},
		{`idle_timeout = "0s"`, "limits.idle_timeout", "at least 100ms"},
		{"max_header_bytes = 100", "limits.max_header_bytes", "at least 1024"},
		{"max_body_bytes = 0", "limits.max_body_bytes", "at least 1"},
		{"exe_hash_concurrency = 0", "limits.exe_hash_concurrency", "at least 1"},
	} {
		cfg, err := ParseConfig("exlessd.hcl", []byte(contractConfig+"\nlimits {\n  "+tc.edit+"\n}"))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.hint) {
			t.Errorf("%s: error %v, want one naming %s and saying %q", tc.edit, err, tc.field, tc.hint)
		}
	}
}
