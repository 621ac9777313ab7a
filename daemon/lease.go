package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
)

// leasePoll is how often a daemon waiting on another's lease looks again.
const leasePoll = 150 * time.Millisecond

// withLease runs work while holding the fleet's lease, unless done reports
// first that the result is already in Vault (another daemon produced it).
// done is asked before every attempt and once more after the lease is won.
//
// The lease is a check-and-set record in Vault. It ends when its holder
// releases it (a check-and-set write of a "released" record: KV deletes
// cannot be conditional) or TTL after Vault wrote it, judged by Vault's
// clock, so a holder that died (kill -9) blocks the fleet for at most TTL.
func (b *Broker) withLease(ctx context.Context, purpose string, done func(context.Context) bool,
	work func(ctx context.Context, nonce string) error) error {
	for {
		if done(ctx) {
			return nil
		}
		ctl, meta, err := b.cfg.Store.LoadControl(ctx, LeaseKey)
		notFound := errors.Is(err, ErrNotFound)
		if err != nil && !notFound {
			b.vaultFailure(err)
			return fmt.Errorf("%w: vault unreachable", ErrUnavailable)
		}
		free := notFound || ctl.Released
		var expired *Control
		if !free {
			vnow, err := b.cfg.Store.Now(ctx)
			if err != nil {
				b.vaultFailure(err)
				return fmt.Errorf("%w: vault unreachable", ErrUnavailable)
			}
			if vnow.After(meta.Written.Add(ctl.TTL)) {
				free = true
				prev := ctl
				expired = &prev
			}
		}
		if !free {
			b.noteLease(ctl.Holder)
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w: waiting for daemon %s (%s) to finish", ErrUnavailable, ctl.Holder, ctl.Purpose)
			case <-time.After(leasePoll):
			}
			continue
		}
		nonce := randomHex(8)
		version, err := b.cfg.Store.SaveControl(ctx, LeaseKey, Control{
			Holder: b.id, Purpose: purpose, Nonce: nonce, TTL: b.cfg.LeaseTTL,
		}, meta.Version)
		if errors.Is(err, ErrConflict) {
			continue // someone else took it; look again
		}
		if err != nil {
			b.vaultFailure(err)
			return fmt.Errorf("%w: vault unreachable", ErrUnavailable)
		}
		b.noteLease(b.id)
		return b.holding(ctx, version, expired, done, func(ctx context.Context) error { return work(ctx, nonce) })
	}
}

func (b *Broker) holding(ctx context.Context, version int, expired *Control, done func(context.Context) bool,
	work func(context.Context) error) error {
	defer b.releaseLease(version)
	if expired != nil && expired.Holder != b.id {
		b.log.Warn("took over an expired lease", "previous_holder", expired.Holder, "purpose", expired.Purpose)
		b.cleanUpAfter(ctx, *expired)
	}
	if done(ctx) {
		return nil
	}
	return work(ctx)
}

func (b *Broker) releaseLease(version int) {
	// Release even when the request was cancelled: otherwise the fleet
	// waits out the TTL.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := b.cfg.Store.SaveControl(ctx, LeaseKey, Control{Holder: b.id, Released: true}, version)
	if err != nil {
		b.log.Warn("could not release the lease; it expires by itself", "err", err)
	}
	b.noteLease("")
}

func (b *Broker) noteLease(holder string) {
	b.mu.Lock()
	b.leaseHolder = holder
	b.mu.Unlock()
}

// cleanUpAfter revokes what a dead lease holder minted but did not store:
// tokens of the project whose notes carry its nonce and that Vault's record
// does not hold. Without this a crash between mint and store would leave a
// valid key nobody knows about.
func (b *Broker) cleanUpAfter(ctx context.Context, prev Control) {
	_, project, ok := strings.Cut(prev.Purpose, "/")
	if !ok || prev.Nonce == "" || (!strings.HasPrefix(prev.Purpose, "mint/") && !strings.HasPrefix(prev.Purpose, "rotate/")) {
		return
	}
	b.mu.Lock()
	user := b.user
	b.mu.Unlock()
	if user == nil {
		b.log.Warn("cannot check for orphaned tokens without a user token", "project", project)
		return
	}
	tokens, err := b.cfg.Upstream.ProjectTokens(ctx, user.rec.Token, project)
	if err != nil {
		b.log.Warn("cannot list project tokens to find orphans", "project", project, "err", err)
		return
	}
	keep := map[exceptionless.Token]bool{}
	if rec, _, err := b.cfg.Store.Load(ctx, ClientKey(project)); err == nil {
		keep[rec.Token] = true
		for _, r := range rec.Retiring {
			keep[r.Token] = true
		}
	} else if !errors.Is(err, ErrNotFound) {
		return // cannot tell what is stored; revoke nothing
	}
	tag := "(op " + prev.Nonce + ")"
	var orphans []exceptionless.Token
	for _, t := range tokens {
		if strings.Contains(t.Notes, tag) && !keep[t.ID] {
			orphans = append(orphans, t.ID)
		}
	}
	if len(orphans) > 0 {
		b.log.Warn("revoking tokens a dead lease holder minted but never stored", "project", project, "count", len(orphans))
		b.revoke(ctx, user.rec.Token, project, orphans...)
	}
}

// spendLoginBudget counts one login attempt against the fleet's budget for
// the current quarter hour (by Vault's clock), or refuses when it is spent.
func (b *Broker) spendLoginBudget(ctx context.Context) error {
	for {
		ctl, meta, err := b.cfg.Store.LoadControl(ctx, BudgetKey)
		if err != nil && !errors.Is(err, ErrNotFound) {
			b.vaultFailure(err)
			return fmt.Errorf("%w: vault unreachable", ErrUnavailable)
		}
		vnow, err := b.cfg.Store.Now(ctx)
		if err != nil {
			b.vaultFailure(err)
			return fmt.Errorf("%w: vault unreachable", ErrUnavailable)
		}
		window := vnow.UTC().Truncate(15 * time.Minute)
		count := ctl.Count
		if !ctl.Window.Equal(window) {
			count = 0
		}
		if count >= b.cfg.LoginBudget {
			next := window.Add(15 * time.Minute)
			b.setUserProblem(fmt.Sprintf("the fleet's login budget (%d per quarter hour) is spent", b.cfg.LoginBudget))
			return fmt.Errorf("%w: the fleet's login budget (%d per quarter hour) is spent until %s", ErrUnavailable, b.cfg.LoginBudget, next.Format("15:04 MST"))
		}
		_, err = b.cfg.Store.SaveControl(ctx, BudgetKey, Control{Window: window, Count: count + 1}, meta.Version)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			b.vaultFailure(err)
			return fmt.Errorf("%w: vault unreachable", ErrUnavailable)
		}
		return nil
	}
}
