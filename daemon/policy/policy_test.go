package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

type fakeResolver map[string]uint32

func (f fakeResolver) lookup(name string) (uint32, error) {
	if id, ok := f[name]; ok {
		return id, nil
	}
	return 0, fmt.Errorf("unknown %q", name)
}
func (f fakeResolver) LookupUser(n string) (uint32, error)  { return f.lookup("u:" + n) }
func (f fakeResolver) LookupGroup(n string) (uint32, error) { return f.lookup("g:" + n) }

var res = fakeResolver{"u:root": 0, "u:alice": 1000, "u:mallory": 1666, "g:deploy": 500, "g:ops": 600, "g:banned": 666}

const (
	projA = "537650f3b77efe23a47914f4"
	projB = "537650f3b77efe23a47914f5"
	shaA  = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func testPolicy(t *testing.T) *Policy {
	t.Helper()
	p, warnings, err := Compile([]Rule{
		{Name: "deployers", Groups: []string{"deploy"}, NotUsers: []string{"mallory"}, NotGroups: []string{"banned"},
			Scopes: []string{"client"}, Projects: []string{projA, "Acme/web"}},
		{Name: "ops", Users: []string{"root", "1001"}, Scopes: []string{"user", "client"}, Projects: []string{"*"},
			Actions: []string{"token", "rotate", "status"}},
		{Name: "alice-ops", Users: []string{"alice"}, Groups: []string{"ops"}, Scopes: []string{"user"}},
		{Name: "ghost", Users: []string{"nobody-here"}, Scopes: []string{"user"}},
		{Name: "deploy-unit", Units: []string{"deploy*.service"}, NotUnits: []string{"deploy-test.service"},
			Scopes: []string{"client"}, Projects: []string{projB}},
		{Name: "alice-user-unit", Units: []string{"user@1000.service/app.slice/*.service"}, Scopes: []string{"client"}, Projects: []string{projB}},
		{Name: "pinned-binary", Users: []string{"2000"}, ExePaths: []string{"/usr/local/bin/*"}, ExeSHA256: []string{strings.ToUpper(shaA)},
			Scopes: []string{"user"}},
		{Name: "monitor", Groups: []string{"ops"}, Actions: []string{"status", "metrics"}},
	}, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "nobody-here") {
		t.Errorf("warnings = %q, want one about nobody-here", warnings)
	}
	return p
}

func TestDecide(t *testing.T) {
	p := testPolicy(t)
	user := Request{Scope: ScopeUser}
	clientA := Request{Scope: ScopeClient, Project: projA}
	clientB := Request{Scope: ScopeClient, Project: projB}
	byName := Request{Scope: ScopeClient, Project: "0000000000000000000000aa", ProjectName: "Acme/web"}
	deployer := Identity{UID: 2001, GID: 500}
	tests := []struct {
		name string
		id   Identity
		req  Request
		want string // granting rule, "" for deny
	}{
		{"root user token", Identity{UID: 0}, user, "ops"},
		{"root any project", Identity{UID: 0}, clientB, "ops"},
		{"root rotate", Identity{UID: 0}, Request{Action: ActionRotate, Scope: ScopeClient, Project: projA}, "ops"},
		{"root may not reload", Identity{UID: 0}, Request{Action: ActionReload}, ""},
		{"numeric uid", Identity{UID: 1001, GID: 1001}, user, "ops"},
		{"deploy primary group", deployer, clientA, "deployers"},
		{"deploy supplementary group", Identity{UID: 2001, GID: 2001, Groups: []uint32{7, 500}}, clientA, "deployers"},
		{"deploy project by name", deployer, byName, "deployers"},
		{"deploy other project", deployer, clientB, ""},
		{"deploy no user scope", deployer, user, ""},
		{"client tier cannot rotate", deployer, Request{Action: ActionRotate, Scope: ScopeClient, Project: projA}, ""},
		{"client tier cannot read status", deployer, Request{Action: ActionStatus}, ""},
		{"not_users excludes", Identity{UID: 1666, GID: 500}, clientA, ""},
		{"not_groups excludes supplementary", Identity{UID: 2001, GID: 500, Groups: []uint32{666}}, clientA, ""},
		{"alice needs ops group too", Identity{UID: 1000, GID: 1000}, user, ""},
		{"alice in ops", Identity{UID: 1000, GID: 1000, Groups: []uint32{600}}, user, "alice-ops"},
		{"ops group alone is not alice", Identity{UID: 1002, GID: 600}, user, ""},
		{"ops group gets status", Identity{UID: 1002, GID: 600}, Request{Action: ActionStatus}, "monitor"},
		{"ops group gets metrics", Identity{UID: 1002, GID: 600}, Request{Action: ActionMetrics}, "monitor"},
		{"stranger", Identity{UID: 4242, GID: 4242}, user, ""},
		{"unknown scope", Identity{UID: 0}, Request{Scope: "admin"}, ""},
		{"system unit glob", Identity{UID: 4242, Unit: "deploy-prod.service"}, clientB, "deploy-unit"},
		{"system unit negated", Identity{UID: 4242, Unit: "deploy-test.service"}, clientB, ""},
		{"no unit", Identity{UID: 4242}, clientB, ""},
		{"user unit never matches a system pattern", Identity{UID: 1000, Unit: "user@1000.service/app.slice/deploy-prod.service", UserUnit: true}, clientB, "alice-user-unit"},
		{"another user's manager", Identity{UID: 1003, GID: 1003, Unit: "user@1001.service/app.slice/x.service", UserUnit: true}, clientB, ""},
		{"user unit named like a system unit", Identity{UID: 4242, Unit: "deploy-prod.service", UserUnit: true}, clientB, ""},
		{"pinned binary", Identity{UID: 2000, ExePath: "/usr/local/bin/tool", ExeSHA256: shaA}, user, "pinned-binary"},
		{"pinned binary other hash", Identity{UID: 2000, ExePath: "/usr/local/bin/tool", ExeSHA256: shaB}, user, ""},
		{"pinned binary other path", Identity{UID: 2000, ExePath: "/tmp/tool", ExeSHA256: shaA}, user, ""},
		{"pinned binary unreadable", Identity{UID: 2000, ExeErr: "permission denied"}, user, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.id, tc.req)
			if d.Allow != (tc.want != "") || d.Rule != tc.want {
				t.Errorf("Decide(%+v, %+v) = %+v, want rule %q", tc.id, tc.req, d, tc.want)
			}
			ex := p.Explain(tc.id, tc.req)
			if ex.Allow != d.Allow || ex.Rule != d.Rule {
				t.Errorf("Explain = %+v, disagrees with Decide %+v", ex, d)
			}
		})
	}
}

func TestExplainSaysWhy(t *testing.T) {
	p := testPolicy(t)
	ex := p.Explain(Identity{UID: 2001, GID: 500}, Request{Scope: ScopeUser})
	if ex.Allow || !strings.Contains(ex.Reason, "no rule grants") {
		t.Fatalf("Explain = %+v", ex)
	}
	want := map[string]string{
		"deployers":     "matches, but does not grant scope user",
		"ops":           "does not match: users: uid 2001 is not one of root, 1001",
		"deploy-unit":   "does not match: units: the peer runs in no systemd unit",
		"pinned-binary": "does not match: users: uid 2001",
	}
	for _, v := range ex.Rules {
		if w, ok := want[v.Rule]; ok && !strings.HasPrefix(v.Why, w) {
			t.Errorf("rule %s: why = %q, want prefix %q", v.Rule, v.Why, w)
		}
	}
	ex = p.Explain(Identity{UID: 1666, GID: 500}, Request{Scope: ScopeClient, Project: projA})
	if ex.Rules[0].Why != "does not match: not_users: uid 1666 is excluded" {
		t.Errorf("negation why = %q", ex.Rules[0].Why)
	}
	empty, _, _ := Compile(nil, res)
	if ex := empty.Explain(Identity{}, Request{Scope: ScopeUser}); ex.Allow || !strings.Contains(ex.Reason, "no rules") {
		t.Errorf("empty policy: %+v", ex)
	}
}

func TestGrantsAndWants(t *testing.T) {
	p := testPolicy(t)
	g := p.Grants(Identity{UID: 2001, GID: 500})
	if len(g) != 1 || g[0].Rule != "deployers" || g[0].Actions[0] != ActionToken {
		t.Errorf("Grants = %+v, want deployers with the implied token action", g)
	}
	if !p.WantsExe() || !p.WantsProjectNames() {
		t.Error("WantsExe/WantsProjectNames = false")
	}
	if n := p.ProjectNames(); len(n) != 1 || n[0] != "Acme/web" {
		t.Errorf("ProjectNames = %q", n)
	}
	plain, _, _ := Compile([]Rule{{Name: "r", Users: []string{"0"}, Scopes: []string{"user"}}}, res)
	if plain.WantsExe() || plain.WantsExePath() || plain.WantsProjectNames() {
		t.Error("a plain policy wants exe or names")
	}
	if !p.WantsExePath() {
		t.Error("a policy with exe_paths does not want the path")
	}
	hashOnly, _, _ := Compile([]Rule{{Name: "r", Users: []string{"0"}, ExeSHA256: []string{strings.Repeat("a", 64)}, Scopes: []string{"user"}}}, res)
	if !hashOnly.WantsExe() || hashOnly.WantsExePath() {
		t.Errorf("hash-only policy: WantsExe %v WantsExePath %v, want true false", hashOnly.WantsExe(), hashOnly.WantsExePath())
	}
}

func TestMatchUnit(t *testing.T) {
	sys := func(u string) Identity { return Identity{Unit: u} }
	usr := func(u string) Identity { return Identity{Unit: u, UserUnit: true} }
	tests := []struct {
		pattern string
		id      Identity
		want    bool
	}{
		{"deploy.service", sys("deploy.service"), true},
		{"*.service", sys("deploy.service"), true},
		{"*.service", sys("session-3.scope"), false},
		{"*", usr("user@1000.service/x.service"), false},
		{"deploy.service", usr("user@1000.service/app.slice/deploy.service"), false},
		{"user@1000.service/app.slice/deploy.service", usr("user@1000.service/app.slice/deploy.service"), true},
		{"user@1000.service/*/*.service", usr("user@1000.service/app.slice/deploy.service"), true},
		{"user@*.service/app.slice/deploy.service", usr("user@1000.service/app.slice/deploy.service"), false},
		{"user@1001.service/app.slice/deploy.service", usr("user@1000.service/app.slice/deploy.service"), false},
		{"user@1000.service/app.slice/deploy.service", sys("user@1000.service/app.slice/deploy.service"), false},
		{"x.service", sys(""), false},
	}
	for _, tc := range tests {
		if got := MatchUnit(tc.pattern, tc.id); got != tc.want {
			t.Errorf("MatchUnit(%q, %+v) = %v, want %v", tc.pattern, tc.id, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Rule{Name: "r", Users: []string{"root"}, Scopes: []string{"client"}, Projects: []string{"*"}}
	tests := []struct {
		name  string
		edit  func(*Rule)
		field string
	}{
		{"ok", func(*Rule) {}, ""},
		{"project by name", func(r *Rule) { r.Projects = []string{"Acme/web"} }, ""},
		{"status only", func(r *Rule) { r.Scopes, r.Projects, r.Actions = nil, nil, []string{"status"} }, ""},
		{"unit only", func(r *Rule) { r.Users, r.Units = nil, []string{"deploy.service"} }, ""},
		{"no matchers", func(r *Rule) { r.Users = nil }, "users"},
		{"negation only", func(r *Rule) { r.Users, r.NotUsers = nil, []string{"mallory"} }, "users"},
		{"empty user", func(r *Rule) { r.Users = []string{" "} }, "users"},
		{"bad unit glob", func(r *Rule) { r.Units = []string{"[x"} }, "units"},
		{"relative exe", func(r *Rule) { r.ExePaths = []string{"bin/x"} }, "exe_paths"},
		{"bad sha", func(r *Rule) { r.ExeSHA256 = []string{"abc"} }, "exe_sha256"},
		{"no scopes nor actions", func(r *Rule) { r.Scopes, r.Projects = nil, nil }, "scopes"},
		{"bad scope", func(r *Rule) { r.Scopes = []string{"admin"} }, "scopes"},
		{"bad action", func(r *Rule) { r.Actions = []string{"sudo"} }, "actions"},
		{"rotate without scopes", func(r *Rule) { r.Scopes, r.Projects, r.Actions = nil, nil, []string{"rotate"} }, "scopes"},
		{"scopes without token or rotate", func(r *Rule) { r.Actions = []string{"status"} }, "scopes"},
		{"client without projects", func(r *Rule) { r.Projects = nil }, "projects"},
		{"projects without client", func(r *Rule) { r.Scopes = []string{"user"} }, "projects"},
		{"bad project", func(r *Rule) { r.Projects = []string{"web"} }, "projects"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.edit(&r)
			err := r.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Validate = %v, want a FieldError on %q", err, tc.field)
			}
		})
	}
}

func TestCompileRejects(t *testing.T) {
	r := Rule{Name: "r", Users: []string{"0"}, Scopes: []string{"user"}}
	if _, _, err := Compile([]Rule{r, r}, res); err == nil {
		t.Error("Compile accepted two rules with one name")
	}
	neg := r
	neg.NotGroups = []string{"no-such-group"}
	if _, _, err := Compile([]Rule{neg}, res); err == nil || !strings.Contains(err.Error(), "not_groups") {
		t.Errorf("Compile with an unknown negated group = %v, want an error (a negation must not fail open)", err)
	}
}

// The fast path (matches, grants) and the explained one (why, refusal) must
// never disagree.
func TestDecideAgreesWithExplainEverywhere(t *testing.T) {
	p := testPolicy(t)
	ids := []Identity{
		{UID: 0}, {UID: 1000, Groups: []uint32{600}}, {UID: 1666, GID: 500}, {UID: 2001, GID: 500, Groups: []uint32{666}},
		{UID: 4242, Unit: "deploy-prod.service"}, {UID: 4242, Unit: "deploy-test.service"},
		{UID: 1000, Unit: "user@1000.service/app.slice/x.service", UserUnit: true},
		{UID: 2000, ExePath: "/usr/local/bin/tool", ExeSHA256: shaA}, {UID: 2000, ExePath: "/usr/local/bin/tool", ExeSHA256: strings.ToUpper(shaA)},
		{UID: 2000, ExeErr: "x"},
	}
	reqs := []Request{
		{Scope: ScopeUser}, {Scope: ScopeClient, Project: projA}, {Scope: ScopeClient, Project: projB},
		{Scope: ScopeClient, Project: "x", ProjectName: "Acme/web"}, {Action: ActionRotate, Scope: ScopeClient, Project: projA},
		{Action: ActionStatus}, {Action: ActionMetrics}, {Action: ActionReload},
	}
	for _, id := range ids {
		for _, req := range reqs {
			d, ex := p.Decide(id, req), p.Explain(id, req)
			if d.Allow != ex.Allow || d.Rule != ex.Rule {
				t.Errorf("%+v %+v: Decide %+v, Explain %+v", id, req, d, ex)
			}
		}
	}
}
