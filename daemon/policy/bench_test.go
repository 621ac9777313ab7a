package policy_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/exless/exless/daemon/policy"
)

// benchIdentity is the peer every benchmark judges: a uid, groups, a
// system unit and a hashed executable, as a fully attested peer has.
var benchIdentity = policy.Identity{
	UID: 1000, GID: 1000, Groups: []uint32{100, 1001},
	Unit: "deploy.service", ExePath: "/usr/local/bin/deploy",
	ExeSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
}

func benchProject(i int) string { return fmt.Sprintf("%024x", 0x5e0000+i) }

// benchRules returns n rules of which only the one at index grant grants
// benchIdentity client tokens for benchProject(0). The rest mix users,
// groups, units and exe hashes; a quarter match the uid and fail only on the
// hash, so no rule is dismissed by its first matcher alone.
func benchRules(n, grant int) []policy.Rule {
	rules := make([]policy.Rule, 0, n)
	for i := range n {
		r := policy.Rule{
			Name:     "rule-" + strconv.Itoa(i),
			Scopes:   []string{policy.ScopeClient},
			Projects: []string{benchProject(i + 1)},
		}
		switch {
		case i == grant:
			r.Groups = []string{"1001"}
			r.Projects = []string{benchProject(0)}
		case i%4 == 0:
			r.Users = []string{strconv.Itoa(20000 + i)}
		case i%4 == 1:
			r.Groups = []string{strconv.Itoa(30000 + i)}
		case i%4 == 2:
			r.Units = []string{fmt.Sprintf("app-%d-*.service", i)}
		default:
			r.Users = []string{"1000"}
			r.ExeSHA256 = []string{fmt.Sprintf("%064x", i)}
		}
		rules = append(rules, r)
	}
	return rules
}

// BenchmarkDecide measures one decision with 1,000 rules (issue 6 target:
// ≤ 20 µs). "last" and "deny" evaluate every rule; "first" stops at once.
func BenchmarkDecide(b *testing.B) {
	const n = 1000
	for _, bc := range []struct {
		name    string
		grant   int
		project string
		allow   bool
	}{
		{"rules=1000/grant-last", n - 1, benchProject(0), true},
		{"rules=1000/deny", n - 1, benchProject(n + 10), false},
		{"rules=1000/grant-first", 0, benchProject(0), true},
		{"rules=10/grant-last", 9, benchProject(0), true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			size := n
			if bc.grant == 9 {
				size = 10
			}
			p, _, err := policy.Compile(benchRules(size, bc.grant), nil)
			if err != nil {
				b.Fatal(err)
			}
			req := policy.Request{Action: policy.ActionToken, Scope: policy.ScopeClient, Project: bc.project}
			if d := p.Decide(benchIdentity, req); d.Allow != bc.allow {
				b.Fatalf("Decide allowed=%v, want %v", d.Allow, bc.allow)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Decide(benchIdentity, req)
			}
		})
	}
}

// BenchmarkCompile measures building a 1,000-rule policy, which a reload pays.
func BenchmarkCompile(b *testing.B) {
	rules := benchRules(1000, 999)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := policy.Compile(rules, nil); err != nil {
			b.Fatal(err)
		}
	}
}
