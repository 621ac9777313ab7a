package daemon_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
)

const passwordKey = "account"

// settleAfter is the tests' PendingSettleAfter: short, so that they wait
// it out for real. It is judged by Vault's clock, which sys/health gives in
// whole seconds: waits add a second.
const settleAfter = time.Second

// shiftClock is time.Now moved forward by what a test adds, so that
// backoffs pass without waiting.
type shiftClock struct{ off atomic.Int64 }

func (c *shiftClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *shiftClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// passwordEnv is an env whose daemon keeps the password in Vault, on a
// fresh path where the operator has written only the password.
func passwordEnv(t *testing.T) (*env, *shiftClock) {
	t.Helper()
	e := newEnv(t, rootRule())
	e.path = randomPath(t)
	e.store = e.newStore()
	clk := &shiftClock{}
	e.editBroker = func(c *daemon.BrokerConfig) {
		c.PasswordKey = passwordKey
		c.Password = func() ([]byte, error) { return nil, errors.New("the password file must not be read") }
		c.Now = clk.Now
		c.LeaseWait = 5 * time.Second
		c.PendingSettleAfter = settleAfter
	}
	e.provisionPassword(e.ex.Account.Password)
	e.restart(rootRule())
	return e, clk
}

// provisionPassword writes the password as an operator would: a bare
// "password" field, without check-and-set (the key is new).
func (e *env) provisionPassword(pw string) {
	e.t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = e.vault.Addr
	c, err := vault.NewClient(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	c.SetToken(e.vault.Token)
	if _, err := c.KVv2("secret").Put(context.Background(), e.path+"/"+passwordKey, map[string]any{"password": pw}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) passwordRecord() (daemon.Record, int) {
	e.t.Helper()
	rec, v, err := e.store.Load(context.Background(), passwordKey)
	if err != nil {
		e.t.Fatalf("load the password record: %v", err)
	}
	return rec, v
}

// pendingWrite records a pending password in Vault as RotatePassword does
// before it calls Exceptionless, to stand for a daemon that died after it,
// age ago.
func (e *env) pendingWrite(pending string, age time.Duration) {
	e.t.Helper()
	rec, v := e.passwordRecord()
	rec.PendingPassword, rec.PendingSince, rec.PendingBy = daemon.Password(pending), time.Now().Add(-age).UTC(), "crashed-host"
	if _, err := e.store.Save(context.Background(), passwordKey, rec, v); err != nil {
		e.t.Fatal(err)
	}
}

func TestPasswordInVault(t *testing.T) {
	e, _ := passwordEnv(t)
	ctx := context.Background()
	project := e.ex.Account.Projects[0].ID

	user, err := e.client.Token(ctx, daemon.ScopeUser, "")
	if err != nil {
		t.Fatalf("user token with the password from vault: %v", err)
	}
	rec, _ := e.passwordRecord()
	if rec.Token != user.Token || string(rec.Password) != e.ex.Account.Password || rec.ObtainedBy == "" {
		t.Fatal("the user token was not stored beside the password")
	}
	if _, _, err := e.store.Load(ctx, daemon.UserKey); !errors.Is(err, daemon.ErrNotFound) {
		t.Fatalf("the user key was written too: %v", err)
	}
	client, err := e.client.Token(ctx, daemon.ScopeClient, project)
	if err != nil {
		t.Fatal(err)
	}
	logins := e.ex.LoginAttempts()

	res, err := e.client.RotatePassword(ctx)
	if err != nil {
		t.Fatalf("rotate password: %v", err)
	}
	after, _ := e.passwordRecord()
	newPw := string(after.Password)
	switch {
	case e.ex.PasswordChanges() != 1:
		t.Fatalf("change-password calls = %d, want 1", e.ex.PasswordChanges())
	case newPw == e.ex.Account.Password || len(newPw) < 32:
		t.Fatal("the password in vault is not a new, long one")
	case !e.ex.PasswordIs(e.ex.Account.Email, newPw):
		t.Fatal("the password in vault is not the account's")
	case len(after.PendingPassword) != 0:
		t.Fatal("the new password is still pending")
	case after.Token == user.Token || res.NewFingerprint != daemon.Fingerprint(after.Token) || res.OldFingerprint != daemon.Fingerprint(user.Token):
		t.Fatal("the new token was not published with the password")
	case e.ex.LoginAttempts() != logins:
		t.Fatalf("the change logged in %d times; it needs no login", e.ex.LoginAttempts()-logins)
	}
	if _, err := e.api.Me(ctx, user.Token); !errors.Is(err, exceptionless.ErrUnauthorized) {
		t.Fatalf("old user token: %v, want rejected", err)
	}
	if len(res.ReceivedBy) != 1 {
		t.Errorf("received_by = %v, want this test process", res.ReceivedBy)
	}
	now, err := e.client.Token(ctx, daemon.ScopeUser, "")
	if err != nil || now.Token != after.Token {
		t.Fatalf("served user token after the change: %v", err)
	}
	if _, err := e.api.ProjectConfig(ctx, client.Token); err != nil {
		t.Fatalf("client token after the change: %v (project keys survive)", err)
	}

	// Another daemon of the fleet adopts the new token by polling.
	other := e.brokerWith(func(c *daemon.BrokerConfig) { c.PasswordKey = passwordKey })
	got, err := other.UserToken(ctx)
	if err != nil || got.Token != after.Token {
		t.Fatalf("another daemon: %v", err)
	}
	if st := e.broker.Status(); len(st.DegradedReasons) != 0 || st.Counters.PasswordChanges != 1 {
		t.Errorf("status after the change: %+v", st)
	}
	m := metricsOf(t, e.srv)
	if m.value("exless_password_changes_total") != 1 || m.value("exless_upstream_requests_total", "operation", "change_password", "result", "ok") != 1 {
		t.Error("the password change is not in the metrics")
	}
	e.assertNoSecretsLogged(newPw)
}

func TestPasswordRotateNeedsPasswordInVault(t *testing.T) {
	e := newEnv(t, rootRule())
	_, err := e.client.RotatePassword(context.Background())
	var ae *daemon.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(err.Error(), "password_vault_key") {
		t.Fatalf("rotate password with a password file: %v, want 400 naming password_vault_key", err)
	}
	if e.ex.PasswordChanges() != 0 {
		t.Fatal("the password changed")
	}
}

// A daemon died after writing the pending password and before Exceptionless
// heard of it: the stored token still works, so the change never happened.
func TestPendingPasswordNeverSent(t *testing.T) {
	e, _ := passwordEnv(t)
	ctx := context.Background()
	if _, err := e.broker.UserToken(ctx); err != nil {
		t.Fatal(err)
	}
	e.pendingWrite("never-sent-password-1", time.Hour)
	e.restart(rootRule())
	logins := e.ex.LoginAttempts()
	if _, err := e.broker.UserToken(ctx); err != nil {
		t.Fatalf("serving with a pending change: %v", err)
	}
	if st := e.broker.Status(); !strings.Contains(strings.Join(st.DegradedReasons, ";"), "password change") {
		t.Errorf("status does not show the pending change: %v", st.DegradedReasons)
	}
	e.broker.Tick(ctx)
	rec, _ := e.passwordRecord()
	if len(rec.PendingPassword) != 0 || string(rec.Password) != e.ex.Account.Password {
		t.Fatal("the pending password was not withdrawn")
	}
	if e.ex.LoginAttempts() != logins || e.ex.PasswordChanges() != 0 {
		t.Fatalf("logins %d, changes %d; want none", e.ex.LoginAttempts()-logins, e.ex.PasswordChanges())
	}
	if st := e.broker.Status(); len(st.DegradedReasons) != 0 {
		t.Errorf("still degraded: %v", st.DegradedReasons)
	}
	e.assertNoSecretsLogged("never-sent-password-1")
}

// A daemon died after Exceptionless changed the password and before the
// promotion: the stored token is dead, and the pending password works.
func TestPendingPasswordApplied(t *testing.T) {
	e, _ := passwordEnv(t)
	ctx := context.Background()
	old, err := e.broker.UserToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const next = "applied-password-2f9c"
	e.pendingWrite(next, time.Hour)
	if _, err := e.api.ChangePassword(ctx, old.Token, []byte(e.ex.Account.Password), []byte(next)); err != nil {
		t.Fatal(err)
	}
	logins := e.ex.LoginAttempts()
	e.restart(rootRule())
	tok, err := e.client.Token(ctx, daemon.ScopeUser, "")
	if err != nil {
		t.Fatalf("user token after the interrupted change: %v", err)
	}
	rec, _ := e.passwordRecord()
	if string(rec.Password) != next || len(rec.PendingPassword) != 0 || rec.Token != tok.Token {
		t.Fatal("the pending password was not promoted with the new token")
	}
	if _, err := e.api.Me(ctx, tok.Token); err != nil {
		t.Fatalf("served token: %v", err)
	}
	if got := e.ex.LoginAttempts() - logins; got != 1 {
		t.Errorf("logins = %d, want 1 (with the pending password)", got)
	}
	e.assertNoSecretsLogged(next)
}

// The pending password is refused and the stored token is gone (say it
// expired): the change never happened, and the current password logs in.
func TestPendingPasswordRefused(t *testing.T) {
	e, _ := passwordEnv(t)
	ctx := context.Background()
	old, err := e.broker.UserToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.pendingWrite("refused-password-77", time.Hour)
	e.ex.DeleteToken(old.Token.Reveal())
	logins := e.ex.LoginAttempts()
	e.restart(rootRule())
	tok, err := e.client.Token(ctx, daemon.ScopeUser, "")
	if err != nil {
		t.Fatalf("user token: %v", err)
	}
	rec, _ := e.passwordRecord()
	if string(rec.Password) != e.ex.Account.Password || len(rec.PendingPassword) != 0 || rec.Token != tok.Token {
		t.Fatal("the refused pending password was not withdrawn")
	}
	if got := e.ex.LoginAttempts() - logins; got != 2 {
		t.Errorf("logins = %d, want 2 (pending refused, then current)", got)
	}
	e.assertNoSecretsLogged("refused-password-77")
}

// Exceptionless fails the change-password call before acting on it: the
// rotation reports the failure, and the next tick withdraws the pending
// password because the old token still works.
func TestPasswordRotateUpstreamFails(t *testing.T) {
	e, clk := passwordEnv(t)
	ctx := context.Background()
	if _, err := e.broker.UserToken(ctx); err != nil {
		t.Fatal(err)
	}
	e.ex.FailNext("POST", "/api/v2/auth/change-password", 503)
	_, err := e.client.RotatePassword(ctx)
	var ae *daemon.APIError
	if !errors.As(err, &ae) || ae.Status != 503 {
		t.Fatalf("rotate while exceptionless fails: %v, want 503", err)
	}
	if rec, _ := e.passwordRecord(); len(rec.PendingPassword) == 0 {
		t.Fatal("no pending password recorded")
	}
	clk.Advance(10 * time.Minute)         // past the upstream backoff
	time.Sleep(settleAfter + time.Second) // and the pending change's age in Vault
	e.broker.Tick(ctx)
	rec, _ := e.passwordRecord()
	if len(rec.PendingPassword) != 0 || string(rec.Password) != e.ex.Account.Password || e.ex.PasswordChanges() != 0 {
		t.Fatal("the failed change was not withdrawn")
	}
	// And a rotation now succeeds.
	if _, err := e.client.RotatePassword(ctx); err != nil {
		t.Fatalf("rotate after recovery: %v", err)
	}
	if e.ex.PasswordChanges() != 1 {
		t.Fatal("no change")
	}
}

// The change reaches Exceptionless but the answer never comes back (the
// request times out): the password did change, only the pending copy in
// Vault knows it, and the next tick promotes it.
func TestPasswordRotateAnswerLost(t *testing.T) {
	e, clk := passwordEnv(t)
	ctx := context.Background()
	old, err := e.broker.UserToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.ex.SetLatency("POST", "/api/v2/auth/change-password", 3*time.Second)
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err = e.broker.RotatePassword(rctx)
	cancel()
	if !errors.Is(err, daemon.ErrUnavailable) {
		t.Fatalf("rotate whose answer is lost: %v, want ErrUnavailable", err)
	}
	e.ex.SetLatency("POST", "/api/v2/auth/change-password", 0)
	if e.ex.PasswordChanges() != 1 {
		t.Fatal("the change did not reach the server")
	}
	rec, _ := e.passwordRecord()
	pending := string(rec.PendingPassword)
	if pending == "" || !e.ex.PasswordIs(e.ex.Account.Email, pending) {
		t.Fatal("the account's new password is not pending in vault")
	}
	if st := e.broker.Status(); !strings.Contains(strings.Join(st.DegradedReasons, ";"), "password change") {
		t.Errorf("status does not show the unresolved change: %v", st.DegradedReasons)
	}
	clk.Advance(10 * time.Minute)
	e.broker.Tick(ctx)
	rec, _ = e.passwordRecord()
	if string(rec.Password) != pending || len(rec.PendingPassword) != 0 || rec.Token == old.Token {
		t.Fatal("the pending password was not promoted")
	}
	tok, err := e.broker.UserToken(ctx)
	if err != nil || tok.Token != rec.Token {
		t.Fatalf("served token after settling: %v", err)
	}
	if _, err := e.api.Me(ctx, tok.Token); err != nil {
		t.Fatalf("served token does not work: %v", err)
	}
	e.assertNoSecretsLogged(pending)
}

// The password in Vault is stale (someone changed it in the web UI): the
// change is refused with a clear error and the pending password withdrawn.
func TestPasswordRotateStalePassword(t *testing.T) {
	e, _ := passwordEnv(t)
	ctx := context.Background()
	if _, err := e.broker.UserToken(ctx); err != nil {
		t.Fatal(err)
	}
	e.ex.SetPassword(e.ex.Account.Email, "changed-in-the-web-ui")
	_, err := e.client.RotatePassword(ctx)
	if err == nil || !strings.Contains(err.Error(), "not the account's current password") {
		t.Fatalf("rotate with a stale password: %v", err)
	}
	rec, _ := e.passwordRecord()
	if len(rec.PendingPassword) != 0 || string(rec.Password) != e.ex.Account.Password {
		t.Fatal("the pending password was not withdrawn")
	}
	e.assertNoSecretsLogged("changed-in-the-web-ui")
}

// No password in Vault: the daemon says where to put it, and does not try
// to log in.
func TestPasswordMissingInVault(t *testing.T) {
	e := newEnv(t, rootRule())
	e.path = randomPath(t)
	e.store = e.newStore()
	e.editBroker = func(c *daemon.BrokerConfig) { c.PasswordKey = passwordKey }
	logins := e.ex.LoginAttempts()
	e.restart(rootRule())
	_, err := e.client.Token(context.Background(), daemon.ScopeUser, "")
	if err == nil || !strings.Contains(err.Error(), `no Exceptionless password in vault under "account"`) {
		t.Fatalf("token without a password in vault: %v", err)
	}
	if e.ex.LoginAttempts() != logins {
		t.Fatal("a login was attempted without a password")
	}
	if !strings.Contains(e.logs.String(), "vault kv put -cas=0") {
		t.Error("the log does not say how to provision the password")
	}
}

// A pending password younger than PendingSettleAfter may belong to a change
// still on its way to Exceptionless: a working stored token does not get it
// withdrawn until it is old enough.
func TestPendingPasswordInFlightIsKept(t *testing.T) {
	e, _ := passwordEnv(t)
	ctx := context.Background()
	if _, err := e.broker.UserToken(ctx); err != nil {
		t.Fatal(err)
	}
	e.pendingWrite("in-flight-password-5", 0)
	e.restart(rootRule())
	if _, err := e.broker.UserToken(ctx); err != nil {
		t.Fatal(err)
	}
	e.broker.Tick(ctx)
	if rec, _ := e.passwordRecord(); len(rec.PendingPassword) == 0 {
		t.Fatal("a pending password younger than PendingSettleAfter was withdrawn")
	}
	time.Sleep(settleAfter + time.Second)
	e.broker.Tick(ctx)
	if rec, _ := e.passwordRecord(); len(rec.PendingPassword) != 0 || string(rec.Password) != e.ex.Account.Password {
		t.Fatal("an old pending password that never reached exceptionless was kept")
	}
	e.assertNoSecretsLogged("in-flight-password-5")
}
