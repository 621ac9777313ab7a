package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/exless/exless/daemon"
)

// exlessd is a running exlessd binary on a socket of its own.
type exlessd struct {
	*proc
	Socket string
	Client *daemon.Client
}

// daemonSetup is what every exlessd of a run shares: the binary, Vault and
// the Exceptionless test server, and the files holding their secrets.
type daemonSetup struct {
	bin       string
	dir       string
	vaultAddr string
	vaultPath string // records live under secret/<vaultPath>
	tokenFile string // the Vault token (0600)
	exURL     string
	email     string
	pwFile    string // the Exceptionless password (0600)
	mask      []string
	env       []string // added to exlessd's environment
}

// rule is one policy rule as HCL.
type rule struct {
	name      string
	users     []string
	groups    []string
	exeSHA256 []string
}

func hclList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func (r rule) hcl() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rule %q {\n", r.name)
	if len(r.users) > 0 {
		fmt.Fprintf(&b, "  users      = %s\n", hclList(r.users))
	}
	if len(r.groups) > 0 {
		fmt.Fprintf(&b, "  groups     = %s\n", hclList(r.groups))
	}
	if len(r.exeSHA256) > 0 {
		fmt.Fprintf(&b, "  exe_sha256 = %s\n", hclList(r.exeSHA256))
	}
	b.WriteString("  scopes     = [\"client\"]\n  projects   = [\"*\"]\n  actions    = [\"token\", \"status\"]\n}\n")
	return b.String()
}

// start writes a config named name with rules and runs exlessd on it, at
// the default log level with its log in a file (as journald would keep it),
// and waits until it answers on its socket.
func (s *daemonSetup) start(ctx context.Context, name string, rules ...rule) (*exlessd, error) {
	socket := filepath.Join(s.dir, name+".sock")
	_ = os.Remove(socket)
	var rb strings.Builder
	for _, r := range rules {
		rb.WriteString(r.hcl())
	}
	conf := fmt.Sprintf(`socket = %q
exceptionless {
  url           = %q
  email         = %q
  password_file = %q
}
vault {
  address    = %q
  token_file = %q
  path       = %q
}
# The load generator is one uid at tens of thousands of requests a second:
# lift the per-uid rate limit and the connection cap, which exist to stop
# floods, so that what is measured is the serving path.
limits {
  max_connections         = 100000
  max_connections_per_uid = 100000
  requests_per_second     = 1e9
  burst                   = 1000000
}
%s`, socket, s.exURL, s.email, s.pwFile, s.vaultAddr, s.tokenFile, s.vaultPath, rb.String())
	confPath := filepath.Join(s.dir, name+".hcl")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc("exlessd ("+name+")", s.bin, []string{"--config", confPath},
		childEnv(s.dir, s.env...), s.dir, filepath.Join(s.dir, name+".log"), s.mask...)
	if err != nil {
		return nil, err
	}
	d := &exlessd{proc: p, Socket: socket, Client: daemon.NewClient(socket)}
	if err := d.waitReady(ctx, 60*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return d, nil
}

// waitReady polls whoami (which any peer may ask) until the daemon serves.
func (d *exlessd) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if d.Exited() {
			return fmt.Errorf("%s exited (%v); last log lines:\n%s", d.name, d.Err(), d.tail())
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := d.Client.WhoAmI(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v; last log lines:\n%s", d.name, timeout, err, d.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// warm fetches project's client token once, so the daemon holds it (minted
// and stored in Vault on first use).
func (d *exlessd) warm(ctx context.Context, project string) error {
	var last error
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := d.Client.Token(cctx, daemon.ScopeClient, project)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		var ae *daemon.AccessDeniedError
		if errors.As(err, &ae) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s: warm the client token: %v", d.name, last)
}
