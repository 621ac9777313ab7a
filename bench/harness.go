package bench

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/internal/buildflags"
	"github.com/exless/exless/internal/testrun"
	"github.com/exless/exless/vaultstore/vaulttest"
)

// Config says what a harness run measures and for how long.
type Config struct {
	// Duration is each load run's measured window, after Warmup.
	Duration time.Duration
	Warmup   time.Duration
	// Concurrency lists the concurrencies of the load runs.
	Concurrency []int
	// Rounds repeats the load runs, pooling each server's samples.
	Rounds int
	// Conns lists the connection modes measured: ConnKeepAlive, ConnNew.
	Conns []string
	// CLIRuns is how often each whole-process command runs.
	CLIRuns int
	// Projects is how many project tokens the memory measure caches; 0
	// skips it.
	Projects int
	// PolicyRules is the policy size timed; 0 skips it.
	PolicyRules int
	// OutDir receives results.json and latency.svg; "" writes neither.
	OutDir string
	// DaemonEnv is added to exlessd's environment, e.g. GOMEMLIMIT=30MiB to
	// try runtime settings a unit file could set. Run puts what
	// systemd/exlessd.service sets (Environment=) before it.
	DaemonEnv []string
	// Out receives the table; Progress receives progress lines.
	Out, Progress io.Writer
	// Go is the go command that builds exlessd, exlessctl and the floor.
	Go string
	// SaveLog, if set, is given each daemon's log (exlessd, the floor) by
	// name before the working directory is removed; tests keep them for
	// the end-of-run secret scan.
	SaveLog func(name string, log []byte)
}

// DefaultConfig is a short smoke run; pass longer durations for numbers.
func DefaultConfig() Config {
	return Config{
		Duration: time.Second, Warmup: 300 * time.Millisecond, Concurrency: []int{1, 8, 32, 128}, Rounds: 1,
		Conns:   []string{ConnKeepAlive, ConnNew},
		CLIRuns: 20, Projects: 10000, PolicyRules: 1000, Out: os.Stdout, Progress: os.Stderr, Go: "go",
	}
}

// harness is one run's state.
type harness struct {
	cfg     Config
	dir     string // short: socket paths must fit in 108 bytes
	bins    map[string]string
	vault   *vaultServer
	ex      *exceptionlesstest.Server
	setup   *daemonSetup
	floor   *proc
	floorSk string
	uid     *exlessd // uid/group rule
	exe     *exlessd // exe-hash rule
	mem     *exlessd // the memory measure's
	project string
	readTok string // the read-only Vault token of scripts
	secrets []string
	report  Report
}

// Run builds what it needs, starts Vault, the Exceptionless test server,
// exlessd and the floor, measures, prints the table and writes the files.
// Everything it started is stopped before it returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Go == "" {
		cfg.Go = "go"
	}
	dir, err := os.MkdirTemp("", "exlb-")
	if err != nil {
		return nil, err
	}
	// exlessd runs with what its unit sets (GOMEMLIMIT), then -daemon-env,
	// whose later entries win.
	uenv, err := unitEnv()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg.DaemonEnv = append(uenv, cfg.DaemonEnv...)
	h := &harness{cfg: cfg, dir: dir, bins: map[string]string{}}
	defer h.close()
	h.report.Meta = Meta{
		Started: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Kernel: kernel(),
		LoadBefore: loadAvgs(), Duration: cfg.Duration.String(), Warmup: cfg.Warmup.String(), Concurrency: cfg.Concurrency,
		Daemon:  "exlessd: the real binary (go build), its own process; floor: its own process; one Go load generator",
		Version: gitVersion(), Rounds: max(cfg.Rounds, 1), DaemonEnv: cfg.DaemonEnv,
	}
	if err := h.run(ctx); err != nil {
		return nil, err
	}
	h.report.Meta.Finished = time.Now().UTC()
	h.report.Meta.LoadAfter = loadAvgs()
	h.report.judge()
	var table strings.Builder
	h.report.Print(&table)
	if err := h.checkNoSecrets(table.String()); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(cfg.Out, table.String()); err != nil {
		return nil, err
	}
	if cfg.OutDir != "" {
		if err := h.write(); err != nil {
			return nil, err
		}
	}
	return &h.report, nil
}

func (h *harness) progress(format string, a ...any) {
	fmt.Fprintf(h.cfg.Progress, "exless-bench: "+format+"\n", a...)
}

func (h *harness) close() {
	for _, d := range []*exlessd{h.uid, h.exe, h.mem} {
		if d != nil {
			d.stop()
		}
	}
	h.floor.stop()
	if h.vault != nil {
		h.vault.stop()
	}
	if h.ex != nil {
		h.ex.Close()
	}
	if h.cfg.SaveLog != nil {
		// Vault's log is one level down and not saved: a dev server prints
		// its root token by design.
		logs, _ := filepath.Glob(filepath.Join(h.dir, "*.log"))
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil {
				h.cfg.SaveLog(strings.TrimSuffix(filepath.Base(l), ".log"), b)
			}
		}
	}
	os.RemoveAll(h.dir)
}

func (h *harness) run(ctx context.Context) error {
	if err := h.build(ctx); err != nil {
		return err
	}
	if err := h.startServers(ctx); err != nil {
		return err
	}
	if err := h.startDaemons(ctx); err != nil {
		return err
	}
	if err := h.loadRuns(ctx); err != nil {
		return err
	}
	if h.cfg.PolicyRules > 0 {
		h.progress("timing policy evaluation with %d rules", h.cfg.PolicyRules)
		p, err := policyBenchmarks(h.cfg.PolicyRules)
		if err != nil {
			return err
		}
		h.report.Policy = p
	}
	if h.cfg.CLIRuns > 0 {
		if err := h.cliRuns(ctx); err != nil {
			return err
		}
	}
	if h.cfg.Projects > 0 {
		if err := h.memory(ctx); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// build compiles exlessd, exlessctl and the floor from this module, and
// finds the Vault binary scripts/vault.sh built.
func (h *harness) build(ctx context.Context) error {
	vbin, err := vaulttest.Binary()
	if err != nil {
		return err
	}
	h.bins["vault"] = vbin
	binDir := filepath.Join(h.dir, "bin")
	h.progress("building exlessd, exlessctl and exless-floor")
	// Built as shipped (tags, cgo or not, stripped), since start-up time
	// and memory depend on it.
	if err := buildflags.Build(ctx, h.cfg.Go, "", binDir, "-s -w", nil,
		"github.com/exless/exless/cmd/exlessd", "github.com/exless/exless/cmd/exlessctl",
		"github.com/exless/exless/bench/cmd/exless-floor",
		"github.com/exless/exless/bench/cmd/exless-gofloor", "github.com/exless/exless/bench/cmd/exless-httpfloor"); err != nil {
		return fmt.Errorf("%v (run from the exless module)", err)
	}
	for _, b := range []string{"exlessd", "exlessctl", "exless-floor", "exless-gofloor", "exless-httpfloor"} {
		h.bins[b] = filepath.Join(binDir, b)
	}
	return nil
}

// startServers starts Vault, the Exceptionless test server and the floor.
func (h *harness) startServers(ctx context.Context) error {
	h.progress("starting a Vault dev server and the Exceptionless test server")
	var err error
	if h.vault, err = startVault(ctx, h.bins["vault"], h.dir); err != nil {
		return err
	}
	h.ex = exceptionlesstest.NewServer(exceptionlesstest.Config{})
	h.project = h.ex.Account.Projects[0].ID
	h.secrets = append(h.secrets, h.vault.Token, h.ex.Account.Password)

	secrets := filepath.Join(h.dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		return err
	}
	h.setup = &daemonSetup{
		bin: h.bins["exlessd"], dir: h.dir, vaultAddr: h.vault.Addr, vaultPath: "exless/bench-" + randomHex(4),
		tokenFile: filepath.Join(secrets, "vault-token"), exURL: h.ex.URL, email: h.ex.Account.Email,
		pwFile: filepath.Join(secrets, "password"), env: h.cfg.DaemonEnv,
	}
	if err := os.WriteFile(h.setup.tokenFile, []byte(h.vault.Token), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(h.setup.pwFile, []byte(h.ex.Account.Password+"\n"), 0o600); err != nil {
		return err
	}
	h.setup.mask = h.secrets
	if h.readTok, err = vaultReadToken(ctx, h.vault.Addr, h.vault.Token, "secret", h.setup.vaultPath); err != nil {
		return err
	}
	h.secrets = append(h.secrets, h.readTok)
	// Listed for the end-of-run scan when `make test` runs the smoke test
	// (the test server registers the tokens it issues itself).
	for _, sec := range h.secrets {
		testrun.Secret(sec)
	}

	h.floorSk = filepath.Join(h.dir, "floor.sock")
	if h.floor, err = startProc("exless-floor", h.bins["exless-floor"], []string{"-socket", h.floorSk},
		childEnv(h.dir), h.dir, filepath.Join(h.dir, "floor.log")); err != nil {
		return err
	}
	return waitSocket(ctx, h.floor, h.floorSk, 30*time.Second)
}

// selfHash is the sha256 of this process's executable: the load generator
// is the peer exlessd attests, so the exe-hash rule names it.
func selfHash() (string, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", "", err
	}
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", "", err
	}
	return exe, hex.EncodeToString(sum.Sum(nil)), nil
}

// waitNotRacy waits until path was last changed long enough ago for
// exlessd's hash cache to trust it: a file changed within its racy window
// (3 s) is hashed on every connection, which a just-built benchmark binary
// would otherwise measure.
func waitNotRacy(ctx context.Context, path string, window time.Duration) error {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return err
	}
	changed := time.Unix(st.Ctim.Unix())
	if m := time.Unix(st.Mtim.Unix()); m.After(changed) {
		changed = m
	}
	select {
	case <-time.After(time.Until(changed.Add(window))):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startDaemons runs the uid/group-policy exlessd and the exe-hash-policy
// exlessd side by side (they share the Vault path, as a fleet does), so that
// their runs can alternate.
func (h *harness) startDaemons(ctx context.Context) error {
	uid, gid := strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid())
	base := rule{name: "bench", users: []string{uid}, groups: []string{gid}}
	h.progress("starting exlessd with a uid/group rule")
	var err error
	if h.uid, err = h.setup.start(ctx, "exless-uid", base); err != nil {
		return err
	}
	if err := h.uid.warm(ctx, h.project); err != nil {
		return err
	}

	exePath, sum, err := selfHash()
	if err != nil {
		return fmt.Errorf("hash own executable: %w", err)
	}
	if err := waitNotRacy(ctx, exePath, 5*time.Second); err != nil {
		return err
	}
	exeRule := base
	exeRule.name, exeRule.exeSHA256 = "bench-exe", []string{sum}
	h.progress("starting exlessd with an exe-hash rule")
	if h.exe, err = h.setup.start(ctx, "exless-exe", exeRule); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	who, err := h.exe.Client.WhoAmI(wctx)
	cancel()
	if err != nil {
		return fmt.Errorf("whoami on the exe-rule daemon: %w", err)
	}
	h.report.Meta.Pin = who.Pin
	switch {
	case strings.EqualFold(who.ExeSHA256, sum):
		h.report.Meta.ExeHashed = true
		h.report.Meta.ExeAttestation = "hashed: exlessd hashed the peer's executable (sha256 " + who.ExeSHA256[:12] + "…; a hash-only policy does not read its path)"
	default:
		why := who.ExeUnknown
		if why == "" && who.ExeSHA256 != "" {
			why = "exlessd's hash differs from this binary's"
		}
		h.report.Meta.ExeAttestation = "NOT hashed (" + why + "); the exe runs measure the path exlessd takes for a policy with an exe rule, with a uid/group rule after it granting"
		h.progress("exe attestation is not available (%s); restarting the exe daemon with a fallback rule", why)
		h.exe.stop()
		h.exe = nil
		if h.exe, err = h.setup.start(ctx, "exless-exe", exeRule, rule{name: "bench-fallback", users: base.users, groups: base.groups}); err != nil {
			return err
		}
	}
	return h.exe.warm(ctx, h.project)
}

// loadRuns measures every server at every concurrency. For each
// concurrency and connection mode the servers run back to back, so that
// the ratios compare runs close in time on a machine whose load changes.
// With several rounds each server's samples are pooled, and the order of
// the servers rotates from round to round.
func (h *harness) loadRuns(ctx context.Context) error {
	url := "http://localhost/v1/token?scope=client&project=" + h.project
	vaultPath := h.setup.vaultPath + "/" + daemon.ClientKey(h.project)
	type key struct {
		target, pol, conn string
		c                 int
	}
	var order []key
	samples := map[key][]Sample{}
	loads := map[key][]float64{}
	measure := func(k key) error {
		var req Request
		switch k.target {
		case "vault":
			var err error
			if req, err = VaultKVRead(h.vault.Addr, h.readTok, "secret", vaultPath, k.c); err != nil {
				return err
			}
		default:
			socket := map[string]string{"floor": h.floorSk, "uid": h.uid.Socket, "exe": h.exe.Socket}[cmp.Or(k.pol, k.target)]
			hc := &http.Client{Transport: UnixTransport(socket, k.conn == ConnKeepAlive, k.c), Timeout: 30 * time.Second}
			defer hc.CloseIdleConnections()
			req = GetToken(hc, url)
		}
		if _, ok := samples[k]; !ok {
			order = append(order, k)
		}
		loads[k] = append(loads[k], loadAvg())
		samples[k] = append(samples[k], Load(ctx, LoadOptions{Concurrency: k.c, Warmup: h.cfg.Warmup, Duration: h.cfg.Duration}, req))
		h.uid.truncateLog()
		h.exe.truncateLog()
		return nil
	}
	rounds := max(h.cfg.Rounds, 1)
	for round := range rounds {
		for _, conn := range h.cfg.Conns {
			for _, c := range h.cfg.Concurrency {
				h.progress("load: round %d/%d, %s, c=%d (load average %s)", round+1, rounds, conn, c, loadAvgs())
				group := []key{{"floor", "", conn, c}, {"exless", "uid", conn, c}, {"exless", "exe", conn, c}}
				if conn == ConnKeepAlive {
					group = append(group, key{"vault", "", conn, c})
				}
				for i := range group {
					if err := measure(group[(i+round)%len(group)]); err != nil {
						return err
					}
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
	}
	for _, k := range order {
		var sum float64
		for _, l := range loads[k] {
			sum += l
		}
		load := math.Round(sum/float64(len(loads[k]))*100) / 100
		h.report.Runs = append(h.report.Runs, newRunResult(k.target, k.pol, k.conn, k.c, load, Merge(samples[k]...)))
	}
	slices.SortStableFunc(h.report.Runs, func(a, b RunResult) int {
		return cmp.Or(cmp.Compare(connOrder(a.Conn), connOrder(b.Conn)), cmp.Compare(a.Concurrency, b.Concurrency))
	})
	return nil
}

func connOrder(c string) int {
	if c == ConnKeepAlive {
		return 0
	}
	return 1
}

// cliRuns times exlessctl token, vault kv get and curl as whole processes.
func (h *harness) cliRuns(ctx context.Context) error {
	h.progress("timing whole processes, %d runs each", h.cfg.CLIRuns)
	home := filepath.Join(h.dir, "clihome")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	cmds := []command{
		{name: "exlessctl token", bin: h.bins["exlessctl"], dir: home,
			args: []string{"token", "--scope", "client", "--project", h.project},
			env:  childEnv(home, "EXLESS_SOCKET="+h.uid.Socket)},
		// exlessctl's start-up alone: the difference to token is the request.
		{name: "exlessctl --version", bin: h.bins["exlessctl"], dir: home,
			args: []string{"--version"}, env: childEnv(home)},
		{name: "vault kv get", bin: h.bins["vault"], dir: home,
			args: []string{"kv", "get", "-mount=secret", "-field=token", h.setup.vaultPath + "/" + daemon.ClientKey(h.project)},
			// The token goes in the environment, never argv.
			env: childEnv(home, "VAULT_ADDR="+h.vault.Addr, "VAULT_TOKEN="+h.readTok), mask: h.secrets},
	}
	if curl, err := exec.LookPath("curl"); err == nil {
		cmds = append(cmds, command{name: "curl --unix-socket", bin: curl, dir: home,
			args: []string{"-sS", "--fail", "--unix-socket", h.uid.Socket, "http://localhost/v1/token?scope=client&project=" + h.project},
			env:  childEnv(home)})
	} else {
		h.progress("curl not installed; skipping it")
	}
	// The cost of starting any process at all, under the machine's load.
	if t, err := exec.LookPath("true"); err == nil {
		cmds = append(cmds, command{name: "process floor", bin: t, dir: home, env: childEnv(home), noOutput: true})
	}
	// The cost of starting a Go program, and one linking net/http (as any
	// HTTP client does), built as exlessctl is: below these no Go client
	// can go on this machine.
	cmds = append(cmds,
		command{name: "Go floor", bin: h.bins["exless-gofloor"], dir: home, env: childEnv(home)},
		command{name: "Go net/http floor", bin: h.bins["exless-httpfloor"], dir: home, env: childEnv(home)})
	gnuTime, err := exec.LookPath("time")
	if err != nil {
		h.progress("GNU time not installed; peak RSS of whole processes not measured")
		gnuTime = ""
	}
	h.report.CLI = timeCommands(ctx, cmds, h.cfg.CLIRuns, gnuTime, home)
	return ctx.Err()
}

// Memory states.
const (
	memIdle    = "idle"
	memMinted  = "minted"
	memAdopted = "adopted"
)

var memStates = map[string]string{
	memIdle:    "idle (started, user token loaded)",
	memMinted:  "N project tokens minted and cached",
	memAdopted: "restarted, N tokens read back from Vault",
}

// memory measures a fresh exlessd's RSS idle, then with Projects client
// tokens cached: minted on first request, then again after a restart that
// reads them back from Vault. The other daemons are stopped first.
func (h *harness) memory(ctx context.Context) error {
	for _, d := range []*exlessd{h.uid, h.exe} {
		d.stop()
	}
	h.uid, h.exe = nil, nil
	n := h.cfg.Projects
	h.progress("memory: starting a fresh exlessd")
	r := rule{name: "bench", users: []string{strconv.Itoa(os.Getuid())}}
	var err error
	if h.mem, err = h.setup.start(ctx, "exless-mem", r); err != nil {
		return err
	}
	settle := func() { time.Sleep(2 * time.Second) }
	measure := func(kind string) error {
		m, err := readMemory(h.mem.PID())
		if err != nil {
			return err
		}
		tokens, err := clientTokens(ctx, h.mem.Socket)
		if err != nil {
			return err
		}
		h.report.Memory = append(h.report.Memory, MemoryResult{Kind: kind, State: strings.ReplaceAll(memStates[kind], "N ", strconv.Itoa(n)+" "), Tokens: tokens, Memory: m})
		return nil
	}
	settle()
	if err := measure(memIdle); err != nil {
		return err
	}

	org := h.ex.Account.OrganizationID
	ids := make([]string, n)
	for i := range ids {
		ids[i] = h.ex.AddProject(org, fmt.Sprintf("bench-%05d", i))
	}
	fetchAll := func() error {
		t0 := time.Now()
		hc := &http.Client{Transport: UnixTransport(h.mem.Socket, true, 8), Timeout: 60 * time.Second}
		defer hc.CloseIdleConnections()
		errs := make(chan error, 8)
		next := make(chan string)
		for range 8 {
			go func() {
				var first error
				for id := range next {
					get := GetToken(hc, "http://localhost/v1/token?scope=client&project="+id)
					if err := get(ctx); err != nil && first == nil {
						first = fmt.Errorf("project %s: %w", id, err)
					}
				}
				errs <- first
			}()
		}
		for _, id := range ids {
			next <- id
		}
		close(next)
		var first error
		for range 8 {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		h.progress("memory: fetched %d client tokens in %s", n, time.Since(t0).Round(time.Millisecond))
		return first
	}
	h.progress("memory: minting %d client tokens", n)
	if err := fetchAll(); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	settle()
	if err := measure(memMinted); err != nil {
		return err
	}
	h.mem.stop()
	h.mem = nil
	if h.mem, err = h.setup.start(ctx, "exless-mem", r); err != nil {
		return err
	}
	h.progress("memory: restarted; fetching %d client tokens from Vault", n)
	if err := fetchAll(); err != nil {
		return fmt.Errorf("memory after restart: %w", err)
	}
	settle()
	return measure(memAdopted)
}

// clientTokens asks exlessd's status how many client tokens it holds. It
// reads the reply itself: with thousands of tokens the status lists them
// all, beyond what daemon.Client accepts in a reply.
func clientTokens(ctx context.Context, socket string) (int, error) {
	hc := &http.Client{Transport: UnixTransport(socket, false, 1), Timeout: 60 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://localhost/v1/status", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("exlessd status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("exlessd status: %s", resp.Status)
	}
	var st struct {
		ClientTokens int `json:"client_tokens"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, fmt.Errorf("exlessd status: %w", err)
	}
	return st.ClientTokens, nil
}

// write stores results.json and latency.svg in OutDir, after checking
// that neither holds a secret.
func (h *harness) write() error {
	if err := os.MkdirAll(h.cfg.OutDir, 0o755); err != nil {
		return err
	}
	var js, svg strings.Builder
	if err := h.report.WriteJSON(&js); err != nil {
		return err
	}
	if err := h.report.WriteSVG(&svg); err != nil {
		return err
	}
	if err := h.checkNoSecrets(js.String(), svg.String()); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.cfg.OutDir, "results.json"), []byte(js.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(h.cfg.OutDir, "latency.svg"), []byte(svg.String()), 0o644)
}

// Rerender reads a results.json, judges it again with this build's targets,
// prints the table to out and rewrites results.json and latency.svg beside
// it. It re-renders a saved run; it measures nothing.
func Rerender(path string, out io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	r.judge()
	r.Print(out)
	var js, svg strings.Builder
	if err := r.WriteJSON(&js); err != nil {
		return err
	}
	if err := r.WriteSVG(&svg); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(js.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(filepath.Dir(path), "latency.svg"), []byte(svg.String()), 0o644)
}

// checkNoSecrets fails if any output holds a secret: the Vault tokens, the
// Exceptionless password, or any token the Exceptionless test server issued
// (the user token and every client token served).
func (h *harness) checkNoSecrets(outputs ...string) error {
	secrets := append([]string{}, h.secrets...)
	if h.ex != nil {
		for _, t := range h.ex.Tokens() {
			secrets = append(secrets, t.ID)
		}
	}
	for _, out := range outputs {
		for _, s := range secrets {
			if s != "" && strings.Contains(out, s) {
				return errors.New("refusing to print or write results: they contain a secret")
			}
		}
	}
	return nil
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// gitVersion describes the tree measured, as the Makefile's VERSION does.
func gitVersion() string {
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "dev"
	}
	return strings.TrimSpace(string(out))
}
