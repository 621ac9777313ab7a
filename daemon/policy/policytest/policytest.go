// Package policytest makes large, realistic policies for measuring the
// policy's cost, shared by the Go benchmarks and the benchmark harness.
package policytest

import (
	"fmt"
	"strconv"

	"github.com/exless/exless/daemon/policy"
)

// Identity is the peer the generated policies judge: a uid, groups, a
// system unit and a hashed executable, as a fully attested peer has.
var Identity = policy.Identity{
	UID: 1000, GID: 1000, Groups: []uint32{100, 1001},
	Unit: "deploy.service", ExePath: "/usr/local/bin/deploy",
	ExeSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
}

// Project returns the i-th generated project id.
func Project(i int) string { return fmt.Sprintf("%024x", 0x5e0000+i) }

// Rules returns n rules of which only the one at index grant (if 0 ≤ grant
// < n) grants Identity client tokens for Project(0). The rest mix users,
// groups, units and exe hashes; a quarter match the uid and fail only on
// the hash, so no rule is dismissed by its first matcher alone.
func Rules(n, grant int) []policy.Rule {
	rules := make([]policy.Rule, 0, n)
	for i := range n {
		r := policy.Rule{
			Name:     "rule-" + strconv.Itoa(i),
			Scopes:   []string{policy.ScopeClient},
			Projects: []string{Project(i + 1)},
		}
		switch {
		case i == grant:
			r.Groups = []string{"1001"}
			r.Projects = []string{Project(0)}
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
