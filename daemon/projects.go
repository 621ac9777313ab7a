package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
)

// projectDirectory maps project ids to "organization/name" and back, for
// rules and requests that name projects. Names are unique only within an
// organization, so the organization is part of the name. The list is read
// with the user token and kept for a while; a miss refreshes it, at most once
// per minNameRefresh, so a peer asking for unknown names cannot make the
// daemon call Exceptionless in a loop.
type projectDirectory struct {
	mu       sync.Mutex
	byID     map[string]string
	byName   map[string]string
	loaded   time.Time
	tried    time.Time
	list     func(ctx context.Context) ([]exceptionless.Project, error)
	now      func() time.Time
	fresh    time.Duration
	minRetry time.Duration
}

const (
	nameFreshness  = 10 * time.Minute
	minNameRefresh = 30 * time.Second
)

// ErrUnknownProjectName means no project of the account has that
// "organization/name".
var ErrUnknownProjectName = errors.New("unknown project name")

func (d *projectDirectory) refresh(ctx context.Context, force bool) error {
	d.mu.Lock()
	now := d.now()
	stale := now.Sub(d.loaded) > d.fresh
	if !stale && !force {
		d.mu.Unlock()
		return nil
	}
	if now.Sub(d.tried) < d.minRetry {
		d.mu.Unlock()
		return nil
	}
	d.tried = now
	d.mu.Unlock()

	projects, err := d.list(ctx)
	if err != nil {
		return err
	}
	byID := make(map[string]string, len(projects))
	byName := make(map[string]string, len(projects))
	for _, p := range projects {
		org := p.OrganizationName
		if org == "" {
			org = p.OrganizationID
		}
		name := org + "/" + p.Name
		byID[p.ID] = name
		byName[name] = p.ID
	}
	d.mu.Lock()
	d.byID, d.byName, d.loaded = byID, byName, now
	d.mu.Unlock()
	return nil
}

// name returns a project's "organization/name", or "" when unknown.
func (d *projectDirectory) name(ctx context.Context, id string) string {
	d.mu.Lock()
	n, ok := d.byID[id]
	d.mu.Unlock()
	if ok {
		return n
	}
	if d.refresh(ctx, true) != nil {
		return ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byID[id]
}

// id resolves an "organization/name" to a project id.
func (d *projectDirectory) id(ctx context.Context, name string) (string, error) {
	d.mu.Lock()
	id, ok := d.byName[name]
	d.mu.Unlock()
	if ok {
		return id, nil
	}
	if err := d.refresh(ctx, true); err != nil {
		return "", err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if id, ok := d.byName[name]; ok {
		return id, nil
	}
	return "", fmt.Errorf("%w %q", ErrUnknownProjectName, name)
}

// ProjectName returns a project's "organization/name", or "" when it cannot
// be told (not logged in, Exceptionless unreachable, no such project).
func (b *Broker) ProjectName(ctx context.Context, id string) string {
	return b.projects.name(ctx, id)
}

// ProjectID resolves "organization/name" to a project id.
func (b *Broker) ProjectID(ctx context.Context, name string) (string, error) {
	id, err := b.projects.id(ctx, name)
	if err != nil && !errors.Is(err, ErrUnknownProjectName) && !errors.Is(err, ErrUnavailable) {
		b.log.Error("list projects", "err", err)
		return "", fmt.Errorf("%w: cannot list projects in exceptionless", ErrUnavailable)
	}
	return id, err
}

func (b *Broker) listProjects(ctx context.Context) ([]exceptionless.Project, error) {
	for attempt := 0; ; attempt++ {
		user, err := b.userToken(ctx)
		if err != nil {
			return nil, err
		}
		ps, err := b.cfg.Upstream.Projects(ctx, user.rec.Token)
		if errors.Is(err, exceptionless.ErrUnauthorized) && attempt == 0 {
			b.dropUser(user.rec.Token)
			tok := user.rec.Token
			if _, err := b.acquireUserShared(ctx, &tok); err != nil {
				return nil, err
			}
			continue
		}
		return ps, err
	}
}
