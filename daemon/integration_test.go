package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/daemon/policy"
	"github.com/exless/exless/internal/syncbuf"
	"github.com/exless/exless/internal/testrun"
	"github.com/exless/exless/vaultstore"
	"github.com/exless/exless/vaultstore/vaulttest"
)

func TestMain(m *testing.M) {
	// The test binary doubles as a peer process for tests that need other
	// uids, units or many processes (see runHelper).
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	vaulttest.Main(m)
}

// env is one daemon wired to the shared real Vault (on a path of its own)
// and a fresh Exceptionless test server, serving on a socket.
type env struct {
	t      *testing.T
	vault  *vaulttest.Server
	ex     *exceptionlesstest.Server
	path   string
	store  *vaultstore.Store
	api    *exceptionless.Client
	logs   *syncbuf.Buffer
	socket string
	client *daemon.Client
	broker *daemon.Broker
	srv    *daemon.Server
	pwFile string
	stop   func()
	// nextRules is what POST /v1/reload applies.
	nextRules []policy.Rule
	limits    daemon.Limits
	// editBroker, if set, adjusts the config of the brokers start makes.
	editBroker func(*daemon.BrokerConfig)
}

func randomPath(t *testing.T) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "exless/test-" + hex.EncodeToString(b)
}

func newEnv(t *testing.T, rules []policy.Rule) *env {
	t.Helper()
	return newEnvWith(t, rules, daemon.Limits{})
}

func newEnvWith(t *testing.T, rules []policy.Rule, limits daemon.Limits) *env {
	t.Helper()
	e := &env{t: t, vault: vaulttest.Shared(t), path: randomPath(t), logs: testrun.Buffer(t, "daemon"), limits: limits}
	e.ex = exceptionlesstest.NewServer(exceptionlesstest.Config{})
	t.Cleanup(e.ex.Close)
	e.pwFile = filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(e.pwFile, []byte(e.ex.Account.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.store = e.newStore()
	var err error
	e.api, err = exceptionless.New(e.ex.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.start(rules)
	return e
}

func (e *env) newStore() *vaultstore.Store {
	e.t.Helper()
	s, err := vaultstore.New(context.Background(), vaultstore.Config{
		Address: e.vault.Addr, Token: e.vault.Token, Mount: "secret", Path: e.path,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (e *env) newBroker() *daemon.Broker {
	host, _ := os.Hostname()
	cfg := daemon.BrokerConfig{
		Store: e.store, Upstream: e.api, Email: e.ex.Account.Email,
		Password: func() ([]byte, error) {
			b, err := os.ReadFile(e.pwFile)
			return bytes.TrimSpace(b), err
		},
		Host:   host,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if e.editBroker != nil {
		e.editBroker(&cfg)
	}
	return daemon.NewBroker(cfg)
}

// start runs a daemon (broker + server) on a fresh socket.
func (e *env) start(rules []policy.Rule) {
	e.t.Helper()
	pol, _, err := policy.Compile(rules, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.broker = e.newBroker()
	_ = e.broker.Start(context.Background())
	dir, err := os.MkdirTemp("", "exl")
	if err != nil {
		e.t.Fatal(err)
	}
	e.socket = filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", e.socket)
	if err != nil {
		e.t.Fatal(err)
	}
	var srv *daemon.Server
	srv = daemon.NewServer(daemon.ServerConfig{
		Broker: e.broker, Policy: pol,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Limits: e.limits,
		Reload: func(context.Context) error {
			p, _, err := policy.Compile(e.nextRules, nil)
			if err != nil {
				return err
			}
			srv.SetPolicy(p)
			return nil
		},
	})
	e.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	e.client = daemon.NewClient(e.socket)
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Serve: %v", err)
		}
		os.RemoveAll(dir)
	}
	e.t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
			e.stop = nil
		}
	})
}

func (e *env) restart(rules []policy.Rule) {
	e.stop()
	e.stop = nil
	e.start(rules)
}

// assertNoSecretsLogged fails if any token the servers know appears in logs.
func (e *env) assertNoSecretsLogged(extra ...string) {
	e.t.Helper()
	logs := e.logs.String()
	for _, ti := range e.ex.Tokens() {
		if strings.Contains(logs, ti.ID) {
			e.t.Errorf("a token id appears in the daemon's log")
		}
	}
	for _, s := range append(extra, e.ex.Account.Password, e.vault.Token) {
		if s != "" && strings.Contains(logs, s) {
			e.t.Errorf("a secret appears in the daemon's log")
		}
	}
}

func rootRule() []policy.Rule {
	return []policy.Rule{{
		Name: "me", Users: []string{fmt.Sprint(os.Getuid())},
		Scopes: []string{"user", "client"}, Projects: []string{"*"},
		Actions: []string{"token", "rotate", "status", "reload"},
	}}
}

func (e *env) countCalls(method, prefix string) int {
	n := 0
	for _, c := range e.ex.Calls() {
		if c.Method == method && strings.HasPrefix(c.Path, prefix) {
			n++
		}
	}
	return n
}

func TestUserAndClientTokens(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	project := e.ex.Account.Projects[0].ID

	user, err := e.client.Token(ctx, daemon.ScopeUser, "")
	if err != nil {
		t.Fatalf("user token: %v", err)
	}
	if _, err := e.api.Me(ctx, user.Token); err != nil {
		t.Errorf("the user token does not work upstream: %v", err)
	}
	if got, want := e.ex.LoginAttempts(), 1; got != want {
		t.Errorf("logins = %d, want %d", got, want)
	}

	client, err := e.client.Token(ctx, daemon.ScopeClient, project)
	if err != nil {
		t.Fatalf("client token: %v", err)
	}
	if client.ProjectID != project || client.Scope != daemon.ScopeClient {
		t.Errorf("client reply = %+v", client)
	}
	if _, err := e.api.ProjectConfig(ctx, client.Token); err != nil {
		t.Errorf("the client token does not work upstream: %v", err)
	}
	if client.Token == user.Token {
		t.Error("client token equals the user token")
	}
	again, err := e.client.Token(ctx, daemon.ScopeClient, project)
	if err != nil || again.Token != client.Token {
		t.Errorf("second fetch = %v, %v; want the same token", again.Token == client.Token, err)
	}
	if n := e.countCalls("POST", "/api/v2/projects/"+project+"/tokens"); n != 1 {
		t.Errorf("mints = %d, want 1", n)
	}
	rec, _, err := e.store.Load(ctx, daemon.ClientKey(project))
	if err != nil || rec.Token != client.Token || rec.ProjectID != project || rec.ObtainedBy == "" {
		t.Errorf("vault record = %+v, %v", rec.ProjectID, err)
	}
	urec, _, err := e.store.Load(ctx, daemon.UserKey)
	if err != nil || urec.Token != user.Token || urec.Scope != daemon.ScopeUser {
		t.Errorf("vault user record: scope %q, %v", urec.Scope, err)
	}
	e.assertNoSecretsLogged()
}

func TestRestartReusesTokensWithoutLogin(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	project := e.ex.Account.Projects[1].ID
	user1, err := e.client.Token(ctx, daemon.ScopeUser, "")
	if err != nil {
		t.Fatal(err)
	}
	client1, err := e.client.Token(ctx, daemon.ScopeClient, project)
	if err != nil {
		t.Fatal(err)
	}
	e.restart(rootRule())
	user2, err := e.client.Token(ctx, daemon.ScopeUser, "")
	if err != nil {
		t.Fatal(err)
	}
	client2, err := e.client.Token(ctx, daemon.ScopeClient, project)
	if err != nil {
		t.Fatal(err)
	}
	if user1.Token != user2.Token || client1.Token != client2.Token {
		t.Error("tokens changed across a restart")
	}
	if got := e.ex.LoginAttempts(); got != 1 {
		t.Errorf("logins after restart = %d, want 1", got)
	}
	if n := e.countCalls("POST", "/api/v2/projects/"+project+"/tokens"); n != 1 {
		t.Errorf("mints = %d, want 1", n)
	}
}

func TestRejectedStoredTokenLogsInOnce(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	user1, err := e.client.Token(ctx, daemon.ScopeUser, "")
	if err != nil {
		t.Fatal(err)
	}
	// Someone logged out in the web UI: the shared token is gone upstream.
	if !e.ex.DeleteToken(user1.Token.Reveal()) {
		t.Fatal("could not delete the login token upstream")
	}
	e.restart(rootRule())
	user2, err := e.client.Token(ctx, daemon.ScopeUser, "")
	if err != nil {
		t.Fatal(err)
	}
	if user2.Token == user1.Token {
		t.Error("the daemon still serves the deleted token")
	}
	if got := e.ex.LoginAttempts(); got != 2 {
		t.Errorf("logins = %d, want 2", got)
	}
	rec, _, err := e.store.Load(ctx, daemon.UserKey)
	if err != nil || rec.Token != user2.Token {
		t.Errorf("vault does not hold the new token (%v)", err)
	}
}

func TestMintAfterUserTokenRevokedLogsInAgain(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	user1, err := e.client.Token(ctx, daemon.ScopeUser, "")
	if err != nil {
		t.Fatal(err)
	}
	e.ex.DeleteToken(user1.Token.Reveal())
	c, err := e.client.Token(ctx, daemon.ScopeClient, e.ex.Account.Projects[0].ID)
	if err != nil {
		t.Fatalf("client token after the user token was revoked: %v", err)
	}
	if _, err := e.api.ProjectConfig(ctx, c.Token); err != nil {
		t.Errorf("minted token does not work: %v", err)
	}
	if got := e.ex.LoginAttempts(); got != 2 {
		t.Errorf("logins = %d, want 2", got)
	}
}

func TestConcurrentRequestsMintOnce(t *testing.T) {
	e := newEnv(t, rootRule())
	project := e.ex.Account.Projects[0].ID
	var wg sync.WaitGroup
	toks := make(chan exceptionless.Token, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.client.Token(context.Background(), daemon.ScopeClient, project)
			if err != nil {
				t.Error(err)
				return
			}
			toks <- r.Token
		}()
	}
	wg.Wait()
	close(toks)
	first := <-toks
	for tok := range toks {
		if tok != first {
			t.Fatal("concurrent requests got different tokens")
		}
	}
	if n := e.countCalls("POST", "/api/v2/projects/"+project+"/tokens"); n != 1 {
		t.Errorf("mints = %d, want 1", n)
	}
}

// Two daemons on two hosts share one Vault path and race to mint: both end
// up serving the one stored token, and the loser's surplus key is revoked.
func TestTwoDaemonsShareOneClientToken(t *testing.T) {
	e := newEnv(t, rootRule())
	ctx := context.Background()
	project := e.ex.Account.Projects[0].ID
	if _, err := e.broker.UserToken(ctx); err != nil {
		t.Fatal(err)
	}
	b2 := e.newBroker()
	if err := b2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		r1, r2 daemon.Served
		e1, e2 error
	)
	wg.Add(2)
	go func() { defer wg.Done(); r1, e1 = e.broker.ClientToken(ctx, project) }()
	go func() { defer wg.Done(); r2, e2 = b2.ClientToken(ctx, project) }()
	wg.Wait()
	if e1 != nil || e2 != nil {
		t.Fatalf("ClientToken: %v, %v", e1, e2)
	}
	if r1.Token != r2.Token {
		t.Fatal("the two daemons serve different client tokens")
	}
	live := 0
	for _, ti := range e.ex.Tokens() {
		if ti.ProjectID == project {
			live++
		}
	}
	if live != 1 {
		t.Errorf("live client tokens for the project = %d, want 1 (the surplus one must be revoked)", live)
	}
	if got := e.ex.LoginAttempts(); got != 1 {
		t.Errorf("logins = %d, want 1", got)
	}
}

func TestWrongPasswordHoldsLoginBack(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if err := os.WriteFile(e.pwFile, []byte("not-the-password"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A fresh path: no user token in Vault, so the daemon must log in.
	e.path = randomPath(t)
	e.store = e.newStore()
	before := e.ex.LoginAttempts()
	b := e.newBroker()
	err := b.Start(ctx)
	if !errors.Is(err, daemon.ErrUnavailable) {
		t.Fatalf("Start with a wrong password = %v, want ErrUnavailable", err)
	}
	for range 5 {
		if _, err := b.UserToken(ctx); !errors.Is(err, daemon.ErrUnavailable) {
			t.Fatalf("UserToken = %v, want ErrUnavailable", err)
		}
	}
	if got := e.ex.LoginAttempts() - before; got != 1 {
		t.Errorf("login attempts = %d, want 1: a failed login must not be retried within the quarter hour", got)
	}
	st := b.Status()
	if st.LoggedIn || len(st.DegradedReasons) == 0 || !strings.Contains(strings.Join(st.DegradedReasons, " "), "password") {
		t.Errorf("status = %+v, want degraded with the reason", st)
	}
	e.assertNoSecretsLogged("not-the-password")
}

func TestDeniedRequestsSayWhoWasSeen(t *testing.T) {
	e := newEnv(t, []policy.Rule{{Name: "someone-else", Users: []string{"4242"}, Scopes: []string{"user"}}})
	ctx := context.Background()
	_, err := e.client.Token(ctx, daemon.ScopeUser, "")
	var denied *daemon.AccessDeniedError
	if !errors.As(err, &denied) {
		t.Fatalf("Token = %v, want AccessDeniedError", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("uid %d", os.Getuid())) || !strings.Contains(err.Error(), "no rule grants") {
		t.Errorf("denial %q does not say who was seen and that no rule grants it", err)
	}
	if _, err := e.client.Status(ctx); !errors.As(err, &denied) {
		t.Errorf("Status for a peer no rule matches = %v, want denied", err)
	}
	w, err := e.client.WhoAmI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w.UID != uint32(os.Getuid()) || int(w.PID) != os.Getpid() || len(w.Grants) != 0 || w.CanStatus {
		t.Errorf("whoami = %+v", w)
	}
	if !strings.Contains(e.logs.String(), "decision=deny") {
		t.Error("the denial was not logged")
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, rootRule())
	tests := []struct {
		name, request string
		wantStatus    string
	}{
		{"bad host", "GET /v1/status HTTP/1.1\r\nHost: evil.example\r\n\r\n", "400"},
		{"origin", "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil.example\r\n\r\n", "403"},
		{"referer", "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nReferer: http://evil.example/\r\n\r\n", "403"},
		{"post", "POST /v1/token?scope=user HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n", "405"},
		{"unknown path", "GET /v2/x HTTP/1.1\r\nHost: localhost\r\n\r\n", "404"},
		{"bad scope", "GET /v1/token?scope=admin HTTP/1.1\r\nHost: localhost\r\n\r\n", "400"},
		{"client without project", "GET /v1/token?scope=client HTTP/1.1\r\nHost: localhost\r\n\r\n", "400"},
		{"bad project", "GET /v1/token?scope=client&project=x HTTP/1.1\r\nHost: localhost\r\n\r\n", "400"},
		{"unknown project name", "GET /v1/token?scope=client&project=../x HTTP/1.1\r\nHost: localhost\r\n\r\n", "404"},
		{"user with project", "GET /v1/token?scope=user&project=537650f3b77efe23a47914f4 HTTP/1.1\r\nHost: localhost\r\n\r\n", "400"},
		{"status ok", "GET /v1/status HTTP/1.1\r\nHost: exlessd\r\n\r\n", "200"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("unix", e.socket)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte(tc.request)); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if f := strings.Fields(line); len(f) < 2 || f[1] != tc.wantStatus {
				t.Errorf("status line %q, want %s", strings.TrimSpace(line), tc.wantStatus)
			}
		})
	}
}

func TestUnknownProjectIsNotFound(t *testing.T) {
	e := newEnv(t, rootRule())
	_, err := e.client.Token(context.Background(), daemon.ScopeClient, "0123456789abcdef01234567")
	var apiErr *daemon.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Fatalf("Token(unknown project) = %v, want a 404", err)
	}
}

func TestVaultUnreachableIsUnavailable(t *testing.T) {
	e := newEnv(t, rootRule())
	// Point a second daemon at a Vault that is not there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dead, err := vaultstore.New(context.Background(), vaultstore.Config{
		Address: "http://" + addr, Token: "unused", Mount: "secret", Path: e.path,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.store = dead
	logins := e.ex.LoginAttempts()
	e.restart(rootRule())
	_, err = e.client.Token(context.Background(), daemon.ScopeUser, "")
	var apiErr *daemon.APIError
	if !errors.As(err, &apiErr) || !apiErr.Unavailable() {
		t.Fatalf("Token with Vault down = %v, want 503", err)
	}
	st, err := e.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "degraded" || st.VaultReachable {
		t.Errorf("status = %+v, want degraded, vault unreachable", st)
	}
	if got := e.ex.LoginAttempts() - logins; got != 0 {
		t.Errorf("logins = %d, want 0: without Vault the daemon must not log in", got)
	}
}

// Vault answers a read under a mount that does not exist like a missing key.
// The daemon must not take that for "no token yet" and spend a login.
func TestMissingMountDoesNotLogIn(t *testing.T) {
	e := newEnv(t, rootRule())
	logins := e.ex.LoginAttempts()
	s, err := vaultstore.New(context.Background(), vaultstore.Config{
		Address: e.vault.Addr, Token: e.vault.Token, Mount: "nosuchmount", Path: e.path,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.store = s
	b := e.newBroker()
	if err := b.Start(context.Background()); !errors.Is(err, daemon.ErrUnavailable) {
		t.Fatalf("Start with a missing mount = %v, want ErrUnavailable", err)
	}
	if got := e.ex.LoginAttempts() - logins; got != 0 {
		t.Errorf("logins = %d, want 0", got)
	}
	if st := b.Status(); st.VaultReachable || len(st.DegradedReasons) == 0 {
		t.Errorf("status = %+v, want vault trouble reported", st)
	}
}

func TestProjectsByOrganizationAndName(t *testing.T) {
	me := fmt.Sprint(os.Getuid())
	e := newEnv(t, []policy.Rule{
		{Name: "admin", Users: []string{me}, Scopes: []string{"user"}},
		{Name: "web-only", Users: []string{me}, Scopes: []string{"client"}, Projects: []string{"Acme/web"}},
	})
	ctx := context.Background()
	web, api := e.ex.Account.Projects[0], e.ex.Account.Projects[1]
	if web.Name != "web" || api.Name != "api" {
		t.Fatalf("seeded projects = %+v", e.ex.Account.Projects)
	}
	byName, err := e.client.Token(ctx, daemon.ScopeClient, "Acme/web")
	if err != nil {
		t.Fatalf("token for Acme/web: %v", err)
	}
	if byName.ProjectID != web.ID {
		t.Errorf("Acme/web resolved to %s, want %s", byName.ProjectID, web.ID)
	}
	byID, err := e.client.Token(ctx, daemon.ScopeClient, web.ID)
	if err != nil || byID.Token != byName.Token {
		t.Fatalf("token by id: %v (same token: %v)", err, byID.Token == byName.Token)
	}
	var denied *daemon.AccessDeniedError
	if _, err := e.client.Token(ctx, daemon.ScopeClient, api.ID); !errors.As(err, &denied) || !strings.Contains(err.Error(), "Acme/api") {
		t.Errorf("token for api = %v, want a denial naming Acme/api", err)
	}
	var apiErr *daemon.APIError
	if _, err := e.client.Token(ctx, daemon.ScopeClient, "Acme/nope"); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Errorf("token for Acme/nope = %v, want 404", err)
	}
}

func TestReloadAppliesNewPolicyAndKeepsOldOnError(t *testing.T) {
	me := fmt.Sprint(os.Getuid())
	admin := policy.Rule{Name: "admin", Users: []string{me}, Actions: []string{"reload", "status"}}
	e := newEnv(t, []policy.Rule{admin})
	ctx := context.Background()
	var denied *daemon.AccessDeniedError
	if _, err := e.client.Token(ctx, daemon.ScopeUser, ""); !errors.As(err, &denied) {
		t.Fatalf("before reload: %v, want denied", err)
	}
	// A bad policy: rejected with the reason, the old one stays.
	e.nextRules = []policy.Rule{admin, {Name: "bad", Users: []string{me}, Scopes: []string{"admin"}}}
	err := e.client.Reload(ctx)
	var apiErr *daemon.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || !strings.Contains(err.Error(), "bad") || !strings.Contains(err.Error(), "old one stays") {
		t.Fatalf("reload of a bad policy = %v, want 400 naming the rule", err)
	}
	if _, err := e.client.Status(ctx); err != nil {
		t.Fatalf("after a rejected reload the old policy must stay: %v", err)
	}
	// A good policy takes effect for the next request.
	e.nextRules = []policy.Rule{admin, {Name: "user", Users: []string{me}, Scopes: []string{"user"}}}
	if err := e.client.Reload(ctx); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if _, err := e.client.Token(ctx, daemon.ScopeUser, ""); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	// A peer without the reload action cannot reload.
	e.nextRules = []policy.Rule{{Name: "user", Users: []string{me}, Scopes: []string{"user"}}}
	if err := e.client.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Reload(ctx); !errors.As(err, &denied) {
		t.Fatalf("reload without the action = %v, want denied", err)
	}
}

func TestExplainAndWhoAmI(t *testing.T) {
	me := fmt.Sprint(os.Getuid())
	e := newEnv(t, []policy.Rule{
		{Name: "ops", Users: []string{me}, Actions: []string{"status"}},
		{Name: "deploy", Units: []string{"deploy.service"}, Scopes: []string{"client"}, Projects: []string{"Acme/web"}},
	})
	ctx := context.Background()
	web := e.ex.Account.Projects[0].ID
	ex, err := e.client.Explain(ctx, url.Values{"uid": {"4242"}, "unit": {"deploy.service"}, "scope": {"client"}, "project": {web}})
	if err != nil {
		t.Fatal(err)
	}
	if !ex.Allow || ex.Rule != "deploy" {
		t.Errorf("explain deploy.service = %+v, want allowed by deploy", ex)
	}
	ex, err = e.client.Explain(ctx, url.Values{"uid": {"4242"}, "unit": {"user@4242.service/deploy.service"}, "scope": {"client"}, "project": {web}})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Allow || len(ex.Rules) != 2 || !strings.Contains(ex.Rules[1].Why, "units:") {
		t.Errorf("explain user unit = %+v, want denied with a units reason", ex)
	}
	w, err := e.client.WhoAmI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !w.CanStatus || len(w.Grants) != 1 || w.Grants[0].Rule != "ops" || w.Pin == "" || w.ExeUnknown == "" {
		t.Errorf("whoami = %+v", w)
	}
}

func TestAuditRecordsFingerprintNotToken(t *testing.T) {
	e := newEnv(t, rootRule())
	tok, err := e.client.Token(context.Background(), daemon.ScopeUser, "")
	if err != nil {
		t.Fatal(err)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "token_fp="+daemon.Fingerprint(tok.Token)) {
		t.Error("the audit record lacks the token fingerprint")
	}
	for _, want := range []string{"decision=allow", "rule=me", "scope=user", fmt.Sprintf("uid=%d", os.Getuid()), "pin="} {
		if !strings.Contains(logs, want) {
			t.Errorf("the audit record lacks %s", want)
		}
	}
	e.assertNoSecretsLogged()
}
