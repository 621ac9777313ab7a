package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/exless/exless/daemon/policy"
)

// DefaultConfigPath is where exlessd looks for its config file.
const DefaultConfigPath = "/etc/exless/exlessd.hcl"

// Config is the daemon's configuration: defaults, then the file, then flags.
type Config struct {
	Socket        string
	SocketMode    fs.FileMode
	SocketGroup   string // empty: the daemon's own group
	Exceptionless ExceptionlessConfig
	Vault         VaultConfig
	Rules         []policy.Rule
	// PollInterval and MaxStaleness: see BrokerConfig.
	PollInterval time.Duration
	MaxStaleness time.Duration
	Rotation     RotationConfig
	Fleet        FleetConfig
	Limits       Limits
	Metrics      MetricsConfig
	// AllowPlainHTTP permits http:// URLs for Exceptionless and Vault on
	// hosts other than loopback. Tokens would cross the network in clear.
	AllowPlainHTTP bool

	file   string
	ranges map[string]hcl.Range // field path -> where the file set it
}

// ExceptionlessConfig says where and as whom to log in.
type ExceptionlessConfig struct {
	URL          string
	Email        string
	PasswordFile string
	// PasswordVaultKey, instead of PasswordFile, keeps the password in
	// Vault under this key of vault.path, in the same record as the user
	// token, so that exless can change it (exlessctl rotate --scope user
	// --password) and publish the new password with its token in one
	// check-and-set write.
	PasswordVaultKey string
	CAFile           string // extra CA for a private Exceptionless server
}

// VaultConfig says where tokens are kept. The Vault token itself is never
// in the config: it comes from TokenFile or VAULT_TOKEN.
type VaultConfig struct {
	Address        string   // empty: VAULT_ADDR
	Addresses      []string // several nodes, tried in turn; Address is the first if both are set
	TokenFile      string   // empty: AppRole, else VAULT_TOKEN
	AppRole        *AppRoleConfig
	Mount          string
	Path           string
	Namespace      string // Vault Enterprise
	CAFile         string
	ClientCertFile string
	ClientKeyFile  string
	TLSServerName  string
}

// AppRoleConfig is Vault AppRole login with ids read from files (a bare
// file name is looked up in $CREDENTIALS_DIRECTORY).
type AppRoleConfig struct {
	RoleIDFile   string
	SecretIDFile string
	Mount        string // default "approle"
}

// RotationConfig governs client token rotation.
type RotationConfig struct {
	Grace  time.Duration // how long a rotated-out token stays valid
	MaxAge time.Duration // rotate tokens older than this; zero: never
}

// MetricsConfig sets up a listener of its own for a Prometheus scraper.
// It serves GET /metrics to whoever can connect, without the policy (a TCP
// peer cannot be identified); the metrics hold no secrets. The API socket's
// /v1/metrics, under the policy, is always there.
type MetricsConfig struct {
	// Listen is a loopback "host:port" or an absolute Unix socket path
	// (made with socket_mode and socket_group); empty: no such listener.
	Listen string
}

// IsSocket reports whether Listen names a Unix socket.
func (m MetricsConfig) IsSocket() bool { return strings.HasPrefix(m.Listen, "/") }

// FleetConfig governs how daemons sharing a Vault path coordinate.
type FleetConfig struct {
	LeaseTTL    time.Duration
	LoginBudget int // login attempts per quarter hour for the whole fleet
}

// DefaultConfig returns the configuration used for anything a file leaves out.
func DefaultConfig() Config {
	return Config{
		Socket:       "/run/exless/exlessd.sock",
		SocketMode:   0o660,
		Vault:        VaultConfig{Mount: "secret"},
		PollInterval: DefaultPollInterval,
		MaxStaleness: DefaultMaxStaleness,
		Rotation:     RotationConfig{Grace: DefaultGrace},
		Fleet:        FleetConfig{LeaseTTL: DefaultLeaseTTL, LoginBudget: DefaultLoginBudget},
		Limits:       DefaultLimits,
	}
}

// ConfigError is a problem with one field of a config file.
type ConfigError struct {
	File  string
	Line  int // 0 when the field was not in the file
	Field string
	Err   error
}

func (e *ConfigError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if loc == "" {
		return fmt.Sprintf("%s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", loc, e.Field, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// The file's shape. Pointers tell "absent" from "empty".
type fileConfig struct {
	Socket        *string             `hcl:"socket,optional"`
	SocketMode    *string             `hcl:"socket_mode,optional"`
	SocketGroup   *string             `hcl:"socket_group,optional"`
	Exceptionless *exceptionlessBlock `hcl:"exceptionless,block"`
	Vault         *vaultBlock         `hcl:"vault,block"`
	Rules         []ruleBlock         `hcl:"rule,block"`
	PollInterval  *string             `hcl:"poll_interval,optional"`
	AllowPlain    *bool               `hcl:"allow_plain_http,optional"`
	MaxStaleness  *string             `hcl:"max_staleness,optional"`
	Rotation      *rotationBlock      `hcl:"rotation,block"`
	Fleet         *fleetBlock         `hcl:"fleet,block"`
	Limits        *limitsBlock        `hcl:"limits,block"`
	Metrics       *metricsBlock       `hcl:"metrics,block"`
}

type metricsBlock struct {
	Listen *string `hcl:"listen,optional"`
}

type limitsBlock struct {
	MaxConnections       *int     `hcl:"max_connections,optional"`
	MaxConnectionsPerUID *int     `hcl:"max_connections_per_uid,optional"`
	RequestsPerSecond    *float64 `hcl:"requests_per_second,optional"`
	Burst                *int     `hcl:"burst,optional"`
	HeaderTimeout        *string  `hcl:"header_timeout,optional"`
	RequestTimeout       *string  `hcl:"request_timeout,optional"`
	WriteTimeout         *string  `hcl:"write_timeout,optional"`
	IdleTimeout          *string  `hcl:"idle_timeout,optional"`
	MaxHeaderBytes       *int     `hcl:"max_header_bytes,optional"`
	MaxBodyBytes         *int64   `hcl:"max_body_bytes,optional"`
	ExeHashConcurrency   *int     `hcl:"exe_hash_concurrency,optional"`
}

type rotationBlock struct {
	Grace  *string `hcl:"grace,optional"`
	MaxAge *string `hcl:"max_age,optional"`
}

type fleetBlock struct {
	LeaseTTL    *string `hcl:"lease_ttl,optional"`
	LoginBudget *int    `hcl:"login_budget,optional"`
}

type exceptionlessBlock struct {
	URL          *string `hcl:"url,optional"`
	Email        *string `hcl:"email,optional"`
	PasswordFile *string `hcl:"password_file,optional"`
	PasswordKey  *string `hcl:"password_vault_key,optional"`
	CAFile       *string `hcl:"ca_file,optional"`
}

type vaultBlock struct {
	Address        *string       `hcl:"address,optional"`
	Addresses      []string      `hcl:"addresses,optional"`
	TokenFile      *string       `hcl:"token_file,optional"`
	AppRole        *approleBlock `hcl:"approle,block"`
	Mount          *string       `hcl:"mount,optional"`
	Path           *string       `hcl:"path,optional"`
	Namespace      *string       `hcl:"namespace,optional"`
	CAFile         *string       `hcl:"ca_file,optional"`
	ClientCertFile *string       `hcl:"client_cert_file,optional"`
	ClientKeyFile  *string       `hcl:"client_key_file,optional"`
	TLSServerName  *string       `hcl:"tls_server_name,optional"`
}

type approleBlock struct {
	RoleIDFile   string  `hcl:"role_id_file"`
	SecretIDFile string  `hcl:"secret_id_file"`
	Mount        *string `hcl:"mount,optional"`
}

type ruleBlock struct {
	Name      string   `hcl:"name,label"`
	Users     []string `hcl:"users,optional"`
	Groups    []string `hcl:"groups,optional"`
	Units     []string `hcl:"units,optional"`
	ExePaths  []string `hcl:"exe_paths,optional"`
	ExeSHA256 []string `hcl:"exe_sha256,optional"`
	NotUsers  []string `hcl:"not_users,optional"`
	NotGroups []string `hcl:"not_groups,optional"`
	NotUnits  []string `hcl:"not_units,optional"`
	Scopes    []string `hcl:"scopes,optional"`
	Projects  []string `hcl:"projects,optional"`
	Actions   []string `hcl:"actions,optional"`
}

// LoadConfig reads, parses and validates the config file at filename.
func LoadConfig(filename string) (Config, error) {
	src, err := os.ReadFile(filename)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w (pass --config FILE or create %s)", err, DefaultConfigPath)
	}
	cfg, err := ParseConfig(filename, src)
	if err != nil {
		return Config{}, err
	}
	return cfg, cfg.Validate()
}

// ParseConfig parses HCL source over DefaultConfig. It checks syntax and
// types; Validate checks values. Relative file paths in the config are taken
// relative to the config file's directory.
func ParseConfig(filename string, src []byte) (Config, error) {
	cfg := DefaultConfig()
	cfg.file = filename
	cfg.ranges = map[string]hcl.Range{}
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return cfg, diagError(diags)
	}
	var fc fileConfig
	if diags := gohcl.DecodeBody(f.Body, nil, &fc); diags.HasErrors() {
		return cfg, diagError(diags)
	}
	body := f.Body.(*hclsyntax.Body)
	cfg.noteRanges("", body)

	base := filepath.Dir(filename)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	// A bare file name (no slash) names a systemd credential when the
	// daemon runs with one ($CREDENTIALS_DIRECTORY, from LoadCredential=);
	// otherwise it is relative to the config file like any other path.
	credDir := os.Getenv("CREDENTIALS_DIRECTORY")
	relCred := func(p string) string {
		if p != "" && credDir != "" && !strings.Contains(p, "/") && p != "." && p != ".." {
			return filepath.Join(credDir, p)
		}
		return rel(p)
	}
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&cfg.Socket, fc.Socket)
	set(&cfg.SocketGroup, fc.SocketGroup)
	if fc.SocketMode != nil {
		mode, err := strconv.ParseUint(*fc.SocketMode, 8, 32)
		if err != nil || mode > 0o777 {
			return cfg, cfg.fieldError("socket_mode", fmt.Errorf("%q is not an octal file mode such as \"0660\"", *fc.SocketMode))
		}
		cfg.SocketMode = fs.FileMode(mode)
	}
	if e := fc.Exceptionless; e != nil {
		set(&cfg.Exceptionless.URL, e.URL)
		set(&cfg.Exceptionless.Email, e.Email)
		set(&cfg.Exceptionless.PasswordFile, e.PasswordFile)
		set(&cfg.Exceptionless.PasswordVaultKey, e.PasswordKey)
		set(&cfg.Exceptionless.CAFile, e.CAFile)
	}
	if v := fc.Vault; v != nil {
		set(&cfg.Vault.Address, v.Address)
		cfg.Vault.Addresses = v.Addresses
		set(&cfg.Vault.TokenFile, v.TokenFile)
		set(&cfg.Vault.Mount, v.Mount)
		set(&cfg.Vault.Path, v.Path)
		set(&cfg.Vault.Namespace, v.Namespace)
		set(&cfg.Vault.CAFile, v.CAFile)
		set(&cfg.Vault.ClientCertFile, v.ClientCertFile)
		set(&cfg.Vault.ClientKeyFile, v.ClientKeyFile)
		set(&cfg.Vault.TLSServerName, v.TLSServerName)
		if a := v.AppRole; a != nil {
			cfg.Vault.AppRole = &AppRoleConfig{RoleIDFile: a.RoleIDFile, SecretIDFile: a.SecretIDFile}
			set(&cfg.Vault.AppRole.Mount, a.Mount)
		}
	}
	dur := func(field string, dst *time.Duration, v *string) error {
		if v == nil {
			return nil
		}
		d, err := time.ParseDuration(*v)
		if err != nil || d < 0 {
			return cfg.fieldError(field, fmt.Errorf("%q is not a duration such as \"30s\", \"15m\" or \"2h\"", *v))
		}
		*dst = d
		return nil
	}
	if fc.AllowPlain != nil {
		cfg.AllowPlainHTTP = *fc.AllowPlain
	}
	if err := dur("poll_interval", &cfg.PollInterval, fc.PollInterval); err != nil {
		return cfg, err
	}
	if err := dur("max_staleness", &cfg.MaxStaleness, fc.MaxStaleness); err != nil {
		return cfg, err
	}
	if r := fc.Rotation; r != nil {
		if err := dur("rotation.grace", &cfg.Rotation.Grace, r.Grace); err != nil {
			return cfg, err
		}
		if err := dur("rotation.max_age", &cfg.Rotation.MaxAge, r.MaxAge); err != nil {
			return cfg, err
		}
	}
	if f := fc.Fleet; f != nil {
		if err := dur("fleet.lease_ttl", &cfg.Fleet.LeaseTTL, f.LeaseTTL); err != nil {
			return cfg, err
		}
		if f.LoginBudget != nil {
			cfg.Fleet.LoginBudget = *f.LoginBudget
		}
	}
	if l := fc.Limits; l != nil {
		setInt := func(dst *int, v *int) {
			if v != nil {
				*dst = *v
			}
		}
		setInt(&cfg.Limits.MaxConnections, l.MaxConnections)
		setInt(&cfg.Limits.MaxConnectionsPerUID, l.MaxConnectionsPerUID)
		setInt(&cfg.Limits.Burst, l.Burst)
		setInt(&cfg.Limits.MaxHeaderBytes, l.MaxHeaderBytes)
		setInt(&cfg.Limits.ExeHashConcurrency, l.ExeHashConcurrency)
		if l.RequestsPerSecond != nil {
			cfg.Limits.RequestsPerSecond = *l.RequestsPerSecond
		}
		if l.MaxBodyBytes != nil {
			cfg.Limits.MaxBodyBytes = *l.MaxBodyBytes
		}
		for _, d := range []struct {
			field string
			dst   *time.Duration
			v     *string
		}{
			{"limits.header_timeout", &cfg.Limits.HeaderTimeout, l.HeaderTimeout},
			{"limits.request_timeout", &cfg.Limits.RequestTimeout, l.RequestTimeout},
			{"limits.write_timeout", &cfg.Limits.WriteTimeout, l.WriteTimeout},
			{"limits.idle_timeout", &cfg.Limits.IdleTimeout, l.IdleTimeout},
		} {
			if err := dur(d.field, d.dst, d.v); err != nil {
				return cfg, err
			}
		}
	}
	if m := fc.Metrics; m != nil {
		set(&cfg.Metrics.Listen, m.Listen)
	}
	cfg.Exceptionless.PasswordFile = relCred(cfg.Exceptionless.PasswordFile)
	cfg.Vault.TokenFile = relCred(cfg.Vault.TokenFile)
	cfg.Vault.CAFile = rel(cfg.Vault.CAFile)
	cfg.Vault.ClientCertFile = rel(cfg.Vault.ClientCertFile)
	cfg.Vault.ClientKeyFile = relCred(cfg.Vault.ClientKeyFile)
	cfg.Exceptionless.CAFile = rel(cfg.Exceptionless.CAFile)
	if a := cfg.Vault.AppRole; a != nil {
		a.RoleIDFile, a.SecretIDFile = relCred(a.RoleIDFile), relCred(a.SecretIDFile)
	}
	for _, r := range fc.Rules {
		cfg.Rules = append(cfg.Rules, policy.Rule{
			Name: r.Name, Users: r.Users, Groups: r.Groups, Units: r.Units,
			ExePaths: r.ExePaths, ExeSHA256: r.ExeSHA256,
			NotUsers: r.NotUsers, NotGroups: r.NotGroups, NotUnits: r.NotUnits,
			Scopes: r.Scopes, Projects: r.Projects, Actions: r.Actions,
		})
	}
	return cfg, nil
}

// noteRanges records where each attribute and block was set, keyed by its
// dotted path (rules by "rule.NAME"), for error messages.
func (c *Config) noteRanges(prefix string, body *hclsyntax.Body) {
	for name, a := range body.Attributes {
		c.ranges[prefix+name] = a.SrcRange
	}
	for _, b := range body.Blocks {
		key := prefix + b.Type
		if len(b.Labels) > 0 {
			key += "." + b.Labels[0]
		}
		c.ranges[key] = b.DefRange()
		c.noteRanges(key+".", b.Body)
	}
}

func (c *Config) fieldError(field string, err error) *ConfigError {
	e := &ConfigError{File: c.file, Field: field, Err: err}
	if r, ok := c.ranges[field]; ok {
		e.Line = r.Start.Line
	} else if i := strings.LastIndex(field, "."); i > 0 {
		// Point at the enclosing block when the field itself is missing.
		if r, ok := c.ranges[field[:i]]; ok {
			e.Line = r.Start.Line
		}
	}
	return e
}

func diagError(diags hcl.Diagnostics) error {
	var msgs []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		loc := ""
		if d.Subject != nil {
			loc = fmt.Sprintf("%s:%d: ", d.Subject.Filename, d.Subject.Start.Line)
		}
		msg := loc + d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		msgs = append(msgs, msg)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// checkPlain refuses http:// to anything but loopback unless the config
// says otherwise: tokens and passwords would cross the network in clear.
func (c *Config) checkPlain(u *url.URL) error {
	if u.Scheme != "http" || c.AllowPlainHTTP {
		return nil
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("plain http to %s would send tokens in clear: use https, or set allow_plain_http = true", host)
}

// Validate checks values and says which field is wrong and how to fix it.
func (c *Config) Validate() error {
	if c.ranges == nil {
		c.ranges = map[string]hcl.Range{}
	}
	if c.Socket == "" || !filepath.IsAbs(c.Socket) {
		return c.fieldError("socket", errors.New("must be an absolute path"))
	}
	// sun_path holds 108 bytes including the terminating NUL.
	if len(c.Socket) > 107 {
		return c.fieldError("socket", fmt.Errorf("path is %d bytes; unix sockets allow at most 107", len(c.Socket)))
	}
	if c.SocketMode&0o600 != 0o600 {
		return c.fieldError("socket_mode", errors.New("the owner needs read and write (at least 0600)"))
	}
	if c.SocketMode&0o007 != 0 {
		return c.fieldError("socket_mode", errors.New("other users must not get access (use 0660 and socket_group)"))
	}
	if c.Exceptionless.URL == "" {
		return c.fieldError("exceptionless.url", errors.New(`required, e.g. "https://api.exceptionless.com"`))
	}
	u, err := url.Parse(c.Exceptionless.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return c.fieldError("exceptionless.url", errors.New("must be an http or https URL with a host"))
	}
	if u.User != nil {
		return c.fieldError("exceptionless.url", errors.New("must not carry credentials; use email and password_file"))
	}
	if err := c.checkPlain(u); err != nil {
		return c.fieldError("exceptionless.url", err)
	}
	if strings.TrimSpace(c.Exceptionless.Email) == "" {
		return c.fieldError("exceptionless.email", errors.New("required: the account to log in as"))
	}
	switch e := c.Exceptionless; {
	case e.PasswordFile != "" && e.PasswordVaultKey != "":
		return c.fieldError("exceptionless.password_vault_key", errors.New("set either password_file or password_vault_key, not both"))
	case e.PasswordVaultKey != "":
		if err := CheckPasswordKey(e.PasswordVaultKey); err != nil {
			return c.fieldError("exceptionless.password_vault_key", err)
		}
	case e.PasswordFile == "":
		return c.fieldError("exceptionless.password_file", errors.New("required: a file holding the password (a systemd credential is best), or password_vault_key to keep it in Vault"))
	}
	if c.Vault.Address == "" && len(c.Vault.Addresses) == 0 && os.Getenv("VAULT_ADDR") == "" {
		return c.fieldError("vault.address", errors.New("required (or vault.addresses, or VAULT_ADDR)"))
	}
	for i, a := range append([]string{c.Vault.Address}, c.Vault.Addresses...) {
		if a == "" {
			continue
		}
		field := "vault.address"
		if i > 0 {
			field = "vault.addresses"
		}
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return c.fieldError(field, fmt.Errorf("%q must be an http or https URL with a host", a))
		}
		if err := c.checkPlain(u); err != nil {
			return c.fieldError(field, err)
		}
	}
	if (c.Vault.ClientCertFile == "") != (c.Vault.ClientKeyFile == "") {
		return c.fieldError("vault.client_cert_file", errors.New("client_cert_file and client_key_file go together"))
	}
	if a := c.Vault.AppRole; a != nil {
		if c.Vault.TokenFile != "" {
			return c.fieldError("vault.approle", errors.New("use token_file or approle, not both"))
		}
		if a.RoleIDFile == "" || a.SecretIDFile == "" {
			return c.fieldError("vault.approle", errors.New("needs role_id_file and secret_id_file"))
		}
	}
	if c.Vault.Mount == "" || strings.Contains(c.Vault.Mount, "/") {
		return c.fieldError("vault.mount", errors.New(`must name a KV v2 mount such as "secret"`))
	}
	if p := c.Vault.Path; p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") ||
		path.Clean(p) != p || strings.HasPrefix(p, "..") {
		return c.fieldError("vault.path", errors.New(`must be a relative path under the mount, such as "exless/prod"`))
	}
	if c.PollInterval < time.Second {
		return c.fieldError("poll_interval", errors.New("must be at least 1s"))
	}
	if c.MaxStaleness < c.PollInterval {
		return c.fieldError("max_staleness", fmt.Errorf("must be at least poll_interval (%s)", c.PollInterval))
	}
	if c.Rotation.Grace <= c.PollInterval+c.MaxStaleness {
		// Hosts that have not yet polled the new token may serve the old one
		// for up to poll_interval + max_staleness; it must stay valid that long.
		return c.fieldError("rotation.grace", fmt.Errorf("must exceed poll_interval + max_staleness (%s)", c.PollInterval+c.MaxStaleness))
	}
	if c.Rotation.MaxAge != 0 && c.Rotation.MaxAge < time.Minute {
		return c.fieldError("rotation.max_age", errors.New("must be at least 1m, or 0 to never rotate by age"))
	}
	if c.Fleet.LeaseTTL < time.Second {
		return c.fieldError("fleet.lease_ttl", errors.New("must be at least 1s"))
	}
	if c.Fleet.LoginBudget < 1 || c.Fleet.LoginBudget > 4 {
		// Exceptionless refuses the sixth attempt per quarter hour, and
		// the web UI's own logins count too: keep a margin.
		return c.fieldError("fleet.login_budget", errors.New("must be between 1 and 4 (Exceptionless locks the account at the sixth attempt per quarter hour)"))
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if err := c.Metrics.validate(); err != nil {
		return c.fieldError("metrics.listen", err)
	}
	for _, r := range c.Rules {
		if err := r.Validate(); err != nil {
			var fe *policy.FieldError
			if errors.As(err, &fe) {
				return c.fieldError("rule."+r.Name+"."+fe.Field, fe.Err)
			}
			return c.fieldError("rule."+r.Name, err)
		}
	}
	return nil
}

// validateLimits checks the limits block: every limit must exist (none
// can be switched off) and the timeouts must nest.
func (c *Config) validateLimits() error {
	l := c.Limits
	switch {
	case l.MaxConnections < 1:
		return c.fieldError("limits.max_connections", errors.New("must be at least 1"))
	case l.MaxConnectionsPerUID < 1 || l.MaxConnectionsPerUID > l.MaxConnections:
		return c.fieldError("limits.max_connections_per_uid", fmt.Errorf("must be between 1 and max_connections (%d)", l.MaxConnections))
	case l.RequestsPerSecond <= 0 || l.Burst < 1:
		return c.fieldError("limits.requests_per_second", errors.New("requests_per_second must be above 0 and burst at least 1"))
	case l.HeaderTimeout < 100*time.Millisecond:
		return c.fieldError("limits.header_timeout", errors.New(`must be at least 100ms; "5s" suits local peers`))
	case l.RequestTimeout < l.HeaderTimeout:
		return c.fieldError("limits.request_timeout", fmt.Errorf("must be at least header_timeout (%s): it bounds headers and body together", l.HeaderTimeout))
	case l.WriteTimeout < l.RequestTimeout:
		// The write deadline runs from when the request was read, and a
		// token fetch may wait on Vault and Exceptionless.
		return c.fieldError("limits.write_timeout", fmt.Errorf("must be at least request_timeout (%s); \"1m\" leaves room for slow upstreams", l.RequestTimeout))
	case l.WriteTimeout < DefaultLeaseWait+5*time.Second:
		// A first fetch, a rotation or a password change may wait that
		// long for another daemon's lease; cutting it would lose the answer.
		return c.fieldError("limits.write_timeout", fmt.Errorf("must be at least %s: a mint or rotation may wait %s for the fleet lease", DefaultLeaseWait+5*time.Second, DefaultLeaseWait))
	case l.IdleTimeout < 100*time.Millisecond:
		return c.fieldError("limits.idle_timeout", errors.New("must be at least 100ms"))
	case l.MaxHeaderBytes < 1024:
		return c.fieldError("limits.max_header_bytes", errors.New("must be at least 1024 (a plain request needs a few hundred bytes)"))
	case l.MaxBodyBytes < 1:
		return c.fieldError("limits.max_body_bytes", errors.New("must be at least 1 (the API takes no bodies; the default 4096 is plenty)"))
	case l.ExeHashConcurrency < 1:
		return c.fieldError("limits.exe_hash_concurrency", errors.New("must be at least 1"))
	}
	return nil
}

// validate refuses addresses beyond loopback: the listener has no policy, so
// it must not be reachable from other hosts.
func (m MetricsConfig) validate() error {
	if m.Listen == "" {
		return nil
	}
	if m.IsSocket() {
		if len(m.Listen) > 107 {
			return fmt.Errorf("path is %d bytes; unix sockets allow at most 107", len(m.Listen))
		}
		return nil
	}
	host, port, err := net.SplitHostPort(m.Listen)
	if err != nil || port == "" {
		return fmt.Errorf("%q must be a loopback host:port such as \"127.0.0.1:9464\", or an absolute socket path", m.Listen)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port must be a number (0 picks a free one, logged at start)", m.Listen)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q: only loopback addresses (127.0.0.1, ::1, localhost): the metrics listener has no policy; scrape other hosts through a local agent or the API socket's /v1/metrics", m.Listen)
	}
	return nil
}
