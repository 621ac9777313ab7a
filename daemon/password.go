package daemon

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
)

// ErrPasswordNotInStore means a password change was asked of a daemon whose
// password comes from a file: exless cannot change a password it could not
// then publish.
var ErrPasswordNotInStore = errors.New("the Exceptionless password is not kept in vault (exceptionless.password_vault_key)")

// passwordLease is the lease purpose of every password operation, so that a
// change and the resolution of an interrupted one never overlap in a fleet.
const passwordLease = "password"

func (b *Broker) userKey() string {
	if b.cfg.PasswordKey != "" {
		return b.cfg.PasswordKey
	}
	return UserKey
}

// loadUser reads the user record. A password record that holds no token yet
// reads as ErrNotFound, with its version and password, for the login that
// will add one.
func (b *Broker) loadUser(ctx context.Context) (Record, int, error) {
	rec, version, err := b.cfg.Store.Load(ctx, b.userKey())
	if err == nil {
		b.notePending(rec)
	}
	if err == nil && rec.Token.IsZero() {
		return rec, version, fmt.Errorf("%w: the password record holds no user token yet", ErrNotFound)
	}
	return rec, version, err
}

// notePending remembers whether rec shows an unresolved password change,
// for status and for Tick to settle.
func (b *Broker) notePending(rec Record) {
	note := ""
	if len(rec.PendingPassword) > 0 {
		note = fmt.Sprintf("a password change started by %s at %s is unresolved", rec.PendingBy, rec.PendingSince.UTC().Format(time.RFC3339))
	}
	b.mu.Lock()
	b.pendingPassword = note
	b.mu.Unlock()
}

// newPassword generates a password: 32 random bytes, base64url, 43 ASCII
// characters (Exceptionless takes 6 to 100).
func newPassword() Password {
	raw := make([]byte, 32)
	_, _ = crand.Read(raw)
	defer clear(raw)
	p := make(Password, base64.RawURLEncoding.EncodedLen(len(raw)))
	base64.RawURLEncoding.Encode(p, raw)
	return p
}

// loginFromStore logs in with the password kept in the store and publishes
// the token in the same record. It runs under the login lease and counts
// each login attempt against the fleet's budget. A pending password change
// is resolved first.
func (b *Broker) loginFromStore(ctx context.Context) (*heldToken, error) {
	if err := b.loginGate(); err != nil {
		return nil, err
	}
	rec, version, err := b.loadUser(ctx)
	switch {
	case err == nil, errors.Is(err, ErrNotFound) && version > 0:
	case errors.Is(err, ErrNotFound):
		return nil, b.noPassword()
	default:
		b.vaultFailure(err)
		return nil, fmt.Errorf("%w: vault unreachable", ErrUnavailable)
	}
	b.vaultSuccess()
	if len(rec.PendingPassword) > 0 {
		return b.resolvePending(ctx, rec, version)
	}
	if len(rec.Password) == 0 {
		return nil, b.noPassword()
	}
	if err := b.spendLoginBudget(ctx); err != nil {
		return nil, err
	}
	tok, err := b.attemptLogin(ctx, rec.Password)
	if err != nil {
		return nil, b.loginFailed(err)
	}
	h, _ := b.publishUser(ctx, rec, version, tok, nil)
	return h, nil
}

func (b *Broker) noPassword() error {
	b.setUserProblem("no password in vault at " + b.userKey())
	b.log.Error("the password record in vault has no password; write it with check-and-set, e.g. vault kv put -cas=0 <mount>/<path>/" +
		b.userKey() + " password=- (the password on standard input)")
	return fmt.Errorf("%w: no Exceptionless password in vault under %q (see the exlessd journal)", ErrUnavailable, b.userKey())
}

// publishUser writes tok as the user token into the record read at version,
// keeping its password; with promote set, the pending password becomes the
// password in the same write. A lost check-and-set is retried on a fresh
// read: what Exceptionless accepted is the truth the record must reach. When
// Vault cannot be written the token is served from memory, and a pending
// password stays pending in Vault, where the next settlement resolves it;
// landed says whether the write reached Vault.
func (b *Broker) publishUser(ctx context.Context, rec Record, version int, tok exceptionless.Token, promote Password) (h *heldToken, landed bool) {
	for attempt := 0; ; attempt++ {
		next := rec
		next.Schema, next.Scope, next.Token = RecordSchema, ScopeUser, tok
		next.ProjectID, next.OrganizationID, next.Retiring = "", "", nil
		next.ObtainedAt, next.ObtainedBy, next.ExpiresAt = b.cfg.Now().UTC(), b.cfg.Host, time.Time{}
		if promote != nil {
			next.Password = promote
			next.PendingPassword, next.PendingSince, next.PendingBy = nil, time.Time{}, ""
		}
		newVersion, err := b.cfg.Store.Save(ctx, b.userKey(), next, version)
		if err == nil {
			b.vaultSuccess()
			b.notePending(next)
			b.log.Info("stored the user token in vault", "key", b.userKey(), "version", newVersion, "token_fp", Fingerprint(tok))
			return b.keepUser(next, newVersion), true
		}
		if !errors.Is(err, ErrConflict) {
			b.vaultFailure(err)
		}
		if !errors.Is(err, ErrConflict) || attempt == 4 {
			b.log.Error("cannot store the user token in vault; holding it in memory only", "err", err)
			return b.keepUser(next, version), false
		}
		cur, v, lerr := b.cfg.Store.Load(ctx, b.userKey())
		if lerr != nil && !errors.Is(lerr, ErrNotFound) {
			b.vaultFailure(lerr)
			return b.keepUser(next, version), false
		}
		if cur.Token == tok && (promote == nil || slices.Equal(cur.Password, promote)) && (promote == nil || len(cur.PendingPassword) == 0) {
			return b.keepUser(cur, v), true // our write had landed (replayed after a failover)
		}
		rec, version = cur, v
	}
}

// RotatePassword changes the Exceptionless password to a new random one
// and publishes it. The order makes every crash recoverable: the new
// password is written to Vault as pending first; then Exceptionless
// changes it (and deletes every login token of the user, the shared one
// included, returning a new one); then password and token are promoted in
// one check-and-set write. A pending password found later is resolved by
// checking whether the stored token still works (the change never
// happened) or logging in with it (the change happened). It never logs out.
func (b *Broker) RotatePassword(ctx context.Context) (PasswordResult, error) {
	var res PasswordResult
	if b.cfg.PasswordKey == "" {
		return res, ErrPasswordNotInStore
	}
	// Logged in before taking the lease: a login takes it too.
	if _, err := b.userToken(ctx); err != nil {
		return res, err
	}
	if err := b.upstreamGate(); err != nil {
		return res, err
	}
	lctx, cancel := context.WithTimeout(ctx, b.cfg.LeaseWait)
	defer cancel()
	err := b.withLease(lctx, passwordLease, func(context.Context) bool { return false },
		func(ctx context.Context, _ string) error {
			rec, version, err := b.loadUser(ctx)
			switch {
			case errors.Is(err, ErrNotFound):
				return fmt.Errorf("%w: vault holds no user token under %q yet; exlessd logs in first", ErrUnavailable, b.userKey())
			case err != nil:
				b.vaultFailure(err)
				return fmt.Errorf("%w: cannot read the user record from vault", ErrUnavailable)
			}
			if len(rec.PendingPassword) > 0 {
				return fmt.Errorf("%w: a password change started by %s at %s is still unresolved; exlessd resolves it when Exceptionless answers, then try again",
					ErrUnavailable, rec.PendingBy, rec.PendingSince.UTC().Format(time.RFC3339))
			}
			if len(rec.Password) == 0 {
				return b.noPassword()
			}
			// Stamped by Vault's clock, against which its age is judged.
			vnow, err := b.cfg.Store.Now(ctx)
			if err != nil {
				b.vaultFailure(err)
				return fmt.Errorf("%w: vault unreachable; the password is unchanged", ErrUnavailable)
			}
			next := newPassword()
			pending := rec
			pending.PendingPassword, pending.PendingSince, pending.PendingBy = next, vnow.UTC(), b.cfg.Host
			pv, err := b.cfg.Store.Save(ctx, b.userKey(), pending, version)
			if err != nil {
				if errors.Is(err, ErrConflict) {
					return fmt.Errorf("%w: the user record changed in vault meanwhile; try again", ErrUnavailable)
				}
				b.vaultFailure(err)
				return fmt.Errorf("%w: vault unreachable; the password is unchanged", ErrUnavailable)
			}
			b.log.Info("changing the exceptionless password; the new one is pending in vault", "key", b.userKey(), "version", pv)
			tok, err := b.cfg.Upstream.ChangePassword(ctx, rec.Token, rec.Password, next)
			// Whatever Exceptionless answered must reach Vault even if the
			// asking peer hangs up now.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			var ae *exceptionless.APIError
			switch {
			case err == nil:
				b.upstreamSuccess()
			case errors.As(err, &ae) && (ae.Status == 422 || ae.Status == 401 || ae.Status == 403):
				// Refused, so nothing changed: withdraw the pending password.
				b.dropPending(wctx, pending, pv)
				if slices.Contains(ae.Fields, "current_password") {
					return fmt.Errorf("%w: exceptionless says the password in vault is not the account's current password; put the current one in vault", ErrUnavailable)
				}
				if ae.Status != 422 {
					b.dropUser(rec.Token)
					return fmt.Errorf("%w: exceptionless rejected the user token; try again after exlessd logs in again", ErrUnavailable)
				}
				return fmt.Errorf("%w: exceptionless refused the new password (%s)", ErrUnavailable, err)
			default:
				// No answer: the change may or may not have happened. The
				// pending password in Vault settles it once Exceptionless
				// answers (Tick, or the next login of any daemon).
				b.upstreamFailure(err)
				b.notePending(pending)
				b.log.Error("change password: no answer from exceptionless; the new password stays pending in vault", "err", err)
				return fmt.Errorf("%w: exceptionless did not answer the password change; exlessd settles it from the pending password in vault once it answers (see exlessctl status)", ErrUnavailable)
			}
			if _, landed := b.publishUser(wctx, pending, pv, tok, next); !landed {
				// Counted when the pending password is promoted.
				return fmt.Errorf("%w: exceptionless changed the password, but vault could not be written: the new password stays pending in vault and exlessd publishes it with a new token once vault answers (see exlessctl status)", ErrUnavailable)
			}
			b.mu.Lock()
			b.counters.PasswordChanges++
			b.mu.Unlock()
			res = PasswordResult{OldFingerprint: Fingerprint(rec.Token), NewFingerprint: Fingerprint(tok), ChangedAt: b.cfg.Now().UTC()}
			b.log.Info("changed the exceptionless password", "old_fp", res.OldFingerprint, "new_fp", res.NewFingerprint)
			return nil
		})
	return res, err
}

// resolvePending settles an interrupted password change: rec holds a pending
// password. Exceptionless deletes every login token of the user when the
// password changes, so a stored token that still works shows the change has
// not happened, and a pending password that logs in shows it has. A change
// may still be on its way to Exceptionless, though (a request that timed out
// on our side can land later), so a pending password younger than
// PendingSettleAfter by Vault's clock is never withdrawn: only promoted. It
// runs under the fleet lease and makes at most two login attempts, each
// counted against the fleet's budget.
func (b *Broker) resolvePending(ctx context.Context, rec Record, version int) (*heldToken, error) {
	vnow, err := b.cfg.Store.Now(ctx)
	if err != nil {
		b.vaultFailure(err)
		return nil, fmt.Errorf("%w: vault unreachable", ErrUnavailable)
	}
	settled := vnow.Sub(rec.PendingSince) >= b.cfg.PendingSettleAfter
	if !rec.Token.IsZero() {
		ok, err := b.checkUser(ctx, rec.Token)
		if err != nil {
			return nil, fmt.Errorf("%w: exceptionless unreachable; the pending password change stays unresolved", ErrUnavailable)
		}
		if ok && !settled {
			return b.keepUser(rec, version), nil // in flight, maybe: wait
		}
		if ok {
			b.log.Warn("a pending password change never reached exceptionless; withdrawing it",
				"started_by", rec.PendingBy, "since", rec.PendingSince)
			return b.dropPending(ctx, rec, version), nil
		}
	}
	try := func(pw Password) (exceptionless.Token, error) {
		if err := b.spendLoginBudget(ctx); err != nil {
			return "", err
		}
		return b.attemptLogin(ctx, pw)
	}
	failed := func(err error) error {
		if errors.Is(err, ErrUnavailable) {
			return err // the budget, not a login
		}
		return b.loginFailed(err)
	}
	tok, err := try(rec.PendingPassword)
	if err == nil {
		b.log.Info("the pending password is the account's password; promoting it", "started_by", rec.PendingBy)
		b.mu.Lock()
		b.counters.PasswordChanges++
		b.mu.Unlock()
		h, _ := b.publishUser(ctx, rec, version, tok, rec.PendingPassword)
		return h, nil
	}
	refused := errors.Is(err, exceptionless.ErrLoginFailed) || errors.Is(err, exceptionless.ErrLoginRejected)
	if !refused || len(rec.Password) == 0 {
		return nil, failed(err)
	}
	tok, err = try(rec.Password)
	if err != nil {
		return nil, failed(err)
	}
	if !settled {
		// The current password works for now; keep the pending one until
		// the change can no longer land.
		h, _ := b.publishUser(ctx, rec, version, tok, nil)
		return h, nil
	}
	b.log.Warn("the pending password was refused and the current one accepted; withdrawing the pending change",
		"started_by", rec.PendingBy)
	cleared := rec
	cleared.PendingPassword, cleared.PendingSince, cleared.PendingBy = nil, time.Time{}, ""
	h, _ := b.publishUser(ctx, cleared, version, tok, nil)
	return h, nil
}

// dropPending withdraws a pending password that Exceptionless never took.
// It returns the held user token when the record has one.
func (b *Broker) dropPending(ctx context.Context, rec Record, version int) *heldToken {
	rec.PendingPassword, rec.PendingSince, rec.PendingBy = nil, time.Time{}, ""
	v, err := b.cfg.Store.Save(ctx, b.userKey(), rec, version)
	if err != nil {
		// Still pending in Vault; the next settlement finds the token
		// working and tries again.
		b.log.Warn("could not withdraw the pending password in vault", "err", err)
		v = version
	} else {
		b.notePending(rec)
	}
	if rec.Token.IsZero() {
		return nil
	}
	return b.keepUser(rec, v)
}

// settlePending resolves an unresolved password change that this daemon
// has seen in Vault (Tick calls it), under the fleet lease so that it never
// races a change in progress on another host.
func (b *Broker) settlePending(ctx context.Context) {
	b.mu.Lock()
	pending := b.pendingPassword != ""
	b.mu.Unlock()
	if !pending || b.cfg.PasswordKey == "" || b.upstreamGate() != nil || b.loginGate() != nil {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, b.cfg.LeaseWait)
	defer cancel()
	err := b.withLease(lctx, passwordLease, func(context.Context) bool { return false },
		func(ctx context.Context, _ string) error {
			rec, version, err := b.cfg.Store.Load(ctx, b.userKey())
			if err != nil {
				return err
			}
			b.notePending(rec)
			if len(rec.PendingPassword) == 0 {
				return nil // settled meanwhile
			}
			_, err = b.resolvePending(ctx, rec, version)
			return err
		})
	if err != nil {
		b.log.Warn("pending password change still unresolved", "err", err)
	}
}
