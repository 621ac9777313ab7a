// Package vaultstore keeps exless token records in HashiCorp Vault's KV
// version 2 secrets engine. It is the only package that imports
// github.com/hashicorp/vault/api.
//
// It owns the Vault side of daemon.TokenStore: the client (addresses, TLS,
// namespace and proxies, with the usual VAULT_* environment underneath),
// the layout of a record as KV data under <mount>/data/<path>/<key>, and the
// translation of Vault's answers into daemon.ErrNotFound and
// daemon.ErrConflict.
//
// Authentication: an inline token or VAULT_TOKEN; a token file (a Vault
// Agent sink or a systemd credential), read again whenever it changes; or
// AppRole, with the role ID and secret ID read from files. Run keeps the
// token alive in the background (the api's LifetimeWatcher renews it; an
// AppRole login or a token file re-read replaces it when renewal is over or
// Vault refuses it). Requests never wait for that: they use the current
// token, log in on demand only when there is no usable token at all, and
// back off after a failed login instead of storming Vault. AuthStatus says
// whether the token works and why not.
//
// Every write is a check-and-set against the version last read, so several
// daemons on several hosts can share one path, and each key carries
// cas_required so that nothing else writes it without check-and-set either.
// With several addresses (the nodes of a Raft cluster) every request fails
// over from a node that cannot be reached or cannot serve to the next, and
// stays with the node that answered; replaying a write on another node is
// safe because of the check-and-set.
//
// Errors name the key, the operation and the address, never a secret: not
// the record's token, Vault's token, a secret ID or a role ID.
package vaultstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/exless/exless/daemon"
)

// Defaults for Config fields left empty.
const (
	DefaultMount = "secret"
	DefaultPath  = "exless"
)

// dialTimeout bounds a connection attempt when there are several addresses:
// a node that drops packets must not hold up the failover for the api's
// whole timeout.
const dialTimeout = 3 * time.Second

// Config says where the records live and how to authenticate.
type Config struct {
	// Address of the Vault server, e.g. "https://vault.example:8200".
	// Empty, with no Addresses either: VAULT_ADDR, else the api default
	// https://127.0.0.1:8200.
	Address string
	// Addresses are the nodes of one Vault cluster, tried in turn (after
	// Address, if set). The store fails over when a node cannot be reached
	// or answers that it cannot serve (sealed, standby without an active
	// node), and stays with the node that answered last.
	Addresses []string
	// Token is a Vault token given inline. Prefer TokenFile or AppRole. It
	// never appears in printed or JSON forms of the Config.
	Token string `json:"-"`
	// TokenFile holds the Vault token, e.g. a Vault Agent sink or a systemd
	// credential. It is read again whenever it changes. Used when Token is
	// empty; VAULT_TOKEN comes last.
	TokenFile string
	// AppRole logs in with the AppRole auth method instead of a token.
	AppRole *AppRoleConfig
	// Namespace is the Vault Enterprise namespace; empty: VAULT_NAMESPACE.
	Namespace string
	// CAFile (a PEM file) or CACert (PEM bytes) verifies Vault's
	// certificate; CAFile wins if both are set. Empty: VAULT_CACERT, else
	// the system roots.
	CAFile string
	CACert []byte
	// ClientCertFile and ClientKeyFile authenticate the client to Vault's
	// TLS listener (both or neither).
	ClientCertFile string
	ClientKeyFile  string
	// TLSServerName overrides the name checked in Vault's certificate.
	TLSServerName string
	// Mount is the KV v2 mount; default "secret".
	Mount string
	// Path is the prefix of the records under the mount; default "exless".
	Path string
	// Timeout bounds each Vault request. Zero keeps the api default
	// (VAULT_CLIENT_TIMEOUT, else 60 s).
	Timeout time.Duration
}

// GoString shows whether Token is set, never its value.
func (c Config) GoString() string {
	approle := "nil"
	if c.AppRole != nil {
		approle = fmt.Sprintf("&vaultstore.AppRoleConfig{RoleIDFile:%q, SecretIDFile:%q, MountPath:%q}",
			c.AppRole.RoleIDFile, c.AppRole.SecretIDFile, c.AppRole.MountPath)
	}
	return fmt.Sprintf("vaultstore.Config{Address:%q, Addresses:%q, Token:%t, TokenFile:%q, AppRole:%s, Namespace:%q, "+
		"CAFile:%q, CACert:%d bytes, ClientCertFile:%q, ClientKeyFile:%q, TLSServerName:%q, Mount:%q, Path:%q, Timeout:%s}",
		c.Address, c.Addresses, c.Token != "", c.TokenFile, approle, c.Namespace,
		c.CAFile, len(c.CACert), c.ClientCertFile, c.ClientKeyFile, c.TLSServerName, c.Mount, c.Path, c.Timeout)
}

// Format prints the GoString form for every verb: the default struct
// formatting (%v, %+v, %d, …) would print the token.
func (c Config) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.GoString()) }

// Store reads and writes records in Vault. It is safe for concurrent use.
type Store struct {
	client   *vault.Client
	kv       *vault.KVv2
	mount    string
	path     string
	auth     *auth
	failover *failover // nil with a single address
	// casSet remembers the keys whose metadata this store has set to
	// cas_required (see ensureCAS).
	casSet sync.Map
}

// New builds a Store from cfg. It does not contact Vault (the daemon starts,
// degraded, while Vault is down): an AppRole login happens on first use or
// in Run. Call Ping to check reachability and the token, and Run to keep
// the token renewed.
func New(ctx context.Context, cfg Config) (*Store, error) {
	_ = ctx // nothing to wait for: New never contacts Vault
	mount := strings.Trim(cfg.Mount, "/")
	if mount == "" {
		mount = DefaultMount
	}
	path := strings.Trim(cfg.Path, "/")
	if path == "" {
		path = DefaultPath
	}
	if err := checkPath(mount); err != nil {
		return nil, fmt.Errorf("vault mount %q: %w", cfg.Mount, err)
	}
	if err := checkPath(path); err != nil {
		return nil, fmt.Errorf("vault path %q: %w", cfg.Path, err)
	}

	// DefaultConfig reads VAULT_ADDR, VAULT_CACERT, VAULT_CLIENT_TIMEOUT,
	// … and keeps Go's proxy settings (HTTPS_PROXY, NO_PROXY). Its retries
	// (failed connections, 5xx) are safe for writes because every write is
	// a check-and-set: a write that landed before a retry makes the retry
	// fail with a conflict, not a double write.
	vc := vault.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault client settings from VAULT_* environment: %w", vc.Error)
	}
	if cfg.Timeout > 0 {
		vc.Timeout = cfg.Timeout
	}
	// ConfigureTLS changes only what it is given, so VAULT_CACERT and
	// friends stay in force for whatever the Config leaves empty.
	if cfg.CAFile != "" || len(cfg.CACert) > 0 || cfg.ClientCertFile != "" || cfg.ClientKeyFile != "" || cfg.TLSServerName != "" {
		err := vc.ConfigureTLS(&vault.TLSConfig{
			CACert:        cfg.CAFile,
			CACertBytes:   cfg.CACert,
			ClientCert:    cfg.ClientCertFile,
			ClientKey:     cfg.ClientKeyFile,
			TLSServerName: cfg.TLSServerName,
		})
		if err != nil {
			return nil, fmt.Errorf("vault tls settings: %w", err)
		}
	}
	addrs := addresses(cfg)
	if len(addrs) > 0 {
		vc.Address = addrs[0]
	}
	// The TLS settings above need the api's own *http.Transport; the
	// failover transport wraps it from here on.
	if len(addrs) == 0 {
		addrs = []string{vc.Address} // VAULT_ADDR or the api default
	}
	var fo *failover
	if !strings.HasPrefix(addrs[0], "unix://") {
		// Even with one address the failover transport is worth having:
		// it remembers what the node said last, so that an error after
		// the api's retries ran out of time still says why.
		var err error
		if fo, err = newFailover(vc.HttpClient.Transport, addrs); err != nil {
			return nil, err
		}
		vc.HttpClient.Transport = fo
	} else if len(addrs) > 1 {
		return nil, errors.New("vault addresses: a unix:// address cannot be one of several")
	}
	if len(addrs) > 1 {
		if tr, ok := fo.next.(*http.Transport); ok {
			tr.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
		}
		// A Raft election leaves a cluster without an active node for a
		// few seconds (up to about 10 with the default timings). Retry
		// sooner and longer than the api's default (2 retries, linearly
		// 1 to 4.5 s apart), so that a write spanning an election lands
		// on the new leader soon after it is elected instead of failing;
		// the caller's context and Timeout still bound it.
		vc.MinRetryWait, vc.MaxRetryWait = 250*time.Millisecond, time.Second
		vc.Backoff = electionBackoff
		if os.Getenv(vault.EnvVaultMaxRetries) == "" {
			vc.MaxRetries = 10
		}
	}
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", scrub(err.Error(), cfg.Token))
	}
	login, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", scrub(err.Error(), cfg.Token))
	}
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
		login.SetNamespace(cfg.Namespace)
	}
	s := &Store{client: client, kv: client.KVv2(mount), mount: mount, path: path, failover: fo}
	if s.auth, err = newAuth(cfg, client, login); err != nil {
		return nil, err
	}
	s.auth.describe = s.loginErr
	return s, nil
}

// electionBackoff doubles from lo up to hi, with ±20 % jitter so that a
// fleet does not retry in step: 0.25, 0.5, 1, 1, … s.
func electionBackoff(lo, hi time.Duration, attempt int, _ *http.Response) time.Duration {
	d := hi
	if attempt < 8 && lo<<attempt < hi {
		d = lo << attempt
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// addresses lists Address then Addresses, without repeats.
func addresses(cfg Config) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range append([]string{cfg.Address}, cfg.Addresses...) {
		a = strings.TrimSuffix(strings.TrimSpace(a), "/")
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// Run keeps the store's Vault token alive until ctx is done: it renews the
// token with the api's LifetimeWatcher and gets a new one (AppRole login,
// token file re-read) when renewal is over or Vault refuses it, backing off
// while Vault is unreachable. Load, Save and Ping never wait for Run; they
// work without it too, with logins on demand and no renewals. Run returns
// nil when ctx is done, or an error at once if it is already running.
func (s *Store) Run(ctx context.Context) error {
	if !s.auth.running.CompareAndSwap(false, true) {
		return errors.New("vaultstore: Run is already running")
	}
	defer s.auth.running.Store(false)
	s.auth.run(ctx)
	return nil
}

// Auth describes the store's Vault token: method, health, expiry, counts.
func (s *Store) Auth() AuthState { return s.auth.state() }

// AuthStatus reports whether Vault accepts the store's token and, if not,
// why (for status and STATUS= lines; the reason never holds a secret).
func (s *Store) AuthStatus() (ok bool, reason string) {
	st := s.auth.state()
	return st.OK, st.Reason
}

// Address returns the Vault address that answered last: with several
// addresses, the node the store currently uses.
func (s *Store) Address() string {
	if s.failover != nil {
		return s.failover.active()
	}
	return s.client.Address()
}

// call runs op with a usable token. After a 403 it lets the auth check the
// token (lookup-self) and retries once if that brought a new token (a
// rewritten token file, a fresh AppRole login).
func (s *Store) call(ctx context.Context, op func() error) error {
	gen, err := s.auth.use(ctx)
	if err != nil {
		return err
	}
	err = op()
	if err == nil {
		s.auth.worked(gen)
		return nil
	}
	var ve *Error
	if !errors.As(err, &ve) || ve.StatusCode != 403 || !s.auth.refusedAfter(ctx, gen) {
		return err
	}
	if gen, err = s.auth.use(ctx); err != nil {
		return err
	}
	err = op()
	if err == nil {
		s.auth.worked(gen)
	}
	return err
}

// Load returns the record under key and its KV version. With no record it
// returns daemon.ErrNotFound and the version the next Save must name: 0 if
// the key never existed, the deleted version if the latest was deleted.
// Vault answers a missing mount like a missing key; Ping tells them apart.
func (s *Store) Load(ctx context.Context, key string) (daemon.Record, int, error) {
	if err := checkPath(key); err != nil {
		return daemon.Record{}, 0, fmt.Errorf("read vault record %q: bad key: %w", key, err)
	}
	sec, err := s.getKV(ctx, key)
	if err != nil {
		return daemon.Record{}, 0, err
	}
	if sec.VersionMetadata == nil || sec.VersionMetadata.Version <= 0 {
		return daemon.Record{}, 0, fmt.Errorf("read vault record %q: no version metadata: is mount %q KV version 2?", key, s.mount)
	}
	version := sec.VersionMetadata.Version
	if sec.Data == nil {
		// KV v2 answers a deleted or destroyed latest version with its
		// metadata and nil data, not an error. The version is kept: a
		// check-and-set against 0 would now fail.
		return daemon.Record{}, version, fmt.Errorf("read vault record %q: version %d deleted: %w", key, version, daemon.ErrNotFound)
	}
	rec, err := decodeRecord(key, sec.Data)
	if err != nil {
		// The version comes along so that an operator tool may deliberately
		// replace a broken record; the daemon must not.
		return daemon.Record{}, version, err
	}
	return rec, version, nil
}

// Save writes rec under key if the stored version is still version (0: only
// if no version exists, deleted or not) and returns the new version. A lost
// race returns daemon.ErrConflict. Before a key's first write (by this store,
// or when creating it) Save sets cas_required on the key's metadata, so that
// nothing else can write it without check-and-set either.
func (s *Store) Save(ctx context.Context, key string, rec daemon.Record, version int) (int, error) {
	if err := checkPath(key); err != nil {
		return 0, fmt.Errorf("write vault record %q: bad key: %w", key, err)
	}
	if version < 0 {
		return 0, fmt.Errorf("write vault record %q: negative version %d", key, version)
	}
	data, err := encodeRecord(key, rec)
	if err != nil {
		return 0, err
	}
	return s.putKV(ctx, key, data, version, rec.Token.Reveal(), string(rec.Password), string(rec.PendingPassword))
}

// getKV reads the latest version of key, with the store's auth handling.
// A key without versions returns daemon.ErrNotFound; a deleted latest
// version returns its metadata and nil Data.
func (s *Store) getKV(ctx context.Context, key string) (*vault.KVSecret, error) {
	var sec *vault.KVSecret
	err := s.call(ctx, func() error {
		var err error
		sec, err = s.kv.Get(ctx, s.path+"/"+key)
		if err != nil && !errors.Is(err, vault.ErrSecretNotFound) {
			return s.vaultErr(err)
		}
		return err
	})
	if errors.Is(err, vault.ErrSecretNotFound) {
		return nil, fmt.Errorf("read vault record %q: %w", key, daemon.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read vault record %q: %w", key, err)
	}
	return sec, nil
}

// putKV check-and-sets data under key (making sure the key has
// cas_required first) and returns the new version; a lost race is
// daemon.ErrConflict. secrets are masked in errors.
func (s *Store) putKV(ctx context.Context, key string, data map[string]any, version int, secrets ...string) (int, error) {
	if err := s.ensureCAS(ctx, key, version); err != nil {
		return 0, fmt.Errorf("write vault record %q: %w", key, err)
	}
	var sec *vault.KVSecret
	err := s.call(ctx, func() error {
		var err error
		sec, err = s.kv.Put(ctx, s.path+"/"+key, data, vault.WithCheckAndSet(version))
		switch {
		case err == nil:
			return nil
		case isCASMismatch(err):
			return fmt.Errorf("at version %d: %w", version, daemon.ErrConflict)
		case errors.Is(err, vault.ErrSecretNotFound):
			// The api reports a write that returned no body this way; KV
			// v2 always returns the new version's metadata, KV v1 does not.
			return fmt.Errorf("vault returned no version: does mount %q exist, and is it KV version 2?", s.mount)
		}
		return s.vaultErr(err, secrets...)
	})
	if err != nil {
		return 0, fmt.Errorf("write vault record %q: %w", key, err)
	}
	if sec == nil || sec.VersionMetadata == nil || sec.VersionMetadata.Version <= 0 {
		return 0, fmt.Errorf("write vault record %q: vault returned no version: is mount %q KV version 2?", key, s.mount)
	}
	return sec.VersionMetadata.Version, nil
}

// ensureCAS sets cas_required=true on the metadata of key, once per key and
// store, and again whenever the key is created (version 0: its metadata may
// have been deleted meanwhile). It is set per key, not on the mount: the
// mount's own setting would bind every other user of a shared "secret/"
// mount, and changing it needs rights on the mount's config that exless
// should not hold. Writing only cas_required leaves the key's other
// metadata (max_versions, custom_metadata, …) alone, and nothing of a
// record ever goes into metadata, which a "list"/"read metadata" policy
// may show to more readers than the data.
func (s *Store) ensureCAS(ctx context.Context, key string, version int) error {
	if _, done := s.casSet.Load(key); done && version > 0 {
		return nil
	}
	mp := s.mount + "/metadata/" + s.path + "/" + key
	err := s.call(ctx, func() error {
		_, err := s.client.Logical().WriteWithContext(ctx, mp, map[string]any{"cas_required": true})
		if err != nil {
			return s.requestErr(err, map[int]string{
				403: fmt.Sprintf(" (the vault token's policy must allow create and update on %s/metadata/%s/*)", s.mount, s.path),
				404: fmt.Sprintf(" (is %q a KV version 2 mount?)", s.mount),
				405: fmt.Sprintf(" (is %q a KV version 2 mount?)", s.mount),
			})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set cas_required on %s: %w", mp, err)
	}
	s.casSet.Store(key, true)
	return nil
}

// Ping checks that Vault answers, accepts the token (a token lookup-self,
// which the default policy allows), that the mount is KV version 2, and
// that the token may do what Load and Save do under the path. For status
// reporting, and worth calling before the first Load: a missing mount
// reads as an absent record (Vault's 404 is all the client sees).
func (s *Store) Ping(ctx context.Context) error {
	err := s.call(ctx, func() error {
		_, err := s.client.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return s.vaultErr(err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check vault token: %w", err)
	}
	// The endpoint the Vault CLI uses to tell KV versions apart; any token
	// with a capability on the path may read it.
	sec, err := s.client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+s.mount+"/"+s.path)
	if err != nil {
		return fmt.Errorf("check vault mount %q: %w", s.mount, s.vaultErr(err))
	}
	if sec == nil || sec.Data == nil {
		return fmt.Errorf("check vault mount %q: no such mount", s.mount)
	}
	typ, _ := sec.Data["type"].(string)
	opts, _ := sec.Data["options"].(map[string]any)
	version, _ := opts["version"].(string)
	if typ != "kv" || version != "2" {
		return fmt.Errorf("check vault mount %q: it is %q version %q, want a KV version 2 mount", s.mount, typ, version)
	}
	return s.checkCapabilities(ctx)
}

// checkCapabilities asks Vault (sys/capabilities-self, allowed by the
// default policy) whether the token may read and check-and-set records and
// set cas_required, so that a policy gap shows up in Ping rather than as a
// failed Save after a login.
func (s *Store) checkCapabilities(ctx context.Context) error {
	probe := s.path + "/" + daemon.UserKey
	need := map[string][]string{
		s.mount + "/data/" + probe:     {"read", "create", "update"},
		s.mount + "/metadata/" + probe: {"create", "update"},
	}
	paths := make([]string, 0, len(need))
	for p := range need {
		paths = append(paths, p)
	}
	sec, err := s.client.Logical().WriteWithContext(ctx, "sys/capabilities-self", map[string]any{"paths": paths})
	if err != nil {
		return fmt.Errorf("check vault token capabilities: %w", s.vaultErr(err))
	}
	if sec == nil {
		return errors.New("check vault token capabilities: empty answer")
	}
	for p, want := range need {
		have := map[string]bool{}
		raw, _ := sec.Data[p].([]any)
		for _, c := range raw {
			if c, ok := c.(string); ok {
				have[c] = true
			}
		}
		if have["root"] {
			continue
		}
		var missing []string
		for _, c := range want {
			if !have[c] {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			dir := p[:strings.LastIndex(p, "/")]
			return fmt.Errorf("check vault token capabilities: the token's policy lacks %s on %s/*", strings.Join(missing, ", "), dir)
		}
	}
	return nil
}

// casMismatch is the text KV v2 answers a failed check-and-set with (HTTP
// 400), both for cas=0 on an existing key and for a stale version.
const casMismatch = "check-and-set parameter did not match the current version"

func isCASMismatch(err error) bool {
	var re *vault.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 400 {
		return false
	}
	for _, e := range re.Errors {
		if strings.Contains(e, casMismatch) {
			return true
		}
	}
	return false
}

// Error is a failed Vault request, reduced to a one-line message. The api's
// own errors are multi-line, repeat the full URL and, for a response that is
// not JSON (a proxy's error page), carry the whole body.
type Error struct {
	// StatusCode is Vault's HTTP status, 0 when no response arrived.
	StatusCode int
	msg        string
	err        error // transport cause; nil for Vault responses
}

func (e *Error) Error() string { return e.msg }

// Unwrap gives the transport cause (so that errors.Is finds
// context.DeadlineExceeded), never the api's response error with its body.
func (e *Error) Unwrap() error { return e.err }

// vaultErr turns an api error from a KV or token request into an *Error,
// masking the store's Vault token and any extra secrets should Vault ever
// echo one back.
func (s *Store) vaultErr(err error, secrets ...string) error {
	return s.requestErr(err, map[int]string{
		403: " (check the vault token and its policy)",
		404: fmt.Sprintf(" (is %q a KV version 2 mount?)", s.mount),
	}, secrets...)
}

// loginErr is vaultErr for an AppRole login.
func (s *Store) loginErr(err error, secrets ...string) error {
	return s.requestErr(err, map[int]string{
		400: " (check the role_id and secret_id files)",
		403: " (check the role_id and secret_id files)",
		404: " (is the AppRole auth method enabled at that mount?)",
	}, secrets...)
}

// requestErr turns an api error into an *Error, with hints by status.
func (s *Store) requestErr(err error, hints map[int]string, secrets ...string) error {
	secrets = append(secrets, s.client.Token())
	var re *vault.ResponseError
	if errors.As(err, &re) {
		var msg string
		if re.RawError {
			msg = fmt.Sprintf("vault responded %d (not a Vault JSON error; a proxy in the way?)", re.StatusCode)
		} else {
			msg = fmt.Sprintf("vault responded %d: %s", re.StatusCode, oneLine(strings.Join(re.Errors, "; ")))
		}
		msg += hints[re.StatusCode]
		return &Error{StatusCode: re.StatusCode, msg: scrub(msg, secrets...).Error()}
	}
	var nn *noNodeError
	if errors.As(err, &nn) {
		// Several addresses: the list of what each node said is the
		// message; the URL the api names is only the first address.
		return &Error{msg: scrub(oneLine(nn.Error()), secrets...).Error(), err: nn}
	}
	// No answer from Vault (refused, timed out, TLS): say where we looked.
	// Go's HTTP client already strips passwords from URLs in its errors.
	msg := oneLine(err.Error())
	cause := errors.Unwrap(err)
	if cause == nil {
		cause = err // e.g. a bare context.Canceled from the retrying client
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		msg, cause = oneLine(ue.Error()), ue.Err
	} else {
		msg += fmt.Sprintf(" (vault at %s)", s.where())
	}
	if s.failover != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		if last := s.failover.last.Load(); last != nil {
			// Out of time while retrying: say what the nodes said.
			msg += "; last try: " + last.Error()
		}
	}
	return &Error{msg: scrub(msg, secrets...).Error(), err: cause}
}

// where names the Vault address, or all of them.
func (s *Store) where() string {
	if s.failover != nil && len(s.failover.targets) > 1 {
		addrs := make([]string, len(s.failover.targets))
		for i, t := range s.failover.targets {
			addrs[i] = t.String()
		}
		return strings.Join(addrs, ", ")
	}
	return s.Address()
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const limit = 300
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}

// scrub returns msg as an error with every secret replaced.
func scrub(msg string, secrets ...string) error {
	for _, sec := range secrets {
		if sec != "" {
			msg = strings.ReplaceAll(msg, sec, "[REDACTED]")
		}
	}
	return errors.New(msg)
}

// checkPath accepts slash-separated names without empty, "." or ".."
// segments, so a key can never climb out of the configured path.
func checkPath(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			return errors.New("empty segment")
		case ".", "..":
			return fmt.Errorf("segment %q", seg)
		}
		if strings.ContainsAny(seg, "?#%\\") || strings.ContainsFunc(seg, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("segment %q has characters Vault paths do not take", seg)
		}
	}
	return nil
}
