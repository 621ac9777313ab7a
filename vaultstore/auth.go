package vaultstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
)

// Auth methods, as AuthState.Method names them.
const (
	AuthToken     = "token"      // Config.Token or VAULT_TOKEN
	AuthTokenFile = "token_file" // Config.TokenFile, e.g. a Vault Agent sink
	AuthAppRole   = "approle"    // Config.AppRole
)

// DefaultAppRoleMount is where the AppRole auth method is usually enabled.
const DefaultAppRoleMount = "approle"

// AppRoleConfig logs in with Vault's AppRole auth method. Both IDs come from
// files, never from the config itself: the secret ID is a credential, and
// the role ID is best kept as private. A bare file name is looked up in
// $CREDENTIALS_DIRECTORY when systemd passes credentials (see
// CredentialPath). Every login uses the secret ID once: a role whose secret
// IDs are limited in uses (secret_id_num_uses) runs out after that many
// logins, which come at each token's max TTL and after a revocation.
type AppRoleConfig struct {
	RoleIDFile   string
	SecretIDFile string
	// MountPath is the auth mount, "approle" when empty (auth/approle).
	MountPath string
}

// CredentialPath resolves a secret file's name: a bare name (no directory
// part) is a systemd credential ID and names a file in
// $CREDENTIALS_DIRECTORY when that is set (LoadCredential=,
// LoadCredentialEncrypted=); anything else, or any name when the variable is
// unset, is returned as is.
func CredentialPath(name string) string {
	return credentialPath(name, os.Getenv("CREDENTIALS_DIRECTORY"))
}

func credentialPath(name, dir string) string {
	if dir == "" || name == "" || name == "." || name == ".." || filepath.Base(name) != name {
		return name
	}
	return filepath.Join(dir, name)
}

// AuthState describes the Vault token a Store uses, for status reports. It
// never holds the token or any other secret.
type AuthState struct {
	Method string // AuthToken, AuthTokenFile or AuthAppRole
	// OK is true when Vault last accepted the token (a request, a renewal
	// or a login succeeded) and it has not expired since, as far as the
	// store knows.
	OK bool
	// Reason says why OK is false; empty when OK.
	Reason string
	// ExpiresAt is when the token expires unless renewed; zero when
	// unknown or when it never does.
	ExpiresAt time.Time
	Logins    int // successful AppRole logins
	Renewals  int // successful renewals by the lifetime watcher
	Reloads   int // token file re-reads that brought a new token
}

// Timings of the auth machinery. Logins are rate limited so that a wrong
// policy or a broken secret ID cannot turn into a login storm (an AppRole
// secret ID may also be limited to a number of uses).
const (
	loginGap        = time.Second      // least time between two logins
	loginBackoffMin = time.Second      // after a failed login…
	loginBackoffMax = time.Minute      // …doubling up to this
	filePoll        = time.Second      // token file check while idle
	retryMin        = time.Second      // Run's retry after an error…
	retryMax        = 30 * time.Second // …doubling up to this
	maxSecretFile   = 64 << 10         // a token or ID is short; the limit keeps a wrong path (a log, a device) from being read whole
)

// auth keeps the Vault token of a Store: it obtains it (inline, file,
// AppRole login), swaps it when the file changes or a login renews it, and
// records what happened for AuthState. Requests call use before and
// refused after a 403; Run renews in the background.
type auth struct {
	method    string
	client    *vault.Client // carries the token for every request
	login     *vault.Client // never has a token: AppRole logins
	tokenFile string
	roleID    string // AppRole only
	secretID  string // path of the secret ID file
	mount     string // AppRole auth mount
	describe  func(err error, secrets ...string) error

	sem     chan struct{} // one login at a time
	kick    chan struct{} // wakes Run: the token changed or was refused
	running atomic.Bool

	mu       sync.Mutex
	token    string
	gen      uint64    // bumped on every token change
	expires  time.Time // from Vault's ttl, on the local monotonic clock; zero: unknown or never
	refused  bool      // Vault refused the current token (lookup-self 403)
	verified bool      // Vault accepted the current token at least once
	replace  bool      // renewal is over: get a new token while this one lasts
	file     os.FileInfo
	ok       bool
	reason   string
	tries    time.Time // last login attempt
	lastErr  error     // of the last login attempt
	backoff  time.Duration
	logins   int
	renewals int
	reloads  int
}

func newAuth(cfg Config, client, login *vault.Client) (*auth, error) {
	a := &auth{
		client: client,
		login:  login,
		sem:    make(chan struct{}, 1),
		kick:   make(chan struct{}, 1),
		reason: "vault token not used yet",
	}
	login.ClearToken() // NewClient takes VAULT_TOKEN; a login must not send one
	switch {
	case cfg.AppRole != nil:
		if cfg.Token != "" || cfg.TokenFile != "" {
			return nil, errors.New("vault auth: set one of token, token_file and approle")
		}
		ar := cfg.AppRole
		if ar.RoleIDFile == "" || ar.SecretIDFile == "" {
			return nil, errors.New("vault approle: role_id_file and secret_id_file are both required")
		}
		a.method = AuthAppRole
		a.mount = strings.Trim(ar.MountPath, "/")
		if a.mount == "" {
			a.mount = DefaultAppRoleMount
		}
		if err := checkPath(a.mount); err != nil {
			return nil, fmt.Errorf("vault approle mount %q: %w", ar.MountPath, err)
		}
		// The role ID is read once: it names the role and does not rotate.
		// The secret ID is read at every login, so that an operator can put
		// a fresh one in place without restarting exlessd.
		roleIDFile := CredentialPath(ar.RoleIDFile)
		id, err := readSecretFile(roleIDFile, "approle role_id_file")
		if err != nil {
			return nil, err
		}
		a.roleID = id
		a.secretID = CredentialPath(ar.SecretIDFile)
		if _, err := os.Stat(a.secretID); err != nil {
			return nil, fmt.Errorf("vault approle secret_id_file: %w", err)
		}
		client.ClearToken()
		a.reason = "no approle login yet"
	case strings.TrimSpace(cfg.Token) != "":
		a.method = AuthToken
		a.setToken(strings.TrimSpace(cfg.Token))
	case cfg.TokenFile != "":
		a.method = AuthTokenFile
		a.tokenFile = CredentialPath(cfg.TokenFile)
		// A Vault Agent may not have written its sink yet: a missing or
		// empty file is reported on use (and by AuthState) and picked up
		// as soon as it appears. Anything else is a configuration error.
		if _, err := a.reload(false); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errEmptyFile) {
			return nil, err
		}
		if a.token == "" {
			client.ClearToken() // not VAULT_TOKEN: the file is what was asked for
		}
	default:
		t := strings.TrimSpace(os.Getenv(vault.EnvVaultToken))
		if t == "" {
			return nil, errors.New("no vault token: set vault.token_file, vault.approle or VAULT_TOKEN")
		}
		a.method = AuthToken
		a.setToken(t)
	}
	return a, nil
}

var errEmptyFile = errors.New("file is empty")

// readSecretFile reads a token or an ID from a file, trimmed. Errors name
// the file, never its content.
func readSecretFile(path, what string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("vault %s: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile))
	if err != nil {
		return "", fmt.Errorf("vault %s %s: %w", what, path, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("vault %s %s: %w", what, path, errEmptyFile)
	}
	return s, nil
}

// setToken installs a new token. Callers hold a.mu or own a fresh auth.
func (a *auth) setToken(t string) {
	a.token = t
	a.gen++
	a.expires = time.Time{}
	a.refused, a.replace, a.verified = false, false, false
	a.client.SetToken(t)
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// reload re-reads the token file when it changed since the last read (or
// always, with force) and reports whether the token changed. The stat on
// every use costs a syscall; a Vault request costs a round trip.
func (a *auth) reload(force bool) (bool, error) {
	fi, err := os.Stat(a.tokenFile)
	if err != nil {
		a.fail(fmt.Sprintf("vault token file: %v", err))
		return false, fmt.Errorf("vault token file: %w", err)
	}
	a.mu.Lock()
	same := a.file != nil && os.SameFile(a.file, fi) && a.file.ModTime().Equal(fi.ModTime()) && a.file.Size() == fi.Size()
	a.mu.Unlock()
	if same && !force {
		return false, nil
	}
	t, err := readSecretFile(a.tokenFile, "token file")
	if err != nil {
		a.fail(err.Error())
		return false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.file = fi
	if t == a.token {
		return false, nil
	}
	first := a.token == ""
	a.setToken(t)
	if !first {
		a.reloads++
	}
	a.ok, a.reason = false, "new vault token from the token file not used yet"
	return true, nil
}

// fail records why the store cannot authenticate.
func (a *auth) fail(reason string) {
	a.mu.Lock()
	a.ok, a.reason = false, reason
	a.mu.Unlock()
}

// worked records that Vault accepted the token of generation gen.
func (a *auth) worked(gen uint64) {
	a.mu.Lock()
	if gen == a.gen {
		a.ok, a.reason, a.refused, a.verified = true, "", false, true
	}
	a.mu.Unlock()
}

// usable reports whether the current token is worth sending. Callers hold
// a.mu.
func (a *auth) usable(now time.Time) bool {
	return a.token != "" && !a.refused && (a.expires.IsZero() || now.Before(a.expires))
}

// use makes sure the client carries a token worth sending and returns its
// generation. It blocks only for an AppRole login when there is no usable
// token at all, and not even then while a failed login's backoff runs: it
// returns that login's error at once.
func (a *auth) use(ctx context.Context) (uint64, error) {
	switch a.method {
	case AuthTokenFile:
		if _, err := a.reload(false); err != nil {
			return 0, err
		}
	case AuthAppRole:
		a.mu.Lock()
		ok, gen := a.usable(time.Now()), a.gen
		a.mu.Unlock()
		if !ok {
			return a.relogin(ctx, gen, false)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token == "" {
		return 0, fmt.Errorf("no vault token: %s", a.reason)
	}
	if a.refused {
		// Vault said this token is dead; only a new one (a rewritten
		// file) helps, and asking again would only load Vault. It is
		// Vault's 403, given again.
		return 0, &Error{StatusCode: 403, msg: a.reason}
	}
	return a.gen, nil
}

// relogin logs in with AppRole unless the token of generation stale was
// replaced meanwhile. Run passes early to replace a token whose renewal is
// over while it is still valid.
func (a *auth) relogin(ctx context.Context, stale uint64, early bool) (uint64, error) {
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-a.sem }()

	a.mu.Lock()
	now := time.Now()
	need := !a.usable(now) || (early && a.replace)
	switch {
	case a.gen != stale && a.usable(now):
		// Someone logged in while we waited.
		gen := a.gen
		a.mu.Unlock()
		return gen, nil
	case !need:
		gen := a.gen
		a.mu.Unlock()
		return gen, nil
	case a.lastErr != nil && now.Sub(a.tries) < a.backoff:
		err := a.lastErr
		a.mu.Unlock()
		return 0, err
	case a.lastErr == nil && !a.verified && !a.tries.IsZero() && now.Sub(a.tries) < loginGap:
		// A login succeeded a moment ago and its token was refused
		// before it ever worked: logging in again at once would not
		// fix that, only load Vault.
		a.mu.Unlock()
		return 0, fmt.Errorf("vault approle login: the token from a login %s ago was refused", now.Sub(a.tries).Round(time.Millisecond))
	}
	a.tries = now
	a.mu.Unlock()

	sec, err := a.doLogin(ctx)

	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up; that says nothing about the credentials.
			a.tries = time.Time{}
			return 0, err
		}
		a.lastErr = err
		var ve *Error
		if errors.As(err, &ve) && ve.StatusCode >= 400 && ve.StatusCode < 500 {
			// Vault refused the credentials: trying again soon will not
			// help, and may use up a secret ID's uses.
			a.backoff = min(max(2*a.backoff, loginBackoffMin), loginBackoffMax)
		} else {
			// Vault unreachable or failing: try again soon.
			a.backoff = loginBackoffMin
		}
		a.ok, a.reason = false, err.Error()
		return 0, err
	}
	a.lastErr, a.backoff = nil, 0
	a.setToken(sec.Auth.ClientToken)
	if d := time.Duration(sec.Auth.LeaseDuration) * time.Second; d > 0 {
		a.expires = time.Now().Add(d)
	}
	a.logins++
	a.ok, a.reason = true, ""
	return a.gen, nil
}

// doLogin performs one AppRole login through the tokenless client.
func (a *auth) doLogin(ctx context.Context) (*vault.Secret, error) {
	secretID, err := readSecretFile(a.secretID, "approle secret_id_file")
	if err != nil {
		return nil, fmt.Errorf("vault approle login: %w", err)
	}
	m, err := approle.NewAppRoleAuth(a.roleID, &approle.SecretID{FromString: secretID}, approle.WithMountPath(a.mount))
	if err != nil {
		return nil, fmt.Errorf("vault approle login: %w", scrub(err.Error(), secretID, a.roleID))
	}
	sec, err := m.Login(ctx, a.login)
	if err != nil {
		return nil, fmt.Errorf("vault approle login at auth/%s: %w", a.mount, a.describe(err, secretID, a.roleID))
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, fmt.Errorf("vault approle login at auth/%s: no token in the answer", a.mount)
	}
	return sec, nil
}

// refusedAfter handles a 403 a request got with the token of generation
// gen and reports whether the request is worth retrying with a new token.
// A 403 is either a dead token (expired, revoked) or a policy that does not
// allow the request; lookup-self tells them apart, so that only a dead token
// leads to a new login.
func (a *auth) refusedAfter(ctx context.Context, gen uint64) bool {
	a.mu.Lock()
	changed := a.gen != gen
	a.mu.Unlock()
	if changed {
		return true
	}
	if a.method == AuthTokenFile {
		// A Vault Agent may have rewritten the file within the stat's
		// granularity: read it again whatever the stat says.
		if ch, _ := a.reload(true); ch {
			return true
		}
	}
	_, err := a.client.Auth().Token().LookupSelfWithContext(ctx)
	if err == nil {
		a.worked(gen)
		return false // alive: the policy refused the request
	}
	var re *vault.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 403 {
		return false // cannot tell; the request's own error stands
	}
	a.mu.Lock()
	if a.gen == gen {
		a.refused = true
		a.ok = false
		switch a.method {
		case AuthAppRole:
			a.reason = "vault refused the approle token (expired or revoked)"
		case AuthTokenFile:
			a.reason = "vault refused the token from the token file (expired or revoked); waiting for a new one"
		default:
			a.reason = "vault refused the token (expired or revoked)"
		}
	}
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
	if a.method == AuthAppRole {
		_, err := a.relogin(ctx, gen, false)
		return err == nil
	}
	return false
}

// state returns the AuthState.
func (a *auth) state() AuthState {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := AuthState{
		Method:   a.method,
		OK:       a.ok,
		Reason:   a.reason,
		Logins:   a.logins,
		Renewals: a.renewals,
		Reloads:  a.reloads,
	}
	if !a.expires.IsZero() {
		// Round(0) drops the monotonic reading, which only matters inside.
		st.ExpiresAt = a.expires.Round(0)
		if st.OK && !time.Now().Before(a.expires) {
			st.OK, st.Reason = false, fmt.Sprintf("vault token expired at %s", st.ExpiresAt.UTC().Format(time.RFC3339))
		}
	}
	if st.OK {
		st.Reason = ""
	}
	return st
}

// run keeps the token alive until ctx ends: it learns the token's TTL,
// renews it with a LifetimeWatcher and replaces it (AppRole login, token
// file re-read) when renewal is over or Vault refuses it.
func (a *auth) run(ctx context.Context) {
	wait := time.Duration(0)
	for ctx.Err() == nil {
		if wait > 0 {
			a.sleep(ctx, wait, 0)
			if ctx.Err() != nil {
				return
			}
		}
		gen, err := a.use(ctx)
		if err == nil && a.method == AuthAppRole {
			gen, err = a.relogin(ctx, gen, true)
		}
		if err != nil {
			wait = min(max(2*wait, retryMin), retryMax)
			continue
		}
		ttl, renewable, err := a.lookup(ctx, gen)
		if err != nil {
			wait = min(max(2*wait, retryMin), retryMax)
			continue
		}
		wait = 0
		if ttl <= 0 {
			// Never expires (a root token): nothing to renew; wake up
			// when the token changes.
			a.sleep(ctx, 0, gen)
			continue
		}
		if !a.watch(ctx, gen, ttl, renewable) {
			// Renewal is over and the token cannot be replaced here
			// (inline token, unchanged file): wait for a change; the
			// token lasts until then or until it expires.
			a.sleep(ctx, 0, gen)
		}
	}
}

// sleep waits for ctx, d (if positive), a change of the token away from gen
// (if gen is not zero), or a kick, whichever comes first. A token file is
// checked every filePoll meanwhile.
func (a *auth) sleep(ctx context.Context, d time.Duration, gen uint64) {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	poll := time.NewTicker(filePoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timeout:
			return
		case <-a.kick:
			return
		case <-poll.C:
			if a.method == AuthTokenFile {
				if ch, _ := a.reload(false); ch {
					return
				}
			}
			if gen != 0 {
				a.mu.Lock()
				changed := a.gen != gen
				a.mu.Unlock()
				if changed {
					return
				}
			}
		}
	}
}

// lookup asks Vault for the remaining TTL of the token of generation gen.
func (a *auth) lookup(ctx context.Context, gen uint64) (time.Duration, bool, error) {
	sec, err := a.client.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		var re *vault.ResponseError
		if errors.As(err, &re) && re.StatusCode == 403 {
			a.refusedAfter(ctx, gen)
		}
		return 0, false, err
	}
	ttl, err := sec.TokenTTL()
	if err != nil {
		return 0, false, err
	}
	renewable, _ := sec.TokenIsRenewable()
	a.mu.Lock()
	if a.gen == gen {
		a.ok, a.reason, a.refused, a.verified = true, "", false, true
		if ttl > 0 {
			a.expires = time.Now().Add(ttl)
		} else {
			a.expires = time.Time{}
		}
	}
	a.mu.Unlock()
	return ttl, renewable, nil
}

// watch renews the token of generation gen until renewal is over, the token
// changes, or ctx ends. It reports whether the caller should loop at once
// (false: wait for a change first).
func (a *auth) watch(ctx context.Context, gen uint64, ttl time.Duration, renewable bool) bool {
	a.mu.Lock()
	tok := a.token
	stale := a.gen != gen
	a.mu.Unlock()
	if stale {
		return true
	}
	w, err := a.client.NewLifetimeWatcher(&vault.LifetimeWatcherInput{
		Secret: &vault.Secret{Auth: &vault.SecretAuth{
			ClientToken:   tok,
			Renewable:     renewable,
			LeaseDuration: int(ttl / time.Second),
		}},
	})
	if err != nil {
		return false
	}
	go w.Start()
	defer w.Stop()
	poll := time.NewTicker(filePoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return true
		case r := <-w.RenewCh():
			a.mu.Lock()
			if a.gen == gen && r.Secret != nil && r.Secret.Auth != nil {
				a.renewals++
				a.ok, a.reason, a.verified = true, "", true
				if d := time.Duration(r.Secret.Auth.LeaseDuration) * time.Second; d > 0 {
					// From now, a few ms after the renewal: RenewedAt
					// carries no monotonic clock reading.
					a.expires = time.Now().Add(d)
				}
			}
			a.mu.Unlock()
		case <-w.DoneCh():
			// Renewal is over: the token is near its max TTL, or renewals
			// failed until its lease nearly ran out. Replace it while it
			// still works.
			a.mu.Lock()
			if a.gen == gen {
				a.replace = true
			}
			a.mu.Unlock()
			switch a.method {
			case AuthAppRole:
				return true // run logs in again, early
			case AuthTokenFile:
				ch, _ := a.reload(true)
				if !ch {
					a.mu.Lock()
					if a.gen == gen && a.ok {
						a.reason = ""
					}
					a.mu.Unlock()
				}
				return ch
			}
			return false
		case <-a.kick:
			a.mu.Lock()
			changed := a.gen != gen || a.refused
			a.mu.Unlock()
			if changed {
				return true
			}
		case <-poll.C:
			if a.method == AuthTokenFile {
				if ch, _ := a.reload(false); ch {
					return true
				}
			}
		}
	}
}
