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

const (
	projA = "537650f3b77efe23a47914f4"
	projB = "537650f3b77efe23a47914f5"
)

func testPolicy(t *testing.T) *Policy {
	t.Helper()
	res := fakeResolver{"u:root": 0, "u:alice": 1000, "g:deploy": 500, "g:ops": 600}
	p, warnings, err := Compile([]Rule{
		{Name: "deployers", Groups: []string{"deploy"}, Scopes: []string{"client"}, Projects: []string{projA}},
		{Name: "ops", Users: []string{"root", "1001"}, Scopes: []string{"user", "client"}, Projects: []string{"*"}},
		{Name: "alice-ops", Users: []string{"alice"}, Groups: []string{"ops"}, Scopes: []string{"user"}},
		{Name: "ghost", Users: []string{"nobody-here"}, Scopes: []string{"user"}},
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
	tests := []struct {
		name string
		id   Identity
		req  Request
		want string // granting rule, "" for deny
	}{
		{"root user token", Identity{UID: 0}, user, "ops"},
		{"root any project", Identity{UID: 0}, clientB, "ops"},
		{"numeric uid", Identity{UID: 1001, GID: 1001}, user, "ops"},
		{"deploy primary group", Identity{UID: 2000, GID: 500}, clientA, "deployers"},
		{"deploy supplementary group", Identity{UID: 2000, GID: 2000, Groups: []uint32{7, 500}}, clientA, "deployers"},
		{"deploy other project", Identity{UID: 2000, GID: 500}, clientB, ""},
		{"deploy no user scope", Identity{UID: 2000, GID: 500}, user, ""},
		{"alice needs ops group too", Identity{UID: 1000, GID: 1000}, user, ""},
		{"alice in ops", Identity{UID: 1000, GID: 1000, Groups: []uint32{600}}, user, "alice-ops"},
		{"ops group alone is not alice", Identity{UID: 1002, GID: 600}, user, ""},
		{"stranger", Identity{UID: 4242, GID: 4242}, user, ""},
		{"unknown scope", Identity{UID: 0}, Request{Scope: "admin"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.id, tc.req)
			if d.Allow != (tc.want != "") || d.Rule != tc.want {
				t.Errorf("Decide(%+v, %+v) = %+v, want rule %q", tc.id, tc.req, d, tc.want)
			}
		})
	}
}

func TestGrantsAndMatches(t *testing.T) {
	p := testPolicy(t)
	g := p.Grants(Identity{UID: 2000, GID: 500})
	if len(g) != 1 || g[0].Rule != "deployers" {
		t.Errorf("Grants = %+v, want deployers only", g)
	}
	if p.Matches(Identity{UID: 4242, GID: 4242}) {
		t.Error("Matches(stranger) = true")
	}
	if !p.Matches(Identity{UID: 0}) {
		t.Error("Matches(root) = false")
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
		{"no matchers", func(r *Rule) { r.Users = nil }, "users"},
		{"empty user", func(r *Rule) { r.Users = []string{" "} }, "users"},
		{"no scopes", func(r *Rule) { r.Scopes = nil }, "scopes"},
		{"bad scope", func(r *Rule) { r.Scopes = []string{"admin"} }, "scopes"},
		{"client without projects", func(r *Rule) { r.Projects = nil }, "projects"},
		{"projects without client", func(r *Rule) { r.Scopes = []string{"user"} }, "projects"},
		{"bad project id", func(r *Rule) { r.Projects = []string{"web"} }, "projects"},
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

func TestCompileRejectsDuplicateNames(t *testing.T) {
	r := Rule{Name: "r", Users: []string{"0"}, Scopes: []string{"user"}}
	if _, _, err := Compile([]Rule{r, r}, fakeResolver{}); err == nil {
		t.Fatal("Compile accepted two rules with one name")
	}
}
