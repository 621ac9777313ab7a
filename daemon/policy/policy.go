// Package policy decides which local peers may do what. It owns the rule
// model, its evaluation and the explanation of every decision, nothing else:
// it neither reads peer credentials nor knows about sockets, so a decision is
// a pure function of (identity, request) that can be table-tested.
//
// The policy is default-deny, and root gets nothing without a rule. A rule
// matches a peer when every matcher it sets matches (users, groups, units,
// exe_paths, exe_sha256) and no negation does (not_users, not_groups,
// not_units); within one list any entry may match. A request is granted when
// some matching rule grants it; the first such rule, in file order, is named
// as the reason.
package policy

import (
	"errors"
	"fmt"
	"os/user"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Scopes a rule can grant tokens for.
const (
	ScopeUser   = "user"
	ScopeClient = "client"
)

// Actions a rule can grant.
const (
	ActionToken   = "token"   // fetch tokens of the rule's scopes and projects
	ActionRotate  = "rotate"  // rotate tokens of the rule's scopes and projects
	ActionReload  = "reload"  // reload the daemon's configuration
	ActionStatus  = "status"  // read status and explain the policy
	ActionMetrics = "metrics" // read metrics
)

var allActions = []string{ActionToken, ActionRotate, ActionReload, ActionStatus, ActionMetrics}

// AnyProject in a rule's projects grants every project.
const AnyProject = "*"

// The shapes below are checked by hand, not with package-level regexps:
// compiling those cost every exlessctl run 0.7 ms at start-up.

// ValidProjectID reports whether s has the shape of an Exceptionless project
// id (the server's own route constraint): 24 to 36 ASCII letters and digits.
func ValidProjectID(s string) bool {
	return len(s) >= 24 && len(s) <= 36 && allBytes(s, func(c byte) bool {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
	})
}

// isSHA256Hex reports whether s is 64 lower-case hex digits.
func isSHA256Hex(s string) bool {
	return len(s) == 64 && allBytes(s, func(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' })
}

func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// userUnitPrefix returns the "user@UID.service/" that pattern starts with,
// or "".
func userUnitPrefix(pattern string) string {
	rest, ok := strings.CutPrefix(pattern, "user@")
	if !ok {
		return ""
	}
	digits := 0
	for digits < len(rest) && '0' <= rest[digits] && rest[digits] <= '9' {
		digits++
	}
	if digits == 0 || !strings.HasPrefix(rest[digits:], ".service/") {
		return ""
	}
	return pattern[:len("user@")+digits+len(".service/")]
}

// IsProjectName reports whether s is an "organization/project-name"
// reference rather than an id.
func IsProjectName(s string) bool {
	org, name, ok := strings.Cut(s, "/")
	return ok && strings.TrimSpace(org) != "" && strings.TrimSpace(name) != "" && !strings.Contains(name, "/")
}

// Rule is one rule as written in the config file.
type Rule struct {
	Name      string
	Users     []string // user names or numeric uids
	Groups    []string // group names or numeric gids, primary or supplementary
	Units     []string // systemd unit globs
	ExePaths  []string // executable path globs
	ExeSHA256 []string // executable sha256, hex
	NotUsers  []string
	NotGroups []string
	NotUnits  []string
	Scopes    []string // ScopeUser, ScopeClient
	Projects  []string // project ids, "organization/project-name", or AnyProject
	Actions   []string // defaults to [ActionToken] when Scopes is set
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

// actions returns the rule's actions with the default applied.
func (r Rule) actions() []string {
	if len(r.Actions) == 0 && len(r.Scopes) > 0 {
		return []string{ActionToken}
	}
	return r.Actions
}

// Validate checks a rule's shape without touching the system's user database.
func (r Rule) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Rule: r.Name, Field: field, Err: fmt.Errorf(format, args...)}
	}
	if r.Name == "" {
		return bad("name", "a rule needs a name")
	}
	if len(r.Users)+len(r.Groups)+len(r.Units)+len(r.ExePaths)+len(r.ExeSHA256) == 0 {
		// Without a positive matcher a rule would match every peer that
		// can reach the socket (negations alone included): refuse it.
		return bad("users", "set users, groups, units, exe_paths or exe_sha256; a rule must say whom it is for")
	}
	lists := []struct {
		field string
		vals  []string
	}{
		{"users", r.Users}, {"groups", r.Groups}, {"units", r.Units}, {"exe_paths", r.ExePaths},
		{"exe_sha256", r.ExeSHA256}, {"not_users", r.NotUsers}, {"not_groups", r.NotGroups}, {"not_units", r.NotUnits},
	}
	for _, l := range lists {
		for _, v := range l.vals {
			if strings.TrimSpace(v) == "" {
				return bad(l.field, "empty entry")
			}
		}
	}
	for _, field := range []struct {
		name string
		vals []string
	}{{"units", r.Units}, {"not_units", r.NotUnits}, {"exe_paths", r.ExePaths}} {
		for _, g := range field.vals {
			if _, err := path.Match(g, ""); err != nil {
				return bad(field.name, "%q is not a valid glob: %v", g, err)
			}
		}
	}
	for _, p := range r.ExePaths {
		if !strings.HasPrefix(p, "/") {
			return bad("exe_paths", "%q must be an absolute path (globs allowed)", p)
		}
	}
	for _, h := range r.ExeSHA256 {
		if !isSHA256Hex(strings.ToLower(h)) {
			return bad("exe_sha256", "%q is not a sha256 in hex (64 characters); compute one with sha256sum", h)
		}
	}
	for _, s := range r.Scopes {
		if s != ScopeUser && s != ScopeClient {
			return bad("scopes", `unknown scope %q; use "user" or "client"`, s)
		}
	}
	for _, a := range r.Actions {
		if !slices.Contains(allActions, a) {
			return bad("actions", "unknown action %q; use %s", a, strings.Join(allActions, ", "))
		}
	}
	acts := r.actions()
	if len(acts) == 0 {
		return bad("scopes", `grant scopes ("user", "client") or actions (%s)`, strings.Join(allActions, ", "))
	}
	needsScopes := slices.Contains(acts, ActionToken) || slices.Contains(acts, ActionRotate)
	if needsScopes && len(r.Scopes) == 0 {
		return bad("scopes", `actions "token" and "rotate" need scopes ("user" or "client")`)
	}
	if !needsScopes && len(r.Scopes) > 0 {
		return bad("scopes", `scopes are only used with actions "token" or "rotate"; add one of them to actions`)
	}
	client := slices.Contains(r.Scopes, ScopeClient)
	if client && len(r.Projects) == 0 {
		return bad("projects", `scope "client" needs projects (ids, "organization/name", or "*" for all)`)
	}
	if !client && len(r.Projects) > 0 {
		return bad("projects", `projects are only used with scope "client"; add it to scopes or remove projects`)
	}
	for _, p := range r.Projects {
		if p != AnyProject && !ValidProjectID(p) && !IsProjectName(p) {
			return bad("projects", "%q is not a project id (24 to 36 letters and digits), \"organization/project-name\" or \"*\"", p)
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
	// Unit is the peer's systemd unit: a system unit's name such as
	// "deploy.service", or for a unit under a user manager the path from
	// the manager, such as "user@1000.service/app.slice/x.service".
	Unit     string
	UserUnit bool
	// ExePath and ExeSHA256 are set when the executable was read; ExeErr
	// says why not otherwise (exe rules then never match).
	ExePath   string
	ExeSHA256 string
	ExeErr    string
}

func (id Identity) hasGroup(gid uint32) bool {
	return id.GID == gid || slices.Contains(id.Groups, gid)
}

// Request is what a peer asks for.
type Request struct {
	Action string // ActionToken when empty
	Scope  string // for ActionToken and ActionRotate
	// Project is the project id for ScopeClient; ProjectName is its
	// "organization/name", when known, for rules that name projects so.
	Project     string
	ProjectName string
}

func (r Request) action() string {
	if r.Action == "" {
		return ActionToken
	}
	return r.Action
}

// Decision is the outcome of Decide.
type Decision struct {
	Allow bool
	Rule  string // the granting rule, when allowed
}

// Grant is what one matching rule gives a peer, for explaining decisions.
type Grant struct {
	Rule     string   `json:"rule"`
	Actions  []string `json:"actions"`
	Scopes   []string `json:"scopes,omitempty"`
	Projects []string `json:"projects,omitempty"`
}

// RuleVerdict explains how one rule judged a request.
type RuleVerdict struct {
	Rule    string `json:"rule"`
	Matched bool   `json:"matched"`
	Granted bool   `json:"granted"`
	// Why says which matcher failed, or which grant is missing.
	Why string `json:"why"`
}

// Explanation is Decide with reasons.
type Explanation struct {
	Allow  bool          `json:"allow"`
	Rule   string        `json:"rule,omitempty"`
	Rules  []RuleVerdict `json:"rules"`
	Reason string        `json:"reason"`
}

type compiledRule struct {
	Rule
	actions   []string
	uids      []uint32
	gids      []uint32
	notUIDs   []uint32
	notGIDs   []uint32
	sha       []string
	anyProj   bool
	projects  []string // ids and "org/name" entries
	userScope bool
	client    bool
}

// Policy is a compiled, immutable rule set. It is safe for concurrent use.
type Policy struct {
	rules        []compiledRule
	wantsExe     bool
	wantsExePath bool
	wantsName    bool
}

// Compile validates rules and resolves their names. A name that does not
// resolve matches nobody (fail closed) and is reported in warnings, so that a
// config naming a group that does not exist yet still starts. In a negation
// an unresolvable name is an error: failing open there would grant access.
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
			return nil, nil, &FieldError{Rule: r.Name, Field: "name", Err: errors.New("duplicate rule name")}
		}
		seen[r.Name] = true
		cr := compiledRule{Rule: r, actions: r.actions()}
		resolveAll := func(field string, names []string, lookup func(string) (uint32, error), strict bool) ([]uint32, error) {
			var ids []uint32
			for _, n := range names {
				id, err := resolve(n, lookup)
				if err != nil {
					if strict {
						return nil, &FieldError{Rule: r.Name, Field: field, Err: fmt.Errorf("%q is not known here; a negation must resolve", n)}
					}
					warnings = append(warnings, fmt.Sprintf("rule %q: %s: %q is not known here; the entry matches nobody", r.Name, field, n))
					continue
				}
				ids = append(ids, id)
			}
			return ids, nil
		}
		var err error
		if cr.uids, err = resolveAll("users", r.Users, res.LookupUser, false); err != nil {
			return nil, nil, err
		}
		if cr.gids, err = resolveAll("groups", r.Groups, res.LookupGroup, false); err != nil {
			return nil, nil, err
		}
		if cr.notUIDs, err = resolveAll("not_users", r.NotUsers, res.LookupUser, true); err != nil {
			return nil, nil, err
		}
		if cr.notGIDs, err = resolveAll("not_groups", r.NotGroups, res.LookupGroup, true); err != nil {
			return nil, nil, err
		}
		for _, h := range r.ExeSHA256 {
			cr.sha = append(cr.sha, strings.ToLower(h))
		}
		cr.userScope = slices.Contains(r.Scopes, ScopeUser)
		cr.client = slices.Contains(r.Scopes, ScopeClient)
		for _, pr := range r.Projects {
			if pr == AnyProject {
				cr.anyProj = true
				continue
			}
			cr.projects = append(cr.projects, pr)
			if IsProjectName(pr) {
				p.wantsName = true
			}
		}
		if len(r.ExePaths)+len(r.ExeSHA256) > 0 {
			p.wantsExe = true
		}
		if len(r.ExePaths) > 0 {
			p.wantsExePath = true
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

// WantsExe reports whether any rule needs the peer's executable, which costs
// reading /proc/<pid>/exe (and a hash on first sight of a binary).
func (p *Policy) WantsExe() bool { return p.wantsExe }

// WantsExePath reports whether any rule matches executables by path, which
// costs reading the path before and after the hash; rules that name only
// hashes do without it.
func (p *Policy) WantsExePath() bool { return p.wantsExePath }

// WantsProjectNames reports whether any rule names projects as
// "organization/name", so requests need the project's name to be decided.
func (p *Policy) WantsProjectNames() bool { return p.wantsName }

// MatchUnit reports whether a unit glob matches a peer's unit. A unit under a
// user manager matches only patterns that begin with "user@UID.service/"
// literally: anyone can name a unit deploy.service in their own manager, so
// a plain pattern must never reach into user managers.
func MatchUnit(pattern string, id Identity) bool {
	if id.Unit == "" {
		return false
	}
	if id.UserUnit {
		prefix := userUnitPrefix(pattern)
		if prefix == "" || !strings.HasPrefix(id.Unit, prefix) {
			return false
		}
	} else if strings.HasPrefix(pattern, "user@") {
		return false
	}
	ok, _ := path.Match(pattern, id.Unit)
	return ok
}

// matches reports whether the rule matches id. It is why without the
// reasons: Decide runs on every request and must not format strings for
// each rule that does not match.
func (r *compiledRule) matches(id Identity) bool {
	if len(r.Users) > 0 && !slices.Contains(r.uids, id.UID) {
		return false
	}
	if len(r.Groups) > 0 && !slices.ContainsFunc(r.gids, id.hasGroup) {
		return false
	}
	if len(r.Units) > 0 && (id.Unit == "" || !slices.ContainsFunc(r.Units, func(g string) bool { return MatchUnit(g, id) })) {
		return false
	}
	if len(r.ExePaths)+len(r.ExeSHA256) > 0 && id.ExeErr != "" {
		return false
	}
	if len(r.ExePaths) > 0 && (id.ExePath == "" || !slices.ContainsFunc(r.ExePaths, func(g string) bool { ok, _ := path.Match(g, id.ExePath); return ok })) {
		return false
	}
	if len(r.sha) > 0 && (id.ExeSHA256 == "" || !slices.Contains(r.sha, id.ExeSHA256) && !slices.Contains(r.sha, strings.ToLower(id.ExeSHA256))) {
		return false
	}
	if slices.Contains(r.notUIDs, id.UID) || slices.ContainsFunc(r.notGIDs, id.hasGroup) {
		return false
	}
	if id.Unit != "" && slices.ContainsFunc(r.NotUnits, func(g string) bool { return MatchUnit(g, id) }) {
		return false
	}
	return true
}

// why returns "" when the rule matches id, else the first reason it does not.
func (r *compiledRule) why(id Identity) string {
	if len(r.Users) > 0 && !slices.Contains(r.uids, id.UID) {
		return fmt.Sprintf("users: uid %d is not one of %s", id.UID, strings.Join(r.Users, ", "))
	}
	if len(r.Groups) > 0 && !slices.ContainsFunc(r.gids, id.hasGroup) {
		return fmt.Sprintf("groups: the peer is in none of %s", strings.Join(r.Groups, ", "))
	}
	if len(r.Units) > 0 {
		if id.Unit == "" {
			return "units: the peer runs in no systemd unit"
		}
		if !slices.ContainsFunc(r.Units, func(g string) bool { return MatchUnit(g, id) }) {
			return fmt.Sprintf("units: %s matches none of %s", id.Unit, strings.Join(r.Units, ", "))
		}
	}
	if len(r.ExePaths)+len(r.ExeSHA256) > 0 && id.ExeErr != "" {
		return "executable unknown: " + id.ExeErr
	}
	if len(r.ExePaths) > 0 {
		if id.ExePath == "" {
			return "exe_paths: the executable was not read"
		}
		if !slices.ContainsFunc(r.ExePaths, func(g string) bool { ok, _ := path.Match(g, id.ExePath); return ok }) {
			return fmt.Sprintf("exe_paths: %s matches none of %s", id.ExePath, strings.Join(r.ExePaths, ", "))
		}
	}
	if len(r.sha) > 0 {
		if id.ExeSHA256 == "" {
			return "exe_sha256: the executable was not hashed"
		}
		if !slices.Contains(r.sha, strings.ToLower(id.ExeSHA256)) {
			return "exe_sha256: the executable's hash is not listed"
		}
	}
	if slices.Contains(r.notUIDs, id.UID) {
		return fmt.Sprintf("not_users: uid %d is excluded", id.UID)
	}
	if i := slices.IndexFunc(r.notGIDs, id.hasGroup); i >= 0 {
		return fmt.Sprintf("not_groups: group %s is excluded", r.NotGroups[i])
	}
	if id.Unit != "" {
		for _, g := range r.NotUnits {
			if MatchUnit(g, id) {
				return fmt.Sprintf("not_units: %s is excluded by %s", id.Unit, g)
			}
		}
	}
	return ""
}

func (r *compiledRule) hasProject(req Request) bool {
	if r.anyProj {
		return true
	}
	for _, p := range r.projects {
		if p == req.Project || (req.ProjectName != "" && p == req.ProjectName) {
			return true
		}
	}
	return false
}

// refusal returns "" when the rule grants req, else what is missing.
func (r *compiledRule) refusal(req Request) string {
	act := req.action()
	if !slices.Contains(r.actions, act) {
		return fmt.Sprintf("does not grant action %s", act)
	}
	if act != ActionToken && act != ActionRotate {
		return ""
	}
	switch req.Scope {
	case ScopeUser:
		if !r.userScope {
			return "does not grant scope user"
		}
	case ScopeClient:
		if !r.client {
			return "does not grant scope client"
		}
		if !r.hasProject(req) {
			name := req.Project
			if req.ProjectName != "" {
				name += " (" + req.ProjectName + ")"
			}
			return "does not grant project " + name
		}
	default:
		return fmt.Sprintf("unknown scope %q", req.Scope)
	}
	return ""
}

// grants reports whether the rule grants req: refusal without the reason.
func (r *compiledRule) grants(req Request) bool {
	act := req.action()
	if !slices.Contains(r.actions, act) {
		return false
	}
	if act != ActionToken && act != ActionRotate {
		return true
	}
	switch req.Scope {
	case ScopeUser:
		return r.userScope
	case ScopeClient:
		return r.client && r.hasProject(req)
	}
	return false
}

// Decide reports whether id may have what req asks for, and which rule
// grants it. Rules are tried in order; the first grant wins.
func (p *Policy) Decide(id Identity, req Request) Decision {
	for i := range p.rules {
		r := &p.rules[i]
		if r.grants(req) && r.matches(id) {
			return Decision{Allow: true, Rule: r.Name}
		}
	}
	return Decision{}
}

// MayAct reports whether some rule matching id grants action on scope for at
// least one project. The server asks it before resolving a project name, so
// that a peer with no such grant cannot make the daemon call Exceptionless.
func (p *Policy) MayAct(id Identity, action, scope string) bool {
	for i := range p.rules {
		r := &p.rules[i]
		if !slices.Contains(r.actions, action) || !r.matches(id) {
			continue
		}
		if (scope == ScopeUser && r.userScope) || (scope == ScopeClient && r.client) {
			return true
		}
	}
	return false
}

// Explain is Decide with the verdict of every rule.
func (p *Policy) Explain(id Identity, req Request) Explanation {
	ex := Explanation{Rules: []RuleVerdict{}}
	for i := range p.rules {
		r := &p.rules[i]
		v := RuleVerdict{Rule: r.Name}
		if why := r.why(id); why != "" {
			v.Why = "does not match: " + why
		} else {
			v.Matched = true
			if ref := r.refusal(req); ref != "" {
				v.Why = "matches, but " + ref
			} else {
				v.Granted = true
				v.Why = "matches and grants it"
			}
		}
		if v.Granted && !ex.Allow {
			ex.Allow, ex.Rule = true, r.Name
		}
		ex.Rules = append(ex.Rules, v)
	}
	switch {
	case ex.Allow:
		ex.Reason = fmt.Sprintf("allowed by rule %q", ex.Rule)
	case len(p.rules) == 0:
		ex.Reason = "denied: the policy has no rules (default deny)"
	default:
		ex.Reason = "denied: no rule grants it (default deny)"
	}
	return ex
}

// Grants lists what each rule that matches id grants it.
func (p *Policy) Grants(id Identity) []Grant {
	var out []Grant
	for i := range p.rules {
		r := &p.rules[i]
		if r.matches(id) {
			out = append(out, Grant{Rule: r.Name, Actions: slices.Clone(r.actions), Scopes: slices.Clone(r.Scopes), Projects: slices.Clone(r.Projects)})
		}
	}
	return out
}

// ProjectNames lists the "organization/name" entries of all rules.
func (p *Policy) ProjectNames() []string {
	var out []string
	for i := range p.rules {
		for _, pr := range p.rules[i].projects {
			if IsProjectName(pr) && !slices.Contains(out, pr) {
				out = append(out, pr)
			}
		}
	}
	return out
}
