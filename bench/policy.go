package bench

import (
	"fmt"
	"testing"

	"github.com/exless/exless/daemon/policy"
	"github.com/exless/exless/daemon/policy/policytest"
)

// The policy's cost is measured in this process with testing.Benchmark:
// Decide is a pure function, and what the daemon pays per request is what
// it costs here. daemon/policy/bench_test.go has the same as `go test -bench`.

// policyBenchmarks times Decide on n rules: granted by the last rule (every
// rule evaluated), denied (likewise), and granted by the first.
func policyBenchmarks(n int) ([]PolicyResult, error) {
	cases := []struct {
		name    string
		grant   int
		project string
	}{
		{"grant by the last rule", n - 1, policytest.Project(0)},
		{"deny (no rule grants)", n - 1, policytest.Project(n + 10)},
		{"grant by the first rule", 0, policytest.Project(0)},
	}
	var out []PolicyResult
	for _, c := range cases {
		p, _, err := policy.Compile(policytest.Rules(n, c.grant), nil)
		if err != nil {
			return nil, fmt.Errorf("compile %d rules: %w", n, err)
		}
		req := policy.Request{Action: policy.ActionToken, Scope: policy.ScopeClient, Project: c.project}
		want := c.project == policytest.Project(0)
		if d := p.Decide(policytest.Identity, req); d.Allow != want {
			return nil, fmt.Errorf("policy case %q: Decide allowed=%v, want %v", c.name, d.Allow, want)
		}
		res := testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Decide(policytest.Identity, req)
			}
		})
		out = append(out, PolicyResult{
			Name: c.name, Rules: n, NsPerOp: float64(res.T.Nanoseconds()) / float64(max(res.N, 1)),
			AllocsOp: res.AllocsPerOp(), BytesOp: res.AllocedBytesPerOp(),
		})
	}
	return out, nil
}
