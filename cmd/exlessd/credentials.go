package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/credsock"
	"github.com/exless/exless/daemon/policy"
)

// Credential IDs that the LoadCredential= provider answers.
const (
	credUser         = "exceptionless-user"
	credClientPrefix = "exceptionless-client."
)

// credentials decides LoadCredential= requests (daemon/credsock) and
// fetches the tokens from the broker.
//
// Only rules that name units and say nothing about users, groups or
// executables take part: the requester is always systemd's root helper, so
// a rule for users = ["root"] must not hand every unit a token, and a rule
// that also names a user cannot be checked for a unit that has not started.
type credentials struct {
	log    *slog.Logger
	broker *daemon.Broker
	policy atomic.Pointer[policy.Policy]
}

// unitRules returns the rules that may grant credentials.
func unitRules(rules []policy.Rule) []policy.Rule {
	var out []policy.Rule
	for _, r := range rules {
		if len(r.Units) == 0 || len(r.Users) > 0 || len(r.Groups) > 0 || len(r.NotUsers) > 0 ||
			len(r.NotGroups) > 0 || len(r.ExePaths) > 0 || len(r.ExeSHA256) > 0 {
			continue
		}
		out = append(out, r)
	}
	return out
}

// setRules compiles the unit rules among rules for later requests.
func (c *credentials) setRules(rules []policy.Rule) error {
	p, _, err := policy.Compile(unitRules(rules), nil)
	if err != nil {
		return err
	}
	c.policy.Store(p)
	return nil
}

// parseCredentialID maps a credential ID to a token request.
func parseCredentialID(id string) (policy.Request, error) {
	if id == credUser {
		return policy.Request{Action: policy.ActionToken, Scope: policy.ScopeUser}, nil
	}
	if p, ok := strings.CutPrefix(id, credClientPrefix); ok && policy.ValidProjectID(p) {
		return policy.Request{Action: policy.ActionToken, Scope: policy.ScopeClient, Project: p}, nil
	}
	return policy.Request{}, fmt.Errorf("unknown credential %q: ask for %s or %s<project id>", id, credUser, credClientPrefix)
}

// credential is the credsock.Server's Credential func. Every decision is
// audited like a socket request, with a token fingerprint, never the token.
func (c *credentials) credential(ctx context.Context, req credsock.Request) ([]byte, error) {
	preq, err := parseCredentialID(req.ID)
	if err != nil {
		return nil, err
	}
	attrs := []any{"action", "credential", "unit", req.Unit, "credential", req.ID, "pid", req.PID, "scope", preq.Scope}
	if preq.Project != "" {
		attrs = append(attrs, "project", preq.Project)
	}
	d := c.policy.Load().Decide(policy.Identity{Unit: req.Unit}, preq)
	if !d.Allow {
		c.log.Warn("audit", append([]any{"decision", "deny"}, attrs...)...)
		return nil, fmt.Errorf("no rule naming unit %s grants %s", req.Unit, req.ID)
	}
	attrs = append([]any{"decision", "allow"}, append(attrs, "rule", d.Rule)...)
	var served daemon.Served
	if preq.Scope == policy.ScopeUser {
		served, err = c.broker.UserToken(ctx)
	} else {
		served, err = c.broker.ClientToken(ctx, preq.Project)
	}
	if err != nil {
		c.log.Warn("audit", append(attrs, "outcome", "unavailable", "err", err)...)
		if errors.Is(err, daemon.ErrProjectNotFound) {
			return nil, fmt.Errorf("no project %s", preq.Project)
		}
		return nil, errors.New("token unavailable")
	}
	c.log.Info("audit", append(attrs, "token_fp", daemon.Fingerprint(served.Token))...)
	return []byte(served.Token.Reveal()), nil
}
