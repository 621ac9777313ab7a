package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one harness run measured. It is written as
// results.json; Print renders it as the table.
type Report struct {
	Meta    Meta           `json:"meta"`
	Runs    []RunResult    `json:"runs"`
	CLI     []CLIResult    `json:"cli"`
	Memory  []MemoryResult `json:"memory"`
	Policy  []PolicyResult `json:"policy"`
	Ratios  []Ratio        `json:"ratios"`
	Targets []Target       `json:"targets"`
}

// Meta describes the run: when, where, with what settings and load.
type Meta struct {
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Version     string    `json:"version"` // git describe of the tree measured
	GoVersion   string    `json:"go_version"`
	CPUs        int       `json:"cpus"`
	Kernel      string    `json:"kernel"`
	LoadBefore  string    `json:"load_before"` // /proc/loadavg 1, 5, 15 min
	LoadAfter   string    `json:"load_after"`
	Daemon      string    `json:"daemon"` // how exlessd ran
	Duration    string    `json:"duration"`
	Warmup      string    `json:"warmup"`
	Rounds      int       `json:"rounds"`
	DaemonEnv   []string  `json:"daemon_env,omitempty"` // added to exlessd's environment
	Concurrency []int     `json:"concurrency"`
	// ExeAttestation says whether the exe-hash policy's runs measured real
	// hashing ("hashed") or the path without it, and why.
	ExeAttestation string `json:"exe_attestation"`
	ExeHashed      bool   `json:"exe_hashed"`
	Pin            string `json:"pin"` // how exlessd pinned the peer (whoami)
}

// RunResult is one load run. Latencies are in microseconds.
type RunResult struct {
	Target      string  `json:"target"` // "exless", "vault", "floor"
	Policy      string  `json:"policy,omitempty"`
	Conn        string  `json:"conn"` // ConnKeepAlive or ConnNew
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	P50         float64 `json:"p50_us"`
	P99         float64 `json:"p99_us"`
	P999        float64 `json:"p999_us"`
	Max         float64 `json:"max_us"`
	Mean        float64 `json:"mean_us"`
	Throughput  float64 `json:"throughput_rps"`
	Load1       float64 `json:"load1"` // 1-minute load average when the run started
	// Spectrum is latency by percentile, for the plot.
	Spectrum []Point `json:"spectrum"`
}

// Point is one percentile of a latency distribution.
type Point struct {
	Q  float64 `json:"q"`  // percentile, 0–100
	US float64 `json:"us"` // latency
}

// Connection modes.
const (
	ConnKeepAlive = "keepalive"
	ConnNew       = "new"
)

// Label names the run's server and policy, e.g. "exless/uid".
func (r RunResult) Label() string {
	if r.Policy == "" {
		return r.Target
	}
	return r.Target + "/" + r.Policy
}

// spectrumQs are the percentiles the plot draws.
var spectrumQs = []float64{0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100}

func us(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)*10) / 10 }

// newRunResult summarises a sample.
func newRunResult(target, pol, conn string, conc int, load1 float64, s Sample) RunResult {
	r := RunResult{Target: target, Policy: pol, Conn: conn, Concurrency: conc, Requests: len(s.Latencies),
		Errors: s.Errors, Load1: load1, Throughput: math.Round(s.Throughput())}
	if s.FirstErr != nil {
		r.FirstError = s.FirstErr.Error()
	}
	l := s.Latencies
	if len(l) == 0 {
		return r
	}
	r.P50, r.P99, r.P999 = us(Percentile(l, .50)), us(Percentile(l, .99)), us(Percentile(l, .999))
	r.Max = us(l[len(l)-1])
	var sum time.Duration
	for _, d := range l {
		sum += d
	}
	r.Mean = us(sum / time.Duration(len(l)))
	for _, q := range spectrumQs {
		r.Spectrum = append(r.Spectrum, Point{Q: q, US: us(Percentile(l, q/100))})
	}
	return r
}

// CLIResult is a command timed as a whole process, many times.
type CLIResult struct {
	Name       string  `json:"name"`
	Command    string  `json:"command"` // argv as shown; secrets travel in env
	Runs       int     `json:"runs"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	MedianMS   float64 `json:"median_ms"`
	P90MS      float64 `json:"p90_ms"`
	MinMS      float64 `json:"min_ms"`
	PeakRSS    int64   `json:"peak_rss_bytes"` // median of 3 runs under GNU time; 0: not measured
}

// MemoryResult is exlessd's resident memory in one state.
type MemoryResult struct {
	Kind   string `json:"kind"` // memIdle, memMinted or memAdopted
	State  string `json:"state"`
	Tokens int    `json:"client_tokens"` // as exlessd's status reports
	Memory
}

// PolicyResult is one policy evaluation benchmark.
type PolicyResult struct {
	Name     string  `json:"name"`
	Rules    int     `json:"rules"`
	NsPerOp  float64 `json:"ns_per_op"`
	AllocsOp int64   `json:"allocs_per_op"`
	BytesOp  int64   `json:"bytes_per_op"`
}

// Ratio compares two measured values.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// Target is one of the targets and whether this run met it.
type Target struct {
	Measure string `json:"measure"`
	Want    string `json:"want"`
	Got     string `json:"got"`
	// Result is "pass", "fail" or "n/a" (not measured in this run).
	Result string `json:"result"`
	Note   string `json:"note,omitempty"`
}

// WriteJSON writes the report, indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func fmtUS(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 10000:
		return fmt.Sprintf("%.1fms", v/1000)
	default:
		return fmt.Sprintf("%.0fµs", v)
	}
}

func fmtMB(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

// Print renders the report as text tables.
func (r *Report) Print(w io.Writer) {
	m := r.Meta
	fmt.Fprintf(w, "exless benchmark %s — %s, go %s, %d CPUs, kernel %s\n", m.Version, m.Started.UTC().Format(time.RFC3339), m.GoVersion, m.CPUs, m.Kernel)
	fmt.Fprintf(w, "load average (1/5/15 min): %s before, %s after; %d round(s) of %s per run after %s warm-up\n",
		m.LoadBefore, m.LoadAfter, m.Rounds, m.Duration, m.Warmup)
	fmt.Fprintf(w, "%s\n", m.Daemon)
	if len(m.DaemonEnv) > 0 {
		fmt.Fprintf(w, "exlessd environment: %s\n", strings.Join(m.DaemonEnv, " "))
	}
	fmt.Fprintf(w, "exe-hash policy: %s\n\n", m.ExeAttestation)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tconn\tc\trequests\tp50\tp99\tp99.9\treq/s\terrors\tload1\t")
	for _, x := range r.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%.0f\t%d\t%.1f\t\n", x.Label(), x.Conn, x.Concurrency, x.Requests,
			fmtUS(x.P50), fmtUS(x.P99), fmtUS(x.P999), x.Throughput, x.Errors, x.Load1)
	}
	tw.Flush()
	for _, x := range r.Runs {
		if x.FirstError != "" {
			fmt.Fprintf(w, "  %s %s c=%d: %d errors, first: %s\n", x.Label(), x.Conn, x.Concurrency, x.Errors, x.FirstError)
		}
	}

	if len(r.CLI) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "whole process\truns\tmedian\tp90\tmin\tpeak RSS\tcommand")
		for _, c := range r.CLI {
			rss := "-"
			if c.PeakRSS > 0 {
				rss = fmtMB(c.PeakRSS)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.2f ms\t%.2f ms\t%.2f ms\t%s\t%s\n", c.Name, c.Runs, c.MedianMS, c.P90MS, c.MinMS, rss, c.Command)
		}
		tw.Flush()
		for _, c := range r.CLI {
			if c.FirstError != "" {
				fmt.Fprintf(w, "  %s: %d errors, first: %s\n", c.Name, c.Errors, c.FirstError)
			}
		}
	}
	if len(r.Memory) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "exlessd memory\tclient tokens\tRSS\tof which anon\tfile\tpeak RSS")
		for _, x := range r.Memory {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", x.State, x.Tokens, fmtMB(x.RSS), fmtMB(x.Anon), fmtMB(x.File), fmtMB(x.Peak))
		}
		tw.Flush()
	}
	if len(r.Policy) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "policy evaluation\trules\ttime/op\tallocs/op\tbytes/op")
		for _, p := range r.Policy {
			fmt.Fprintf(tw, "%s\t%d\t%.2f µs\t%d\t%d\n", p.Name, p.Rules, p.NsPerOp/1000, p.AllocsOp, p.BytesOp)
		}
		tw.Flush()
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "ratios\tconn\tc\t÷floor p50\t÷floor p99\t÷floor req/s\t÷vault p50\t÷vault p99\t÷vault req/s\t")
		for _, x := range r.Runs {
			if x.Target != "exless" {
				continue
			}
			at := fmt.Sprintf("exless/%s ÷ %%s, %s c=%d, %%s", x.Policy, x.Conn, x.Concurrency)
			cell := func(of, what string) string {
				for _, q := range r.Ratios {
					if q.Name == fmt.Sprintf(at, of, what) {
						return fmt.Sprintf("%.2f×", q.Value)
					}
				}
				return "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", x.Label(), x.Conn, x.Concurrency,
				cell("floor", "p50"), cell("floor", "p99"), cell("floor", "req/s"), cell("vault", "p50"), cell("vault", "p99"), cell("vault", "req/s"))
		}
		tw.Flush()
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "target\twant\tgot\tresult")
		for _, t := range r.Targets {
			res := strings.ToUpper(t.Result)
			if t.Note != "" {
				res += " (" + t.Note + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Measure, t.Want, t.Got, res)
		}
		tw.Flush()
	}
}

// find returns the run of target/policy, conn and concurrency, if measured.
func (r *Report) find(target, pol, conn string, c int) (RunResult, bool) {
	for _, x := range r.Runs {
		if x.Target == target && x.Policy == pol && x.Conn == conn && x.Concurrency == c && x.Requests > 0 {
			return x, true
		}
	}
	return RunResult{}, false
}

func (r *Report) cli(name string) (CLIResult, bool) {
	for _, c := range r.CLI {
		if c.Name == name && c.Runs > c.Errors {
			return c, true
		}
	}
	return CLIResult{}, false
}

// judge computes the ratios and checks the targets.
func (r *Report) judge() {
	r.Ratios, r.Targets = nil, nil
	div := func(a, b float64) float64 {
		if a == 0 || b == 0 {
			return 0
		}
		return a / b
	}
	keep := func(name string, a, b float64) {
		if a != 0 && b != 0 {
			r.Ratios = append(r.Ratios, Ratio{Name: name, Value: math.Round(a/b*100) / 100})
		}
	}
	target := func(measure, want, got string, ok, measured bool, note string) {
		t := Target{Measure: measure, Want: want, Got: got, Result: "n/a", Note: note}
		if measured {
			t.Result = map[bool]string{true: "pass", false: "fail"}[ok]
		}
		r.Targets = append(r.Targets, t)
	}
	ka, nc := ConnKeepAlive, ConnNew

	// Ratios, for every concurrency measured.
	for _, x := range r.Runs {
		if x.Target != "exless" {
			continue
		}
		at := fmt.Sprintf("exless/%s ÷ %%s, %s c=%d, %%s", x.Policy, x.Conn, x.Concurrency)
		if f, ok := r.find("floor", "", x.Conn, x.Concurrency); ok {
			keep(fmt.Sprintf(at, "floor", "p50"), x.P50, f.P50)
			keep(fmt.Sprintf(at, "floor", "p99"), x.P99, f.P99)
			keep(fmt.Sprintf(at, "floor", "req/s"), x.Throughput, f.Throughput)
		}
		if v, ok := r.find("vault", "", ConnKeepAlive, x.Concurrency); ok && x.Conn == ConnKeepAlive {
			keep(fmt.Sprintf(at, "vault", "p50"), x.P50, v.P50)
			keep(fmt.Sprintf(at, "vault", "p99"), x.P99, v.P99)
			keep(fmt.Sprintf(at, "vault", "req/s"), x.Throughput, v.Throughput)
		}
	}

	// The targets of issue 6.
	ex1, okE := r.find("exless", "uid", ka, 1)
	fl1, okF := r.find("floor", "", ka, 1)
	v1, okV := r.find("vault", "", ka, 1)
	{
		p50 := div(ex1.P50, fl1.P50)
		p99 := div(ex1.P99, fl1.P99)
		target("keep-alive c=1 p50 and p99, exless ÷ floor", "≤ 1.3×",
			fmt.Sprintf("p50 %.2f×, p99 %.2f×", p50, p99), p50 <= 1.3 && p99 <= 1.3, okE && okF, "")
	}
	ex32, okE32 := r.find("exless", "uid", ka, 32)
	fl32, okF32 := r.find("floor", "", ka, 32)
	v32, okV32 := r.find("vault", "", ka, 32)
	{
		f := div(ex32.Throughput, fl32.Throughput)
		v := div(ex32.Throughput, v32.Throughput)
		target("keep-alive c=32 throughput", "≥ 0.6× floor and ≥ 3× vault",
			fmt.Sprintf("%.2f× floor, %.2f× vault", f, v), f >= 0.6 && v >= 3, okE32 && okF32 && okV32, "")
	}
	exN8, okEN := r.find("exless", "uid", nc, 8)
	flN8, okFN := r.find("floor", "", nc, 8)
	{
		f := div(exN8.Throughput, flN8.Throughput)
		target("new connection per request c=8 throughput", "≥ 0.6× floor", fmt.Sprintf("%.2f×", f), f >= 0.6, okEN && okFN, "")
	}
	{
		note := ""
		if !r.Meta.ExeHashed {
			note = "measured the unhashed path: " + r.Meta.ExeAttestation
		}
		var worst float64
		var parts []string
		measured := false
		check := func(name string, uid, exe RunResult, ok bool, higherIsBetter bool, get func(RunResult) float64) {
			if !ok || get(uid) == 0 || get(exe) == 0 {
				return
			}
			measured = true
			d := get(exe)/get(uid) - 1 // >0: exe slower (latency) or faster (throughput)
			if higherIsBetter {
				d = -d
			}
			worst = max(worst, d)
			parts = append(parts, fmt.Sprintf("%s %+.0f%%", name, 100*d))
		}
		exe1, ok1 := r.find("exless", "exe", ka, 1)
		exe32, ok32 := r.find("exless", "exe", ka, 32)
		exeN8, okN8 := r.find("exless", "exe", nc, 8)
		check("c=1 p50", ex1, exe1, ok1 && okE, false, func(x RunResult) float64 { return x.P50 })
		check("c=1 p99", ex1, exe1, ok1 && okE, false, func(x RunResult) float64 { return x.P99 })
		check("c=32 req/s", ex32, exe32, ok32 && okE32, true, func(x RunResult) float64 { return x.Throughput })
		check("new c=8 req/s", exN8, exeN8, okN8 && okEN, true, func(x RunResult) float64 { return x.Throughput })
		target("exe-hash rule vs uid/group rule (cost, + is worse)", "within 10%", strings.Join(parts, ", "), worst <= 0.10, measured, note)
	}
	{
		v := div(ex1.P50, v1.P50)
		target("c=1 p50, exless ÷ direct vault read", "≤ 0.6×", fmt.Sprintf("%.2f× (%s vs %s)", v, fmtUS(ex1.P50), fmtUS(v1.P50)), v <= 0.6, okE && okV, "")
	}
	{
		ctl, ok1 := r.cli("exlessctl token")
		vkv, ok2 := r.cli("vault kv get")
		var v float64
		if ok1 && ok2 && vkv.MedianMS > 0 {
			v = div(ctl.MedianMS, vkv.MedianMS)
		}
		note := ""
		if v, ok := r.cli("exlessctl --version"); ok {
			note = fmt.Sprintf("exlessctl --version alone: %.2f ms", v.MedianMS)
		}
		if pf, ok := r.cli("process floor"); ok {
			note += fmt.Sprintf("; starting true: %.2f ms", pf.MedianMS)
		}
		if gf, ok := r.cli("Go floor"); ok {
			note += fmt.Sprintf("; a minimal Go program: %.2f ms", gf.MedianMS)
		}
		if hf, ok := r.cli("Go net/http floor"); ok {
			note += fmt.Sprintf("; one linking net/http: %.2f ms", hf.MedianMS)
		}
		note = strings.TrimPrefix(note, "; ")
		target("exlessctl token, whole process, median", "≤ 5 ms and ≤ 0.15× vault kv get",
			fmt.Sprintf("%.2f ms, %.2f×", ctl.MedianMS, v), ctl.MedianMS <= 5 && v <= 0.15, ok1 && ok2, note)
	}
	{
		var idle, full *MemoryResult
		for i := range r.Memory {
			switch r.Memory[i].Kind {
			case memIdle:
				idle = &r.Memory[i]
			case memMinted, memAdopted:
				// The target holds for both states: judge the larger.
				if full == nil || r.Memory[i].RSS > full.RSS {
					full = &r.Memory[i]
				}
			}
		}
		if idle != nil {
			target("exlessd RSS idle", "≤ 20 MB", fmtMB(idle.RSS), idle.RSS <= 20e6, true, "")
		} else {
			target("exlessd RSS idle", "≤ 20 MB", "-", false, false, "")
		}
		if full != nil {
			note := ""
			if full.Tokens < 10000 {
				note = fmt.Sprintf("only %d tokens cached in this run", full.Tokens)
			}
			target("exlessd RSS with 10,000 cached project tokens", "≤ 40 MB", fmtMB(full.RSS)+" ("+full.Kind+")", full.RSS <= 40e6 && full.Tokens >= 10000, true, note)
		} else {
			target("exlessd RSS with 10,000 cached project tokens", "≤ 40 MB", "-", false, false, "")
		}
	}
	{
		var worst PolicyResult
		for _, p := range r.Policy {
			if p.NsPerOp > worst.NsPerOp {
				worst = p
			}
		}
		target("policy evaluation, 1,000 rules (worst case measured)", "≤ 20 µs",
			fmt.Sprintf("%.2f µs (%s)", worst.NsPerOp/1000, worst.Name), worst.NsPerOp <= 20000, worst.Rules >= 1000, "")
	}
}
