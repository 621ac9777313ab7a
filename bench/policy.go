package bench

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/exless/exless/daemon/policy"
)

// The policy's cost is measured in this process with testing.Benchmark:
// Decide is a pure function, and what the daemon pays per request is what
// it costs here. daemon/policy/bench_test.go has the same as `go test -bench`.

// policyIdentity is the peer every policy case judges.
var policyIdentity = policy.Identity{
	UID: 1000, GID: 1000, Groups: []uint32{100, 1001},
	Unit: "deploy.service", ExePath: "/usr/local/bin/deploy",
	ExeSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
}

func projectID(i int) string { return fmt.Sprintf("%024x", 0x5e0000+i) }

// policyRules returns n rules of which only the one at grant (if 0 ≤ grant
// < n) grants policyIdentity client tokens for projectID(0). The others
// mix every matcher, and a quarter of them match the peer's uid and fail
// only on the executable's hash, so Decide cannot stop at the first field.
func policyRules(n, grant int) []policy.Rule {
	rules := make([]policy.Rule, 0, n)
	for i := range n {
		r := policy.Rule{
			Name:     "rule-" + strconv.Itoa(i),
			Scopes:   []string{policy.ScopeClient},
			Projects: []string{projectID(i + 1)},
		}
		switch {
		case i == grant:
			r.Groups = []string{"1001"}
			r.Projects = []string{projectID(0)}
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

// policyBenchmarks times Decide on n rules: granted by the last rule (every
// rule evaluated), denied (likewise), and granted by the first.
func policyBenchmarks(n int) ([]PolicyResult, error) {
	cases := []struct {
		name    string
		grant   int
		project string
	}{
		{"grant by the last rule", n - 1, projectID(0)},
		{"deny (no rule grants)", n - 1, projectID(n + 10)},
		{"grant by the first rule", 0, projectID(0)},
	}
	var out []PolicyResult
	for _, c := range cases {
		p, _, err := policy.Compile(policyRules(n, c.grant), nil)
		if err != nil {
			return nil, fmt.Errorf("compile %d rules: %w", n, err)
		}
		req := policy.Request{Action: policy.ActionToken, Scope: policy.ScopeClient, Project: c.project}
		want := c.project == projectID(0)
		if d := p.Decide(policyIdentity, req); d.Allow != want {
			return nil, fmt.Errorf("policy case %q: Decide allowed=%v, want %v", c.name, d.Allow, want)
		}
		res := testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Decide(policyIdentity, req)
			}
		})
		out = append(out, PolicyResult{
			Name: c.name, Rules: n, NsPerOp: float64(res.T.Nanoseconds()) / float64(max(res.N, 1)),
			AllocsOp: res.AllocsPerOp(), BytesOp: res.AllocedBytesPerOp(),
		})
	}
	return out, nil
}
