// Package policy decides which local peers may have which tokens. It owns
// the rule model and its evaluation, nothing else: it neither reads peer
// credentials nor knows about sockets, so every decision is a pure function
// of (identity, request) that can be table-tested.
//
// The policy is default-deny. A rule matches a peer when every matcher it
// sets matches (users, groups), and a matcher list matches when any entry
// does. A request is granted when some matching rule grants it.
package policy

import (
	"fmt"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Scopes a rule can grant.
const (
	ScopeUser   = "user"
	ScopeClient = "client"
)

// AnyProject in a rule's projects grants every project.
const AnyProject = "*"

var projectIDPattern = regexp.MustCompile(`^[a-zA-Z0-9]{24,36}$`)

// ValidProjectID reports whether s has the shape of an Exceptionless project
// id (the server's own route constraint).
func ValidProjectID(s string) bool { return projectIDPattern.MatchString(s) }

// Rule is one rule as written in the config file.
type Rule struct {
	Name     string
	Users    []string // user names or numeric uids
	Groups   []string // group names or numeric gids, primary or supplementary
	Scopes   []string // ScopeUser, ScopeClient
	Projects []string // project ids or AnyProject; needed for ScopeClient
}

// FieldError is a problem with one field of one rule.
type FieldError struct {
	Rule  string
	Field string
	Err   error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("rule %q: %s: %v", e.Rule, e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// Validate checks a rule's shape without touching the system's user database.
func (r Rule) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Rule: r.Name, Field: field, Err: fmt.Errorf(format, args...)}
	}
	if r.Name == "" {
		return bad("name", "a rule needs a name")
	}
	if len(r.Users) == 0 && len(r.Groups) == 0 {
		// A rule without matchers would match every peer that can reach the
		// socket; make that impossible to write by accident.
		return bad("users", "set users or groups; a rule must say whom it is for")
	}
	for _, u := range r.Users {
		if strings.TrimSpace(u) == "" {
			return bad("users", "empty entry")
		}
	}
	for _, g := range r.Groups {
		if strings.TrimSpace(g) == "" {
			return bad("groups", "empty entry")
		}
	}
	if len(r.Scopes) == 0 {
		return bad("scopes", `grant at least one scope ("user" or "client")`)
	}
	for _, s := range r.Scopes {
		if s != ScopeUser && s != ScopeClient {
			return bad("scopes", `unknown scope %q; use "user" or "client"`, s)
		}
	}
	client := slices.Contains(r.Scopes, ScopeClient)
	if client && len(r.Projects) == 0 {
		return bad("projects", `scope "client" needs projects (ids, or "*" for all)`)
	}
	if !client && len(r.Projects) > 0 {
		return bad("projects", `projects are only used with scope "client"; add it to scopes or remove projects`)
	}
	for _, p := range r.Projects {
		if p != AnyProject && !ValidProjectID(p) {
			return bad("projects", "%q is not a project id (24 to 36 letters and digits) or \"*\"", p)
		}
	}
	return nil
}

// Resolver turns user and group names into ids.
type Resolver interface {
	LookupUser(name string) (uint32, error)
	LookupGroup(name string) (uint32, error)
}

// SystemResolver resolves names with the system's user database.
type SystemResolver struct{}

// LookupUser implements Resolver.
func (SystemResolver) LookupUser(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(id), err
}

// LookupGroup implements Resolver.
func (SystemResolver) LookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(g.Gid, 10, 32)
	return uint32(id), err
}

// Identity is what the policy knows of a peer.
type Identity struct {
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary
}

func (id Identity) hasGroup(gid uint32) bool {
	return id.GID == gid || slices.Contains(id.Groups, gid)
}

// Request is what a peer asks for.
type Request struct {
	Scope   string
	Project string // for ScopeClient
}

// Decision is the outcome of Decide.
type Decision struct {
	Allow bool
	Rule  string // the granting rule, when allowed
}

// Grant is what one matching rule gives a peer, for explaining decisions.
type Grant struct {
	Rule     string   `json:"rule"`
	Scopes   []string `json:"scopes"`
	Projects []string `json:"projects,omitempty"`
}

type compiledRule struct {
	Rule
	uids      []uint32
	gids      []uint32
	anyProj   bool
	projects  []string
	userScope bool
	client    bool
}

// Policy is a compiled, immutable rule set. It is safe for concurrent use.
type Policy struct {
	rules []compiledRule
}

// Compile validates rules and resolves their names. A name that does not
// resolve matches nobody (fail closed) and is reported in warnings, so that a
// config naming a group that does not exist yet still starts.
func Compile(rules []Rule, res Resolver) (*Policy, []string, error) {
	if res == nil {
		res = SystemResolver{}
	}
	var warnings []string
	p := &Policy{}
	seen := map[string]bool{}
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			return nil, nil, err
		}
		if seen[r.Name] {
			return nil, nil, &FieldError{Rule: r.Name, Field: "name", Err: fmt.Errorf("duplicate rule name")}
		}
		seen[r.Name] = true
		cr := compiledRule{Rule: r}
		for _, u := range r.Users {
			id, err := resolve(u, res.LookupUser)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("rule %q: users: %q is not a known user; the entry matches nobody", r.Name, u))
				continue
			}
			cr.uids = append(cr.uids, id)
		}
		for _, g := range r.Groups {
			id, err := resolve(g, res.LookupGroup)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("rule %q: groups: %q is not a known group; the entry matches nobody", r.Name, g))
				continue
			}
			cr.gids = append(cr.gids, id)
		}
		cr.userScope = slices.Contains(r.Scopes, ScopeUser)
		cr.client = slices.Contains(r.Scopes, ScopeClient)
		for _, pr := range r.Projects {
			if pr == AnyProject {
				cr.anyProj = true
			} else {
				cr.projects = append(cr.projects, pr)
			}
		}
		p.rules = append(p.rules, cr)
	}
	return p, warnings, nil
}

// resolve takes a numeric id as it is, and looks a name up.
func resolve(s string, lookup func(string) (uint32, error)) (uint32, error) {
	if id, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(id), nil
	}
	return lookup(s)
}

// matches reports whether every matcher the rule sets matches id. A matcher
// whose entries all failed to resolve has no ids and so matches nobody.
func (r *compiledRule) matches(id Identity) bool {
	if len(r.Users) > 0 && !slices.Contains(r.uids, id.UID) {
		return false
	}
	if len(r.Groups) > 0 && !slices.ContainsFunc(r.gids, id.hasGroup) {
		return false
	}
	return true
}

func (r *compiledRule) grants(req Request) bool {
	switch req.Scope {
	case ScopeUser:
		return r.userScope
	case ScopeClient:
		return r.client && (r.anyProj || slices.Contains(r.projects, req.Project))
	}
	return false
}

// Decide reports whether id may have what req asks for, and which rule
// grants it. Rules are tried in order; the first grant wins.
func (p *Policy) Decide(id Identity, req Request) Decision {
	for i := range p.rules {
		r := &p.rules[i]
		if r.matches(id) && r.grants(req) {
			return Decision{Allow: true, Rule: r.Name}
		}
	}
	return Decision{}
}

// Grants lists what each rule that matches id grants it.
func (p *Policy) Grants(id Identity) []Grant {
	var out []Grant
	for i := range p.rules {
		r := &p.rules[i]
		if r.matches(id) {
			out = append(out, Grant{Rule: r.Name, Scopes: slices.Clone(r.Scopes), Projects: slices.Clone(r.Projects)})
		}
	}
	return out
}

// Matches reports whether any rule matches id.
func (p *Policy) Matches(id Identity) bool {
	for i := range p.rules {
		if p.rules[i].matches(id) {
			return true
		}
	}
	return false
}
