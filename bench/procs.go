package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/exless/exless/internal/child"
)

// proc is a child process the harness started (see internal/child: none
// outlives a harness that dies, even by SIGKILL), with its log.
type proc struct {
	*child.Proc
	name    string
	logPath string
	logFile *os.File
	mask    []string // secrets to hide from log tails
}

// startProc runs bin with args and env, its output going to logPath.
func startProc(name, bin string, args, env []string, dir, logPath string, mask ...string) (*proc, error) {
	// O_APPEND, so that truncateLog can empty the file under the child.
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	c, err := child.Start(bin, args, env, dir, logFile)
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &proc{Proc: c, name: name, logPath: logPath, logFile: logFile, mask: mask}, nil
}

// stop sends SIGTERM, then SIGKILL after a grace period, and reaps the child.
func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.Stop(10 * time.Second)
	p.logFile.Close()
}

// truncateLog empties the child's log: exlessd writes one audit record per
// request, which over a long run adds up to hundreds of megabytes.
func (p *proc) truncateLog() { _ = p.logFile.Truncate(0) }

// tail returns the last lines of the child's log with secrets masked, for
// error messages.
func (p *proc) tail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-30):]
	for i, l := range lines {
		// The Vault dev server prints its unseal key and root token.
		if k, _, ok := strings.Cut(l, "Unseal Key:"); ok {
			lines[i] = k + "Unseal Key: [REDACTED]"
		}
	}
	out := strings.Join(lines, "\n")
	for _, s := range p.mask {
		if s != "" {
			out = strings.ReplaceAll(out, s, "[REDACTED]")
		}
	}
	return out
}

// childEnv is a minimal environment for children: no VAULT_* or other
// variables of the caller leak in (a VAULT_TOKEN would reach every child).
func childEnv(home string, extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C"}
	return append(env, extra...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// vaultServer is a `vault server -dev` child: in memory, KV v2 at secret/.
type vaultServer struct {
	*proc
	Addr  string // http://127.0.0.1:PORT
	Token string // root token, random
}

// startVault runs a Vault dev server on a free loopback port. The root
// token goes in through the environment, never argv (/proc/PID/cmdline is
// world-readable).
func startVault(ctx context.Context, bin, dir string) (*vaultServer, error) {
	var lastErr error
	for attempt := range 5 {
		port, err := freePortPair()
		if err != nil {
			return nil, err
		}
		d := filepath.Join(dir, "vault"+strconv.Itoa(attempt))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		tok := "root-" + randomHex(16)
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, err := startProc("vault", bin, []string{"server", "-dev", "-dev-no-store-token", "-dev-listen-address=" + listen},
			childEnv(d, "TMPDIR="+d, "VAULT_DEV_ROOT_TOKEN_ID="+tok), d, filepath.Join(d, "vault.log"), tok)
		if err != nil {
			return nil, err
		}
		v := &vaultServer{proc: p, Addr: "http://" + listen, Token: tok}
		if lastErr = v.waitHealthy(ctx, 60*time.Second); lastErr == nil {
			return v, nil
		}
		p.stop()
		if !bytes.Contains(must(os.ReadFile(p.logPath)), []byte("address already in use")) {
			return nil, fmt.Errorf("vault dev server: %w; last log lines:\n%s", lastErr, p.tail())
		}
	}
	return nil, fmt.Errorf("vault dev server: no free port: %w", lastErr)
}

func must(b []byte, _ error) []byte { return b }

func (v *vaultServer) waitHealthy(ctx context.Context, timeout time.Duration) error {
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if v.Exited() {
			return fmt.Errorf("exited (%v)", v.Err())
		}
		resp, err := hc.Get(v.Addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("sys/health: %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %s: %v", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freePortPair returns a loopback port whose successor (the dev server's
// cluster port) was free too.
func freePortPair() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return port, nil
	}
	return 0, errors.New("find a free port: no pair of adjacent free loopback ports")
}

// waitSocket waits until something accepts connections on socket.
func waitSocket(ctx context.Context, p *proc, socket string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited (%v); last log lines:\n%s", p.name, p.Err(), p.tail())
		}
		c, err := net.Dial("unix", socket)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no socket after %s: %v; last log lines:\n%s", p.name, timeout, err, p.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Memory is a process's resident memory from /proc/PID/status.
type Memory struct {
	RSS  int64 `json:"rss_bytes"`  // VmRSS now
	Peak int64 `json:"peak_bytes"` // VmHWM, the high-water mark
	Anon int64 `json:"anon_bytes"` // RssAnon: heap, stacks, runtime
	File int64 `json:"file_bytes"` // RssFile: the binary's pages in use
}

// readMemory reads pid's resident memory from /proc/PID/status.
func readMemory(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	var m Memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.Peak
		case "RssAnon":
			dst = &m.Anon
		case "RssFile":
			dst = &m.File
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		*dst = kb << 10
	}
	if m.RSS == 0 {
		return Memory{}, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return m, sc.Err()
}

// loadAvg returns the 1-minute load average, or -1.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// loadAvgs returns /proc/loadavg's three averages as text.
func loadAvgs() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
