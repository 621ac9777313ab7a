package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
)

// ErrNothingToRotate means there is no client token for the project yet.
var ErrNothingToRotate = errors.New("no client token to rotate")

// Rotate replaces a project's client token: it mints a new one, publishes it
// to Vault in one check-and-set write that also records the old one as
// retiring, serves the new one, and has the old one revoked after grace by
// whichever daemon of the fleet gets there first. A negative grace means the
// configured default; zero revokes at once (for a leaked token).
func (b *Broker) Rotate(ctx context.Context, projectID string, grace time.Duration) (RotateResult, error) {
	return b.rotate(ctx, projectID, grace, 0)
}

// rotate rotates unless olderThan > 0 and the token is younger (the
// scheduled rotation, which every daemon of a fleet attempts).
func (b *Broker) rotate(ctx context.Context, projectID string, grace, olderThan time.Duration) (RotateResult, error) {
	if grace < 0 {
		grace = b.cfg.Grace
	}
	res := RotateResult{ProjectID: projectID}
	user, err := b.userToken(ctx)
	if err != nil {
		return res, err
	}
	if err := b.upstreamGate(); err != nil {
		return res, err
	}
	lctx, cancel := context.WithTimeout(ctx, b.cfg.LeaseWait)
	defer cancel()
	err = b.withLease(lctx, "rotate/"+projectID, func(context.Context) bool { return false },
		func(ctx context.Context, nonce string) error {
			key := ClientKey(projectID)
			rec, version, err := b.cfg.Store.Load(ctx, key)
			if errors.Is(err, ErrNotFound) {
				return ErrNothingToRotate
			}
			if err != nil {
				b.vaultFailure(err)
				return fmt.Errorf("%w: vault unreachable", ErrUnavailable)
			}
			if olderThan > 0 && b.cfg.Now().Sub(rec.ObtainedAt) < olderThan {
				b.keepClient(projectID, rec, version)
				res.NewFingerprint = Fingerprint(rec.Token)
				return nil
			}
			vt, err := b.cfg.Upstream.CreateProjectToken(ctx, user.rec.Token, projectID, exceptionless.NewToken{
				Scopes: []string{ScopeClient}, Notes: b.notes(nonce),
			})
			if err != nil {
				b.upstreamFailure(err)
				b.log.Error("rotate: mint", "project", projectID, "err", err)
				return fmt.Errorf("%w: exceptionless unavailable", ErrUnavailable)
			}
			now := b.cfg.Now().UTC()
			next := rec
			next.Token, next.ObtainedAt, next.ObtainedBy, next.OrganizationID = vt.ID, now, b.cfg.Host, vt.OrganizationID
			next.ExpiresAt = time.Time{}
			if vt.ExpiresUTC != nil {
				next.ExpiresAt = vt.ExpiresUTC.UTC()
			}
			next.Retiring = append(append([]Retiring(nil), rec.Retiring...), Retiring{Token: rec.Token, RevokeAfter: now.Add(grace)})
			newVersion, err := b.cfg.Store.Save(ctx, key, next, version)
			if errors.Is(err, ErrConflict) {
				if cur, v, ok := b.landed(ctx, key, vt.ID); ok {
					next, newVersion, err = cur, v, nil
				}
			}
			if err != nil {
				// Not published: nobody has the new token, so revoke it.
				b.revoke(ctx, user.rec.Token, projectID, vt.ID)
				if errors.Is(err, ErrConflict) {
					return fmt.Errorf("%w: the token changed in vault during the rotation; try again", ErrUnavailable)
				}
				b.vaultFailure(err)
				return fmt.Errorf("%w: vault unreachable", ErrUnavailable)
			}
			b.keepClient(projectID, next, newVersion)
			b.mu.Lock()
			b.counters.Mints++
			b.counters.Rotations++
			b.lastRotation = now
			b.mu.Unlock()
			res.OldFingerprint, res.NewFingerprint, res.RevokeAfter = Fingerprint(rec.Token), Fingerprint(vt.ID), now.Add(grace)
			b.log.Info("rotated a client token", "project", projectID, "old_fp", res.OldFingerprint,
				"new_fp", res.NewFingerprint, "revoke_after", res.RevokeAfter)
			if grace == 0 {
				n, err := b.revokeDue(ctx, user.rec.Token, projectID, now)
				if err != nil {
					return err
				}
				res.Revoked = n > 0
			}
			return nil
		})
	return res, err
}

// revokeDue revokes a project's retiring tokens whose grace ended by now and
// removes them from the record; it runs under the lease. It returns how many
// were revoked.
func (b *Broker) revokeDue(ctx context.Context, user exceptionless.Token, projectID string, now time.Time) (int, error) {
	key := ClientKey(projectID)
	rec, version, err := b.cfg.Store.Load(ctx, key)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return 0, nil
		}
		b.vaultFailure(err)
		return 0, fmt.Errorf("%w: vault unreachable", ErrUnavailable)
	}
	var due []exceptionless.Token
	var keep []Retiring
	for _, r := range rec.Retiring {
		if !r.RevokeAfter.After(now) {
			due = append(due, r.Token)
		} else {
			keep = append(keep, r)
		}
	}
	if len(due) == 0 {
		return 0, nil
	}
	err = b.cfg.Upstream.DeleteTokens(ctx, user, due...)
	if err != nil && !errors.Is(err, exceptionless.ErrNotFound) {
		b.upstreamFailure(err)
		return 0, fmt.Errorf("%w: exceptionless unavailable", ErrUnavailable)
	}
	b.mu.Lock()
	b.counters.Revocations += uint64(len(due))
	b.mu.Unlock()
	rec.Retiring = keep
	newVersion, err := b.cfg.Store.Save(ctx, key, rec, version)
	if err != nil {
		// The tokens are revoked; a later sweep finds them gone (404) and
		// drops them from the record then.
		return len(due), nil
	}
	b.keepClient(projectID, rec, newVersion)
	b.log.Info("revoked retired client tokens", "project", projectID, "count", len(due))
	return len(due), nil
}

// sweepRetiring revokes due retiring tokens of every held project.
func (b *Broker) sweepRetiring(ctx context.Context) {
	b.mu.Lock()
	var projects []string
	for p, h := range b.clients {
		if len(h.rec.Retiring) > 0 {
			projects = append(projects, p)
		}
	}
	b.mu.Unlock()
	if len(projects) == 0 {
		return
	}
	vnow, err := b.cfg.Store.Now(ctx)
	if err != nil {
		b.vaultFailure(err)
		return
	}
	for _, p := range projects {
		b.mu.Lock()
		h := b.clients[p]
		b.mu.Unlock()
		due := false
		for _, r := range h.rec.Retiring {
			if !r.RevokeAfter.After(vnow) {
				due = true
			}
		}
		if !due {
			continue
		}
		user, err := b.userToken(ctx)
		if err != nil {
			return
		}
		lctx, cancel := context.WithTimeout(ctx, b.cfg.LeaseWait)
		err = b.withLease(lctx, "revoke/"+p, func(context.Context) bool { return false },
			func(ctx context.Context, _ string) error {
				_, err := b.revokeDue(ctx, user.rec.Token, p, vnow)
				return err
			})
		cancel()
		if err != nil {
			b.log.Warn("sweep retiring tokens", "project", p, "err", err)
		}
	}
}
