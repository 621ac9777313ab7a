package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/daemon/policy"
	"github.com/exless/exless/vaultstore"
	"github.com/exless/exless/vaultstore/vaulttest"
)

// The benchmarks below time the daemon's hot path in process, with the real
// Vault and the Exceptionless test server behind the broker: a cached token
// fetch over the socket with a kept-alive connection (routing, decision,
// lookup, audit log, reply) and with a new connection per request (the same
// plus accept and the peer's attestation), under a uid/group policy and
// under a policy with an exe-hash rule. "floor" is a bare net/http server on
// a Unix socket with the same client, for scale: exless minus floor is what
// the daemon adds. bench/ (make bench) measures the real binaries.

// benchDaemon is an in-process daemon serving on a socket.
type benchDaemon struct {
	socket  string
	project string
	broker  *daemon.Broker
}

// startBenchDaemon wires a broker and server like exlessd does, with an
// audit log formatted as exlessd's (text) but discarded, and warms one
// client token.
func startBenchDaemon(b *testing.B, rules []policy.Rule) *benchDaemon {
	b.Helper()
	v := vaulttest.Shared(b)
	ex := exceptionlesstest.NewServer(exceptionlesstest.Config{})
	b.Cleanup(ex.Close)
	ctx := context.Background()
	store, err := vaultstore.New(ctx, vaultstore.Config{
		Address: v.Addr, Token: v.Token, Mount: "secret", Path: "exless/bench-" + strconv.FormatInt(time.Now().UnixNano(), 36),
	})
	if err != nil {
		b.Fatal(err)
	}
	api, err := exceptionless.New(ex.URL, nil)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	broker := daemon.NewBroker(daemon.BrokerConfig{
		Store: store, Upstream: api, Email: ex.Account.Email,
		Password: func() ([]byte, error) { return []byte(ex.Account.Password), nil },
		Host:     "bench", Logger: log,
	})
	if err := broker.Start(ctx); err != nil {
		b.Fatal(err)
	}
	pol, _, err := policy.Compile(rules, nil)
	if err != nil {
		b.Fatal(err)
	}
	// One uid at thousands of requests a second: lift the limits that
	// exist to stop floods, so that the serving path is what is measured.
	srv := daemon.NewServer(daemon.ServerConfig{Broker: broker, Policy: pol, Logger: log,
		Limits: daemon.Limits{MaxConnections: 1 << 20, RequestsPerSecond: 1e9, Burst: 1 << 30}})
	socket, ln := benchListen(b)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Serve: %v", err)
		}
	})
	d := &benchDaemon{socket: socket, project: ex.Account.Projects[0].ID, broker: broker}
	if _, err := daemon.NewClient(socket).Token(ctx, daemon.ScopeClient, d.project); err != nil {
		b.Fatalf("warm the client token: %v", err)
	}
	return d
}

// benchListen listens on a Unix socket in a short temp dir (sun_path holds
// 108 bytes; b.TempDir's paths can be longer).
func benchListen(b *testing.B) (string, net.Listener) {
	b.Helper()
	dir, err := os.MkdirTemp("", "exlb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		b.Fatal(err)
	}
	return socket, ln
}

// benchClient returns a client for socket: one kept-alive connection, or a
// new connection (and so a new attestation) per request.
func benchClient(socket string, keepAlive bool) *http.Client {
	var d net.Dialer
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: !keepAlive,
		MaxIdleConns:      1,
	}}
}

// fetchToken GETs url and checks the reply carries a token.
func fetchToken(b *testing.B, hc *http.Client, url string) {
	resp, err := hc.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var r struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Token == "" {
		b.Fatalf("reply carries no token (%v)", err)
	}
}

// benchRule grants this process client tokens by uid and gid; with exe it
// also names this executable's hash.
func benchRule(b *testing.B, exe bool) []policy.Rule {
	r := policy.Rule{
		Name:  "bench",
		Users: []string{strconv.Itoa(os.Getuid())}, Groups: []string{strconv.Itoa(os.Getgid())},
		Scopes: []string{daemon.ScopeClient}, Projects: []string{policy.AnyProject},
	}
	if !exe {
		return []policy.Rule{r}
	}
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	// A file changed within the last few seconds is hashed afresh on every
	// connection (the daemon's hash cache does not trust it yet); the test
	// binary was just built, so wait that out.
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		b.Fatal(err)
	}
	if wait := time.Until(time.Unix(st.Ctim.Unix()).Add(5 * time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	exeRule := r
	exeRule.Name, exeRule.ExeSHA256 = "bench-exe", []string{hex.EncodeToString(h.Sum(nil))}
	// While the server cannot hash executables, the exe rule never matches
	// and the uid rule after it grants: the benchmark then measures the
	// path a policy with an exe rule takes without the hashing.
	return []policy.Rule{exeRule, r}
}

// BenchmarkTokenFetch measures one cached client-token fetch over the
// socket, end to end in this process.
func BenchmarkTokenFetch(b *testing.B) {
	for _, pol := range []string{"uid", "exe"} {
		b.Run("policy="+pol, func(b *testing.B) {
			d := startBenchDaemon(b, benchRule(b, pol == "exe"))
			url := "http://localhost/v1/token?scope=client&project=" + d.project
			for _, conn := range []string{"keepalive", "new"} {
				b.Run("conn="+conn, func(b *testing.B) {
					hc := benchClient(d.socket, conn == "keepalive")
					defer hc.CloseIdleConnections()
					for b.Loop() {
						fetchToken(b, hc, url)
					}
				})
			}
		})
	}
	b.Run("floor", func(b *testing.B) {
		body := []byte(`{"token":"` + fmt.Sprintf("%047d", 0) + "\"}\n")
		socket, ln := benchListen(b)
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		})}
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
		for _, conn := range []string{"keepalive", "new"} {
			b.Run("conn="+conn, func(b *testing.B) {
				hc := benchClient(socket, conn == "keepalive")
				defer hc.CloseIdleConnections()
				for b.Loop() {
					fetchToken(b, hc, "http://localhost/v1/token")
				}
			})
		}
	})
}

// BenchmarkBrokerClientToken measures the token lookup alone: a client
// token the broker holds in memory, as every cached fetch asks for it.
func BenchmarkBrokerClientToken(b *testing.B) {
	d := startBenchDaemon(b, benchRule(b, false))
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.broker.ClientToken(ctx, d.project); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := d.broker.ClientToken(ctx, d.project); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
