package daemon

import (
	"context"
	"errors"
	"time"
)

// Run is the broker's background loop until ctx ends: every PollInterval it
// re-reads held records from Vault (adopting other hosts' rotations and
// proving what it serves is current), retries what failed, revokes retired
// tokens whose grace ended and rotates tokens older than MaxAge.
func (b *Broker) Run(ctx context.Context) {
	t := time.NewTicker(b.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.Tick(ctx)
	}
}

// Tick runs one round of Run's work.
func (b *Broker) Tick(ctx context.Context) {
	if b.vaultGate() != nil {
		return
	}
	b.poll(ctx)
	b.mu.Lock()
	haveUser := b.user != nil
	b.mu.Unlock()
	if !haveUser {
		if _, err := b.userToken(ctx); err != nil {
			b.log.Debug("still no user token", "err", err)
		}
	}
	b.settlePending(ctx)
	b.sweepRetiring(ctx)
	if b.cfg.MaxAge > 0 {
		b.rotateOld(ctx)
	}
}

// poll re-reads every held record.
func (b *Broker) poll(ctx context.Context) {
	b.mu.Lock()
	user := b.user
	clients := make(map[string]*heldToken, len(b.clients))
	for p, h := range b.clients {
		clients[p] = h
	}
	b.mu.Unlock()
	if user != nil {
		rec, version, err := b.loadUser(ctx)
		switch {
		case err == nil:
			b.vaultSuccess()
			if rec.Token != user.rec.Token {
				b.log.Info("the user token changed in vault; serving the new one", "version", version)
			}
			b.keepUser(rec, version)
		case errors.Is(err, ErrNotFound):
			b.log.Warn("the user token is gone from vault; serving the held one until it is rejected or stale")
		default:
			b.vaultFailure(err)
			return
		}
	}
	for p, h := range clients {
		rec, version, err := b.cfg.Store.Load(ctx, ClientKey(p))
		switch {
		case err == nil:
			b.vaultSuccess()
			if rec.Token != h.rec.Token {
				b.log.Info("a client token changed in vault; serving the new one", "project", p, "version", version)
			}
			b.keepClient(p, rec, version)
		case errors.Is(err, ErrNotFound):
			b.log.Warn("a client token is gone from vault; serving the held one until stale", "project", p)
		default:
			b.vaultFailure(err)
			return
		}
	}
}

func (b *Broker) rotateOld(ctx context.Context) {
	now := b.cfg.Now()
	b.mu.Lock()
	var old []string
	for p, h := range b.clients {
		if now.Sub(h.rec.ObtainedAt) >= b.cfg.MaxAge {
			old = append(old, p)
		}
	}
	b.mu.Unlock()
	for _, p := range old {
		if _, err := b.rotate(ctx, p, -1, b.cfg.MaxAge); err != nil {
			b.log.Warn("scheduled rotation", "project", p, "err", err)
		}
	}
}
