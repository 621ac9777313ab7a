package vaulttest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Node is a Vault server run from a config file, with file or integrated
// (Raft) storage: unlike a dev server it keeps its data across restarts,
// starts sealed, and is unsealed by the helper through the HTTP API (the
// unseal key never appears on a command line). Its address stays the same
// across restarts.
type Node struct {
	ID          string // "node1", …
	Addr        string // "http://127.0.0.1:PORT"
	ClusterAddr string // Raft and request forwarding, "https://127.0.0.1:PORT+1"
	// TLS is set for a node that listens with TLS (Addr is then https)
	// and requires a client certificate: the files a client needs.
	TLS *TLSFiles

	bin, dir, cfgPath, logPath string
	storage                    string // "file" or "raft"
	keys                       *keys

	mu  sync.Mutex
	srv *Server // the running process; nil when stopped
}

// keys are the root token and the unseal key that init returned; shared by
// the nodes of a cluster.
type keys struct {
	mu     sync.Mutex
	token  string
	unseal string
}

func (k *keys) get() (token, unseal string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.token, k.unseal
}

// Token returns the root token (empty before init).
func (n *Node) Token() string { t, _ := n.keys.get(); return t }

// PID returns the process id, 0 when the node is stopped.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return 0
	}
	return n.srv.PID
}

// Running reports whether the node's process is running.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return false
	}
	select {
	case <-n.srv.proc.Done():
		return false
	default:
		return true
	}
}

// Do is Server.Do against this node with the root token.
func (n *Node) Do(ctx context.Context, method, path string, body any) (int, map[string]any, error) {
	return request(ctx, n.Addr, n.Token(), method, path, body)
}

// Env returns VAULT_ADDR and VAULT_TOKEN for the node.
func (n *Node) Env() []string { return []string{"VAULT_ADDR=" + n.Addr, "VAULT_TOKEN=" + n.Token()} }

// Status returns the node's sys/health status: 200 active, 429 standby,
// 501 not initialised, 503 sealed; 0 with an error when it does not answer.
func (n *Node) Status() (int, error) {
	return healthCode(n.Addr)
}

func newNode(bin, dir, id, storage string, k *keys) (*Node, error) {
	n := &Node{ID: id, bin: bin, dir: dir, storage: storage, keys: k,
		cfgPath: filepath.Join(dir, "vault.hcl"), logPath: filepath.Join(dir, "vault.log")}
	for _, d := range []string{"data", "home", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// configure picks fresh ports and writes the config file.
func (n *Node) configure() error {
	port, err := pickPort()
	if err != nil {
		return err
	}
	tlsClients.Delete(n.Addr) // a previous attempt's
	api := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cluster := net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1))
	n.Addr, n.ClusterAddr = "http://"+api, "https://"+cluster
	listenerTLS := "  tls_disable     = true\n"
	if n.TLS != nil {
		n.Addr = "https://" + api
		listenerTLS = fmt.Sprintf("  tls_cert_file = %q\n  tls_key_file = %q\n  tls_client_ca_file = %q\n  tls_require_and_verify_client_cert = true\n",
			n.TLS.ServerCertFile, n.TLS.ServerKeyFile, n.TLS.CAFile)
		hc, err := n.TLS.httpClient()
		if err != nil {
			return err
		}
		tlsClients.Store(n.Addr, hc)
	}
	storage := fmt.Sprintf("storage \"file\" {\n  path = %q\n}\n", filepath.Join(n.dir, "data"))
	if n.storage == "raft" {
		// performance_multiplier 1: Raft's production timings (elections
		// after about a second), not the default's five times slower ones.
		// Autopilot every second rather than every 10 s: it promotes the
		// joined nodes to voters, and only voters make the cluster survive
		// the loss of its leader.
		storage = fmt.Sprintf(`storage "raft" {
  path                         = %q
  node_id                      = %q
  performance_multiplier       = 1
  autopilot_reconcile_interval = "1s"
  autopilot_update_interval    = "500ms"
}
`, filepath.Join(n.dir, "data"), n.ID)
	}
	cfg := storage + fmt.Sprintf(`listener "tcp" {
  address         = %q
  cluster_address = %q
%s}
api_addr      = %q
cluster_addr  = %q
disable_mlock = true
ui            = false
`, api, cluster, listenerTLS, n.Addr, n.ClusterAddr)
	return os.WriteFile(n.cfgPath, []byte(cfg), 0o600)
}

// spawn starts the process and waits until it answers HTTP at all.
func (n *Node) spawn() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		select {
		case <-n.srv.proc.Done():
		default:
			return fmt.Errorf("%s is already running", n.ID)
		}
	}
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	env := serverEnv(filepath.Join(n.dir, "home"), filepath.Join(n.dir, "tmp"))
	srv, err := launch(n.bin, n.dir, []string{"server", "-config=" + n.cfgPath}, env, logFile)
	if err != nil {
		logFile.Close()
		return err
	}
	srv.Addr, srv.logPath = n.Addr, n.logPath
	tok, key := n.keys.get()
	srv.Token, srv.mask = tok, []string{key}
	if err := srv.waitFor(startTimeout, func(int) bool { return true }); err != nil {
		srv.kill()
		if errors.Is(err, errPortTaken) {
			return err
		}
		return fmt.Errorf("vault %s on %s: %v; log %s:\n%s", n.ID, n.Addr, err, n.logPath, srv.logTail())
	}
	n.srv = srv
	return nil
}

// unseal gives the node the unseal key through sys/unseal and waits until
// it is unsealed (active or standby).
func (n *Node) unseal(ctx context.Context) error {
	_, key := n.keys.get()
	code, out, err := request(ctx, n.Addr, "", http.MethodPut, "sys/unseal", map[string]any{"key": key})
	if err != nil {
		return fmt.Errorf("unseal %s: %w", n.ID, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("unseal %s: status %d: %v", n.ID, code, out["errors"])
	}
	return n.waitStatus(ctx, func(code int) bool { return code == http.StatusOK || code == http.StatusTooManyRequests })
}

// waitStatus polls sys/health until ok accepts its status.
func (n *Node) waitStatus(ctx context.Context, ok func(int) bool) error {
	var last string
	for {
		code, err := healthCode(n.Addr)
		if err == nil && ok(code) {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = strconv.Itoa(code)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for sys/health: %w (last: %s)", n.ID, ctx.Err(), last)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Start starts a stopped node and, once the cluster is initialised,
// unseals it.
func (n *Node) Start() error {
	if err := n.spawn(); err != nil {
		return err
	}
	if _, key := n.keys.get(); key == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return n.unseal(ctx)
}

// Stop stops the node with SIGTERM (SIGKILL after a few seconds).
func (n *Node) Stop() error {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Stop()
}

// Kill stops the node with SIGKILL, as a crash would.
func (n *Node) Kill() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.kill()
	}
}

// Restart stops the node (if running) and starts and unseals it again; the
// data stays.
func (n *Node) Restart() error {
	if err := n.Stop(); err != nil {
		return err
	}
	return n.Start()
}

// Seal seals the running node (sys/seal with the root token).
func (n *Node) Seal(ctx context.Context) error {
	code, out, err := n.Do(ctx, http.MethodPut, "sys/seal", nil)
	if err != nil {
		return err
	}
	if code != http.StatusNoContent && code != http.StatusOK {
		return fmt.Errorf("seal %s: status %d: %v", n.ID, code, out["errors"])
	}
	return nil
}

// Unseal unseals a sealed running node.
func (n *Node) Unseal(ctx context.Context) error { return n.unseal(ctx) }

func (n *Node) logTail() string {
	tok, key := n.keys.get()
	s := &Server{logPath: n.logPath, Token: tok, mask: []string{key}}
	return s.logTail()
}

// startNode configures and spawns a node, on fresh ports after a clash.
func startNode(n *Node) error {
	var err error
	for range portAttempts {
		if err = n.configure(); err != nil {
			return err
		}
		if err = n.spawn(); !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return fmt.Errorf("%s: no free port after %d attempts: %w", n.ID, portAttempts, err)
}

// initialize runs sys/init on n with one key share and keeps the root token
// and the key (never printed: they go from the HTTP answer to memory).
func initialize(ctx context.Context, n *Node) error {
	code, out, err := request(ctx, n.Addr, "", http.MethodPut, "sys/init", map[string]any{
		"secret_shares": 1, "secret_threshold": 1,
	})
	if err != nil {
		return fmt.Errorf("init %s: %w", n.ID, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("init %s: status %d: %v", n.ID, code, out["errors"])
	}
	tok, _ := out["root_token"].(string)
	list, _ := out["keys_base64"].([]any)
	if tok == "" || len(list) != 1 {
		return fmt.Errorf("init %s: answer lacks the root token or the key", n.ID)
	}
	key, _ := list[0].(string)
	n.keys.mu.Lock()
	n.keys.token, n.keys.unseal = tok, key
	n.keys.mu.Unlock()
	n.mu.Lock()
	if n.srv != nil {
		n.srv.Token, n.srv.mask = tok, []string{key}
	}
	n.mu.Unlock()
	return nil
}

// mountKV enables KV version 2 at secret/, as a dev server has it.
func mountKV(ctx context.Context, n *Node) error {
	code, out, err := n.Do(ctx, http.MethodPost, "sys/mounts/secret", map[string]any{
		"type": "kv", "options": map[string]any{"version": "2"},
	})
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("mount secret/ on %s: status %d: %v", n.ID, code, out["errors"])
	}
	return nil
}

// cleanupNodes registers the nodes' shutdown and, on failure, their logs.
func cleanupNodes(tb testing.TB, nodes []*Node) {
	tb.Cleanup(func() {
		for _, n := range nodes {
			if tb.Failed() {
				tb.Logf("vaulttest: %s log (%s), last lines:\n%s", n.ID, n.logPath, n.logTail())
			}
			// SIGKILL: the data is thrown away with the temp dir, and a
			// clean Raft shutdown costs seconds per node.
			n.Kill()
		}
	})
}

// StartPersistent runs a single Vault server with file storage for tb:
// initialised with one key share, unsealed, KV v2 at "secret/", root token
// in Token(). Restart keeps the data (and the root token), which a dev
// server would lose. It is stopped when tb's cleanup runs.
func StartPersistent(tb testing.TB) *Node {
	tb.Helper()
	return startPersistent(tb, false)
}

// StartPersistentTLS is StartPersistent with a TLS listener that requires
// a client certificate; Node.TLS names the CA and client files to use.
func StartPersistentTLS(tb testing.TB) *Node {
	tb.Helper()
	return startPersistent(tb, true)
}

func startPersistent(tb testing.TB, withTLS bool) *Node {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		tb.Fatalf("vaulttest: %v", err)
	}
	n, err := newNode(bin, tb.TempDir(), "persistent", "file", &keys{})
	if err != nil {
		tb.Fatalf("vaulttest: %v", err)
	}
	if withTLS {
		if n.TLS, err = newTLSFiles(n.dir); err != nil {
			tb.Fatalf("vaulttest: %v", err)
		}
		tb.Cleanup(func() { tlsClients.Delete(n.Addr) })
	}
	cleanupNodes(tb, []*Node{n})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := startNode(n); err != nil {
		tb.Fatalf("vaulttest: %v", err)
	}
	if err := initialize(ctx, n); err != nil {
		tb.Fatalf("vaulttest: %v", err)
	}
	if err := n.unseal(ctx); err != nil {
		tb.Fatalf("vaulttest: %v", err)
	}
	if err := n.waitStatus(ctx, func(c int) bool { return c == http.StatusOK }); err != nil {
		tb.Fatalf("vaulttest: %v", err)
	}
	if err := mountKV(ctx, n); err != nil {
		tb.Fatalf("vaulttest: %v", err)
	}
	return n
}

// Cluster is a Vault cluster of Raft nodes on loopback ports, initialised
// with one key share and unsealed, KV v2 at "secret/".
type Cluster struct {
	Nodes []*Node
	keys  *keys
}

// Token returns the cluster's root token.
func (c *Cluster) Token() string { t, _ := c.keys.get(); return t }

// Addrs returns the nodes' API addresses, in node order.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Leader returns the active node: the running node whose sys/health says
// 200. During an election there is none and it returns an error.
func (c *Cluster) Leader() (*Node, error) {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		if code, err := n.Status(); err == nil && code == http.StatusOK {
			return n, nil
		}
	}
	return nil, errors.New("no active node")
}

// WaitLeader waits until a running node is active and returns it.
func (c *Cluster) WaitLeader(ctx context.Context) (*Node, error) {
	for {
		if n, err := c.Leader(); err == nil {
			return n, nil
		}
		select {
		case <-ctx.Done():
			var st []string
			for _, n := range c.Nodes {
				code, err := n.Status()
				st = append(st, fmt.Sprintf("%s running=%t health=%d %v", n.ID, n.Running(), code, err))
			}
			return nil, fmt.Errorf("waiting for an active vault node: %w (%s)", ctx.Err(), strings.Join(st, "; "))
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Do is Server.Do against the active node.
func (c *Cluster) Do(ctx context.Context, method, path string, body any) (int, map[string]any, error) {
	n, err := c.WaitLeader(ctx)
	if err != nil {
		return 0, nil, err
	}
	return n.Do(ctx, method, path, body)
}

// KillLeader kills the active node with SIGKILL and waits until another
// node is active. It returns the killed node, the new leader, and how long
// the election took from the kill.
func (c *Cluster) KillLeader(ctx context.Context) (killed, leader *Node, took time.Duration, err error) {
	killed, err = c.Leader()
	if err != nil {
		return nil, nil, 0, err
	}
	t0 := time.Now()
	killed.Kill()
	leader, err = c.WaitLeader(ctx)
	return killed, leader, time.Since(t0), err
}

// StartCluster runs an n-node Vault Raft cluster for tb (n ≥ 1; 3 survives
// the loss of any one node): the first node is initialised, the others join
// it through sys/storage/raft/join, all are unsealed through sys/unseal, and
// the helper waits until every node is a voter. Stopped when tb's cleanup
// runs.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c, err := startCluster(tb, n)
	if err != nil {
		tb.Fatalf("vaulttest: cluster: %v", err)
	}
	return c
}

func startCluster(tb testing.TB, size int) (*Cluster, error) {
	if size < 1 {
		return nil, errors.New("size must be at least 1")
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	c := &Cluster{keys: &keys{}}
	root := tb.TempDir()
	for i := range size {
		id := "node" + strconv.Itoa(i+1)
		n, err := newNode(bin, filepath.Join(root, id), id, "raft", c.keys)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	cleanupNodes(tb, c.Nodes)
	t0 := time.Now()
	for _, n := range c.Nodes {
		if err := startNode(n); err != nil {
			return nil, err
		}
	}
	tStarted := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	first := c.Nodes[0]
	if err := initialize(ctx, first); err != nil {
		return nil, err
	}
	if err := first.unseal(ctx); err != nil {
		return nil, err
	}
	if err := first.waitStatus(ctx, func(c int) bool { return c == http.StatusOK }); err != nil {
		return nil, err
	}
	// New servers join as non-voters and autopilot promotes them once
	// they have been healthy for server_stabilization_time (10 s by
	// default): shorten it, or a fresh cluster could not survive losing
	// its leader for that long.
	code, out, err := first.Do(ctx, http.MethodPost, "sys/storage/raft/autopilot/configuration", map[string]any{
		"server_stabilization_time": "1s",
	})
	if err != nil || code/100 != 2 {
		return nil, fmt.Errorf("autopilot configuration: status %d, %v %v", code, err, out["errors"])
	}
	for _, n := range c.Nodes[1:] {
		code, out, err := request(ctx, n.Addr, "", http.MethodPost, "sys/storage/raft/join", map[string]any{
			"leader_api_addr": first.Addr,
		})
		if err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("%s: raft join: status %d, %v %v", n.ID, code, err, out["errors"])
		}
		if err := n.unseal(ctx); err != nil {
			return nil, err
		}
	}
	tJoined := time.Now()
	if err := c.waitVoters(ctx, size); err != nil {
		return nil, err
	}
	if err := mountKV(ctx, first); err != nil {
		return nil, err
	}
	tb.Logf("vaulttest: %d-node raft cluster: processes up in %s, initialised and joined in %s, all voters after %s more",
		size, tStarted.Sub(t0).Round(time.Millisecond), tJoined.Sub(tStarted).Round(time.Millisecond), time.Since(tJoined).Round(time.Millisecond))
	return c, nil
}

// waitVoters waits until the Raft configuration lists want voters.
func (c *Cluster) waitVoters(ctx context.Context, want int) error {
	var last string
	for {
		code, out, err := c.Do(ctx, http.MethodGet, "sys/storage/raft/configuration", nil)
		if err == nil && code == http.StatusOK {
			data, _ := out["data"].(map[string]any)
			cfg, _ := data["config"].(map[string]any)
			servers, _ := cfg["servers"].([]any)
			voters := 0
			var states []string
			for _, s := range servers {
				m, _ := s.(map[string]any)
				if v, _ := m["voter"].(bool); v {
					voters++
				}
				states = append(states, fmt.Sprintf("%v voter=%v", m["node_id"], m["voter"]))
			}
			if voters == want {
				return nil
			}
			last = strings.Join(states, ", ")
		} else {
			last = fmt.Sprintf("status %d, %v", code, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d raft voters: %w (last: %s)", want, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
