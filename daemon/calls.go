package daemon

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
)

// CallCount is how many calls of one operation to Vault or Exceptionless
// ended with one result.
type CallCount struct {
	Operation string
	Result    string
	Count     uint64
}

// Results of calls to Vault and Exceptionless. A not_found or conflict from
// Vault is an answer the broker expects, not a failure.
const (
	ResultOK           = "ok"
	ResultNotFound     = "not_found"
	ResultConflict     = "conflict"
	ResultUnauthorized = "unauthorized"
	ResultForbidden    = "forbidden"
	ResultThrottled    = "throttled"
	ResultLoginRefused = "login_refused"
	ResultError        = "error"
)

// callCounts counts calls by (operation, result). Both come from fixed sets
// in this file, so the map stays small.
type callCounts struct {
	mu sync.Mutex
	n  map[[2]string]uint64
}

func (c *callCounts) add(op, result string) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[[2]string]uint64{}
	}
	c.n[[2]string{op, result}]++
	c.mu.Unlock()
}

func (c *callCounts) snapshot() []CallCount {
	c.mu.Lock()
	out := make([]CallCount, 0, len(c.n))
	for k, v := range c.n {
		out = append(out, CallCount{Operation: k[0], Result: k[1], Count: v})
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Operation != out[j].Operation {
			return out[i].Operation < out[j].Operation
		}
		return out[i].Result < out[j].Result
	})
	return out
}

// failures sums the counts whose result is a failure.
func failures(cs []CallCount) uint64 {
	var n uint64
	for _, c := range cs {
		if c.Result != ResultOK && c.Result != ResultNotFound && c.Result != ResultConflict {
			n += c.Count
		}
	}
	return n
}

// countingStore counts the broker's Vault calls; vaultstore itself knows
// nothing of metrics.
type countingStore struct {
	TokenStore
	c *callCounts
}

func vaultResult(err error) string {
	switch {
	case err == nil:
		return ResultOK
	case errors.Is(err, ErrNotFound):
		return ResultNotFound
	case errors.Is(err, ErrConflict):
		return ResultConflict
	}
	return ResultError
}

func (s countingStore) Load(ctx context.Context, key string) (Record, int, error) {
	rec, v, err := s.TokenStore.Load(ctx, key)
	s.c.add("load", vaultResult(err))
	return rec, v, err
}

func (s countingStore) Save(ctx context.Context, key string, rec Record, version int) (int, error) {
	v, err := s.TokenStore.Save(ctx, key, rec, version)
	s.c.add("save", vaultResult(err))
	return v, err
}

func (s countingStore) Ping(ctx context.Context) error {
	err := s.TokenStore.Ping(ctx)
	s.c.add("ping", vaultResult(err))
	return err
}

func (s countingStore) LoadControl(ctx context.Context, key string) (Control, Meta, error) {
	c, m, err := s.TokenStore.LoadControl(ctx, key)
	s.c.add("load_control", vaultResult(err))
	return c, m, err
}

func (s countingStore) SaveControl(ctx context.Context, key string, c Control, version int) (int, error) {
	v, err := s.TokenStore.SaveControl(ctx, key, c, version)
	s.c.add("save_control", vaultResult(err))
	return v, err
}

func (s countingStore) Now(ctx context.Context) (time.Time, error) {
	t, err := s.TokenStore.Now(ctx)
	s.c.add("clock", vaultResult(err))
	return t, err
}

// countingUpstream counts the broker's Exceptionless calls.
type countingUpstream struct {
	Upstream
	c *callCounts
}

func upstreamResult(err error) string {
	switch {
	case err == nil:
		return ResultOK
	case errors.Is(err, exceptionless.ErrLoginDenied), errors.Is(err, exceptionless.ErrLoginFailed),
		errors.Is(err, exceptionless.ErrLoginRejected):
		return ResultLoginRefused
	case errors.Is(err, exceptionless.ErrUnauthorized):
		return ResultUnauthorized
	case errors.Is(err, exceptionless.ErrForbidden):
		return ResultForbidden
	case errors.Is(err, exceptionless.ErrNotFound):
		return ResultNotFound
	case errors.Is(err, exceptionless.ErrThrottled):
		return ResultThrottled
	}
	return ResultError
}

func (u countingUpstream) Login(ctx context.Context, email string, password []byte) (exceptionless.Token, error) {
	t, err := u.Upstream.Login(ctx, email, password)
	u.c.add("login", upstreamResult(err))
	return t, err
}

func (u countingUpstream) Me(ctx context.Context, tok exceptionless.Token) (exceptionless.User, error) {
	me, err := u.Upstream.Me(ctx, tok)
	u.c.add("me", upstreamResult(err))
	return me, err
}

func (u countingUpstream) CreateProjectToken(ctx context.Context, tok exceptionless.Token, projectID string, req exceptionless.NewToken) (exceptionless.ViewToken, error) {
	vt, err := u.Upstream.CreateProjectToken(ctx, tok, projectID, req)
	u.c.add("create_token", upstreamResult(err))
	return vt, err
}

func (u countingUpstream) ProjectTokens(ctx context.Context, tok exceptionless.Token, projectID string) ([]exceptionless.ViewToken, error) {
	ts, err := u.Upstream.ProjectTokens(ctx, tok, projectID)
	u.c.add("list_tokens", upstreamResult(err))
	return ts, err
}

func (u countingUpstream) DeleteTokens(ctx context.Context, tok exceptionless.Token, ids ...exceptionless.Token) error {
	err := u.Upstream.DeleteTokens(ctx, tok, ids...)
	u.c.add("delete_tokens", upstreamResult(err))
	return err
}

func (u countingUpstream) ChangePassword(ctx context.Context, tok exceptionless.Token, current, next []byte) (exceptionless.Token, error) {
	t, err := u.Upstream.ChangePassword(ctx, tok, current, next)
	u.c.add("change_password", upstreamResult(err))
	return t, err
}

func (u countingUpstream) Projects(ctx context.Context, tok exceptionless.Token) ([]exceptionless.Project, error) {
	ps, err := u.Upstream.Projects(ctx, tok)
	u.c.add("list_projects", upstreamResult(err))
	return ps, err
}

// VaultCalls reports the broker's calls to Vault by operation and result.
func (b *Broker) VaultCalls() []CallCount { return b.vaultCalls.snapshot() }

// UpstreamCalls reports the broker's calls to Exceptionless by operation and
// result.
func (b *Broker) UpstreamCalls() []CallCount { return b.upstreamCalls.snapshot() }
