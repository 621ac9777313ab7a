package vaultstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/exless/exless/daemon"
)

// KV fields of a daemon.Control record. It never holds a token.
const (
	ctlHolder   = "holder"
	ctlPurpose  = "purpose"
	ctlNonce    = "nonce"
	ctlTTL      = "ttl_ms"
	ctlReleased = "released"
	ctlWindow   = "window"
	ctlCount    = "count"
)

// LoadControl reads a control record (the fleet's lease or login budget)
// with the version and the time Vault wrote it.
func (s *Store) LoadControl(ctx context.Context, key string) (daemon.Control, daemon.Meta, error) {
	if err := checkPath(key); err != nil {
		return daemon.Control{}, daemon.Meta{}, fmt.Errorf("read vault record %q: bad key: %w", key, err)
	}
	// getKV: with the store's auth (AppRole login on demand, a new token
	// after a 403) and failover.
	sec, err := s.getKV(ctx, key)
	if err != nil {
		return daemon.Control{}, daemon.Meta{}, err
	}
	if sec.VersionMetadata == nil || sec.VersionMetadata.Version <= 0 {
		return daemon.Control{}, daemon.Meta{}, fmt.Errorf("read vault record %q: no version metadata: is mount %q KV version 2?", key, s.mount)
	}
	meta := daemon.Meta{Version: sec.VersionMetadata.Version, Written: sec.VersionMetadata.CreatedTime}
	if sec.Data == nil {
		return daemon.Control{}, meta, fmt.Errorf("read vault record %q: version %d deleted: %w", key, meta.Version, daemon.ErrNotFound)
	}
	var c daemon.Control
	if c.Holder, err = stringField(key, sec.Data, ctlHolder, false); err != nil {
		return c, meta, err
	}
	if c.Purpose, err = stringField(key, sec.Data, ctlPurpose, false); err != nil {
		return c, meta, err
	}
	if c.Nonce, err = stringField(key, sec.Data, ctlNonce, false); err != nil {
		return c, meta, err
	}
	if _, ok := sec.Data[ctlTTL]; ok {
		ms, err := intField(key, sec.Data, ctlTTL)
		if err != nil {
			return c, meta, err
		}
		c.TTL = time.Duration(ms) * time.Millisecond
	}
	if v, ok := sec.Data[ctlReleased]; ok {
		b, ok := v.(bool)
		if !ok {
			return c, meta, &FieldError{key, ctlReleased, "is not a boolean"}
		}
		c.Released = b
	}
	if c.Window, err = timeField(key, sec.Data, ctlWindow, false); err != nil {
		return c, meta, err
	}
	if _, ok := sec.Data[ctlCount]; ok {
		if c.Count, err = intField(key, sec.Data, ctlCount); err != nil {
			return c, meta, err
		}
	}
	return c, meta, nil
}

// SaveControl check-and-sets a control record and returns the new version.
func (s *Store) SaveControl(ctx context.Context, key string, c daemon.Control, version int) (int, error) {
	if err := checkPath(key); err != nil {
		return 0, fmt.Errorf("write vault record %q: bad key: %w", key, err)
	}
	data := map[string]any{
		ctlHolder:   c.Holder,
		ctlPurpose:  c.Purpose,
		ctlNonce:    c.Nonce,
		ctlTTL:      c.TTL.Milliseconds(),
		ctlReleased: c.Released,
		ctlCount:    c.Count,
	}
	if !c.Window.IsZero() {
		data[ctlWindow] = c.Window.UTC().Format(time.RFC3339Nano)
	}
	// putKV: check-and-set with cas_required on the key, and the store's
	// auth and failover.
	return s.putKV(ctx, key, data, version)
}

// Now returns Vault's clock (sys/health's server_time_utc, in seconds), the
// clock that wrote every record's created_time.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	h, err := s.client.Sys().HealthWithContext(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("read vault time: %w", s.vaultErr(err))
	}
	if h.ServerTimeUTC == 0 {
		return time.Time{}, errors.New("read vault time: sys/health carried no server_time_utc")
	}
	return time.Unix(h.ServerTimeUTC, 0).UTC(), nil
}
