package vaultstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/vaultstore"
	"github.com/exless/exless/vaultstore/vaulttest"
)

// vaultDoer is what the helpers need from a dev server, a persistent node
// or a cluster: a root-token request.
type vaultDoer interface {
	Do(ctx context.Context, method, path string, body any) (int, map[string]any, error)
}

// must sends one root request and fails the test unless Vault answers 2xx.
func must(t *testing.T, v vaultDoer, method, path string, body any) map[string]any {
	t.Helper()
	code, out, err := v.Do(t.Context(), method, path, body)
	if err != nil || code/100 != 2 {
		t.Fatalf("%s %s: status %d, %v, %v", method, path, code, err, out["errors"])
	}
	return out
}

// slug turns the test name into a Vault-friendly name.
func slug(t *testing.T) string {
	return strings.ToLower(strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()))
}

// storePolicy writes a policy that allows what the store does under path:
// check-and-set records and set cas_required on their metadata.
func storePolicy(t *testing.T, v vaultDoer, name, path string) {
	t.Helper()
	hcl := fmt.Sprintf(`path "secret/data/%[1]s/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/%[1]s/*" { capabilities = ["create", "read", "update"] }
`, path)
	must(t, v, http.MethodPut, "sys/policies/acl/"+name, map[string]any{"policy": hcl})
}

// appRole enables AppRole at mount, creates a role with the store policy
// and the given token TTLs, and writes its role_id and secret_id into dir as
// the files "role-id" and "secret-id".
func appRole(t *testing.T, v vaultDoer, mount, path, dir string, ttl, maxTTL string) {
	t.Helper()
	must(t, v, http.MethodPost, "sys/auth/"+mount, map[string]any{"type": "approle"})
	storePolicy(t, v, mount, path)
	must(t, v, http.MethodPost, "auth/"+mount+"/role/exless", map[string]any{
		"token_policies": []string{mount},
		"token_ttl":      ttl,
		"token_max_ttl":  maxTTL,
	})
	out := must(t, v, http.MethodGet, "auth/"+mount+"/role/exless/role-id", nil)
	roleID, _ := out["data"].(map[string]any)["role_id"].(string)
	out = must(t, v, http.MethodPost, "auth/"+mount+"/role/exless/secret-id", nil)
	secretID, _ := out["data"].(map[string]any)["secret_id"].(string)
	if roleID == "" || secretID == "" {
		t.Fatal("approle: no role_id or secret_id in Vault's answers")
	}
	// Newline-terminated, as `systemd-creds` and editors leave them.
	writeFile(t, filepath.Join(dir, "role-id"), roleID+"\n")
	writeFile(t, filepath.Join(dir, "secret-id"), secretID+"\n")
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes content to path through a new file renamed over it,
// as Vault Agent's file sink does: a new inode.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// childToken creates a token with the given policies and options.
func childToken(t *testing.T, v vaultDoer, opts map[string]any) string {
	t.Helper()
	out := must(t, v, http.MethodPost, "auth/token/create", opts)
	tok, _ := out["auth"].(map[string]any)["client_token"].(string)
	if tok == "" {
		t.Fatal("token create: no client_token")
	}
	return tok
}

// revoke revokes a token; the token goes in the request body, never a URL.
func revoke(t *testing.T, v vaultDoer, tok string) {
	t.Helper()
	must(t, v, http.MethodPost, "auth/token/revoke", map[string]any{"token": tok})
}

// runStore runs s.Run until the test ends.
func runStore(t *testing.T, s *vaultstore.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5 s of its context ending")
		}
	})
}

// saver writes new versions of the user record, check-and-set, as a daemon
// would, and counts what happened.
type saver struct {
	t       *testing.T
	s       *vaultstore.Store
	version int
	ok      int
	failed  []error
}

func (w *saver) save(by string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := w.s.Save(ctx, daemon.UserKey, record(by), w.version)
	if err != nil {
		w.failed = append(w.failed, err)
		return err
	}
	w.version = v
	w.ok++
	got, gv, err := w.s.Load(ctx, daemon.UserKey)
	if err != nil || gv != v || got.ObtainedBy != by {
		err = fmt.Errorf("load after save: %q at %d, %v; want %q at %d", got.ObtainedBy, gv, err, by, v)
		w.failed = append(w.failed, err)
		return err
	}
	return nil
}

// noSecrets fails if text holds any of secrets.
func noSecrets(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s holds a secret (%d bytes of text)", what, len(text))
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestCredentialPath(t *testing.T) {
	for _, tc := range []struct {
		name, dir, want string
	}{
		{"secret-id", "/run/credentials/exlessd.service", "/run/credentials/exlessd.service/secret-id"},
		{"secret-id", "", "secret-id"},
		{"/etc/exless/secret-id", "/run/credentials/x", "/etc/exless/secret-id"},
		{"sub/secret-id", "/run/credentials/x", "sub/secret-id"},
		{"..", "/run/credentials/x", ".."},
		{"", "/run/credentials/x", ""},
	} {
		t.Setenv("CREDENTIALS_DIRECTORY", tc.dir)
		if got := vaultstore.CredentialPath(tc.name); got != tc.want {
			t.Errorf("CredentialPath(%q) with CREDENTIALS_DIRECTORY=%q = %q, want %q", tc.name, tc.dir, got, tc.want)
		}
	}
}

// TestAppRoleLoginRenewRelogin: AppRole credentials from a systemd
// credentials directory; the token (TTL 2 s, max 5 s) is renewed by Run's
// lifetime watcher and replaced by a new login before its max TTL, while a
// writer keeps saving without a single failure.
func TestAppRoleLoginRenewRelogin(t *testing.T) {
	srv := vaulttest.Shared(t)
	t.Setenv("VAULT_TOKEN", "")
	dir := t.TempDir()
	mount := "approle-" + slug(t)
	appRole(t, srv, mount, testPath(t), dir, "2s", "5s")
	t.Setenv("CREDENTIALS_DIRECTORY", dir)

	s, err := vaultstore.New(t.Context(), vaultstore.Config{
		Address: srv.Addr, Path: testPath(t), Timeout: 10 * time.Second,
		AppRole: &vaultstore.AppRoleConfig{RoleIDFile: "role-id", SecretIDFile: "secret-id", MountPath: mount},
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Auth(); st.Method != vaultstore.AuthAppRole || st.OK || st.Logins != 0 {
		t.Errorf("before first use: %+v, want approle, not OK, no login", st)
	}
	// No Run yet: the first request logs in on demand.
	w := &saver{t: t, s: s}
	if err := w.save("first"); err != nil {
		t.Fatalf("first save (login on demand): %v", err)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping with an approle token: %v", err)
	}
	if st := s.Auth(); !st.OK || st.Logins != 1 || st.ExpiresAt.IsZero() {
		t.Errorf("after first use: %+v, want OK, 1 login, an expiry", st)
	}

	runStore(t, s)
	// 9 s: past the first token's max TTL (5 s) and well into the second's.
	deadline := time.Now().Add(9 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		_ = w.save(fmt.Sprintf("w%d", i))
		time.Sleep(100 * time.Millisecond)
	}
	st := s.Auth()
	t.Logf("after 9 s: %d saves, %d failed; auth %+v", w.ok, len(w.failed), st)
	for _, err := range w.failed {
		t.Errorf("save failed: %v", err)
	}
	if st.Renewals < 1 || st.Logins < 2 || !st.OK {
		t.Errorf("auth after 9 s = %+v, want ≥1 renewal, ≥2 logins (a re-login before max TTL), OK", st)
	}
	secrets := []string{readFile(t, filepath.Join(dir, "secret-id")), readFile(t, filepath.Join(dir, "role-id"))}
	noSecrets(t, "auth reason", st.Reason, secrets...)
}

// TestAppRoleBadSecretID: a refused login is reported without the secret,
// is not retried before its backoff, and a fixed secret_id file is picked up
// without a restart.
func TestAppRoleBadSecretID(t *testing.T) {
	srv := vaulttest.Shared(t)
	dir := t.TempDir()
	mount := "approle-" + slug(t)
	appRole(t, srv, mount, testPath(t), dir, "1m", "1h")
	good := readFile(t, filepath.Join(dir, "secret-id"))
	const bad = "3f1d2c7e-bad0-4bad-9bad-0123456789ab"
	writeFile(t, filepath.Join(dir, "secret-id"), bad)

	s, err := vaultstore.New(t.Context(), vaultstore.Config{
		Address: srv.Addr, Path: testPath(t),
		AppRole: &vaultstore.AppRoleConfig{
			RoleIDFile: filepath.Join(dir, "role-id"), SecretIDFile: filepath.Join(dir, "secret-id"), MountPath: mount,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Load(t.Context(), daemon.UserKey)
	if err == nil || !strings.Contains(err.Error(), "approle login") || errors.Is(err, daemon.ErrNotFound) {
		t.Fatalf("Load with a bad secret_id = %v, want an approle login error", err)
	}
	t.Logf("Load: %v", err)
	noSecrets(t, "error", err.Error(), bad, good)
	ok, reason := s.AuthStatus()
	if ok || !strings.Contains(reason, "approle login") {
		t.Errorf("AuthStatus = %t, %q; want false and the login failure", ok, reason)
	}
	noSecrets(t, "auth reason", reason, bad, good)

	// Within the backoff the store answers at once, without Vault.
	t0 := time.Now()
	if _, err := s.Save(t.Context(), daemon.UserKey, record("x"), 0); err == nil {
		t.Fatal("Save during the login backoff succeeded")
	}
	if d := time.Since(t0); d > 50*time.Millisecond {
		t.Errorf("Save during the login backoff took %s, want an immediate answer", d)
	}

	writeFile(t, filepath.Join(dir, "secret-id"), good+"\n")
	var v int
	for range 30 { // the backoff after one failure is about a second
		if v, err = s.Save(t.Context(), daemon.UserKey, record("x"), 0); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || v != 1 {
		t.Fatalf("Save after fixing the secret_id file = %d, %v", v, err)
	}
	if st := s.Auth(); !st.OK || st.Logins != 1 {
		t.Errorf("auth = %+v, want OK after 1 login", st)
	}
}

// TestAppRoleTokenRevoked: Vault revokes the store's token; the next request
// notices (403, lookup-self 403), logs in again and succeeds, within the
// same call.
func TestAppRoleTokenRevoked(t *testing.T) {
	srv := vaulttest.Shared(t)
	dir := t.TempDir()
	mount := "approle-" + slug(t)
	appRole(t, srv, mount, testPath(t), dir, "1h", "2h")
	s, err := vaultstore.New(t.Context(), vaultstore.Config{
		Address: srv.Addr, Path: testPath(t),
		AppRole: &vaultstore.AppRoleConfig{
			RoleIDFile: filepath.Join(dir, "role-id"), SecretIDFile: filepath.Join(dir, "secret-id"), MountPath: mount,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &saver{t: t, s: s}
	if err := w.save("before"); err != nil {
		t.Fatal(err)
	}
	// Every token this auth mount issued, revoked at once.
	must(t, srv, http.MethodPut, "sys/leases/revoke-prefix/auth/"+mount, nil)
	if err := w.save("after"); err != nil {
		t.Fatalf("save after the token was revoked: %v", err)
	}
	if st := s.Auth(); st.Logins != 2 || !st.OK {
		t.Errorf("auth = %+v, want 2 logins, OK", st)
	}

	// A policy refusal is not a dead token: no new login for it.
	bare, err := vaultstore.New(t.Context(), vaultstore.Config{
		Address: srv.Addr, Path: testPath(t) + "-not-allowed",
		AppRole: &vaultstore.AppRoleConfig{
			RoleIDFile: filepath.Join(dir, "role-id"), SecretIDFile: filepath.Join(dir, "secret-id"), MountPath: mount,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bare.Save(t.Context(), daemon.UserKey, record("x"), 0)
	var ve *vaultstore.Error
	if !errors.As(err, &ve) || ve.StatusCode != 403 {
		t.Fatalf("Save outside the policy = %v, want a 403", err)
	}
	if st := bare.Auth(); st.Logins != 1 || !st.OK {
		t.Errorf("auth after a policy refusal = %+v, want 1 login and OK (the token is fine)", st)
	}
	if err := bare.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), "lacks") {
		t.Errorf("Ping with a policy that does not cover the path = %v, want the missing capabilities named", err)
	} else {
		t.Logf("Ping: %v", err)
	}
}

// TestTokenFileRotation: a Vault Agent sink is rewritten (rename, then in
// place) and the old token revoked each time: the store follows on the next
// use, and Run picks the file up even when idle.
func TestTokenFileRotation(t *testing.T) {
	srv := vaulttest.Shared(t)
	storePolicy(t, srv, slug(t), testPath(t))
	newTok := func() string {
		return childToken(t, srv, map[string]any{"policies": []string{slug(t)}, "ttl": "1h", "no_parent": true})
	}
	file := filepath.Join(t.TempDir(), "agent-sink")
	tokA := newTok()
	writeFile(t, file, tokA)
	s, err := vaultstore.New(t.Context(), vaultstore.Config{Address: srv.Addr, TokenFile: file, Path: testPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	runStore(t, s)
	w := &saver{t: t, s: s}
	if err := w.save("a"); err != nil {
		t.Fatal(err)
	}

	tokB := newTok()
	replaceFile(t, file, tokB)
	revoke(t, srv, tokA)
	if err := w.save("b"); err != nil {
		t.Fatalf("save after the sink was replaced and the old token revoked: %v", err)
	}

	tokC := newTok()
	writeFile(t, file, tokC) // in place: same inode
	revoke(t, srv, tokB)
	if err := w.save("c"); err != nil {
		t.Fatalf("save after the sink was rewritten in place: %v", err)
	}
	if st := s.Auth(); st.Reloads != 2 || !st.OK || st.Method != vaultstore.AuthTokenFile {
		t.Errorf("auth = %+v, want 2 reloads, OK", st)
	}

	// Revoked with no new file yet: refused, said so, and not asked again.
	revoke(t, srv, tokC)
	err = w.save("d")
	var ve *vaultstore.Error
	if !errors.As(err, &ve) || ve.StatusCode != 403 {
		t.Fatalf("save with a revoked token = %v, want a 403", err)
	}
	noSecrets(t, "error", err.Error(), tokA, tokB, tokC)
	w.failed = nil
	if ok, reason := s.AuthStatus(); ok || !strings.Contains(reason, "refused") {
		t.Errorf("AuthStatus = %t, %q; want false, refused", ok, reason)
	}
	// The agent writes a new token; Run notices within its poll interval,
	// before anyone uses the store.
	tokD := newTok()
	replaceFile(t, file, tokD)
	deadline := time.Now().Add(3 * time.Second)
	for s.Auth().Reloads < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := s.Auth(); st.Reloads != 3 {
		t.Errorf("idle store: reloads %d after the file changed, want 3 (Run polls the file)", st.Reloads)
	}
	if err := w.save("e"); err != nil {
		t.Fatalf("save with the new token: %v", err)
	}
}

// TestTokenFileAppearsLater: exlessd may start before Vault Agent writes its
// sink; the store starts, says why it cannot work, and works once it can.
func TestTokenFileAppearsLater(t *testing.T) {
	srv := vaulttest.Shared(t)
	t.Setenv("VAULT_TOKEN", srv.Token) // not used: the file was asked for
	file := filepath.Join(t.TempDir(), "agent-sink")
	s, err := vaultstore.New(t.Context(), vaultstore.Config{Address: srv.Addr, TokenFile: file, Path: testPath(t)})
	if err != nil {
		t.Fatalf("New before the sink exists: %v", err)
	}
	_, err = s.Save(t.Context(), daemon.UserKey, record("x"), 0)
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Save before the sink exists = %v, want no such file", err)
	}
	if ok, reason := s.AuthStatus(); ok || !strings.Contains(reason, "no such file") {
		t.Errorf("AuthStatus = %t, %q", ok, reason)
	}
	writeFile(t, file, srv.Token)
	if _, err := s.Save(t.Context(), daemon.UserKey, record("x"), 0); err != nil {
		t.Fatalf("Save once the sink exists: %v", err)
	}
	if ok, reason := s.AuthStatus(); !ok {
		t.Errorf("AuthStatus = false, %q", reason)
	}
}

// TestInlineTokenRenewed: Run renews a short-lived renewable token past its
// TTL; a token with a max TTL is reported expired once past it.
func TestInlineTokenRenewed(t *testing.T) {
	srv := vaulttest.Shared(t)
	storePolicy(t, srv, slug(t), testPath(t))
	tok := childToken(t, srv, map[string]any{"policies": []string{slug(t)}, "ttl": "2s", "renewable": true})
	capped := childToken(t, srv, map[string]any{"policies": []string{slug(t)}, "ttl": "2s", "explicit_max_ttl": "3s"})

	s, err := vaultstore.New(t.Context(), vaultstore.Config{Address: srv.Addr, Token: tok, Path: testPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := vaultstore.New(t.Context(), vaultstore.Config{Address: srv.Addr, Token: capped, Path: testPath(t) + "/capped"})
	if err != nil {
		t.Fatal(err)
	}
	runStore(t, s)
	runStore(t, c)
	time.Sleep(5 * time.Second)
	w := &saver{t: t, s: s}
	if err := w.save("renewed"); err != nil {
		t.Fatalf("save 5 s into a 2 s token: %v", err)
	}
	if st := s.Auth(); st.Renewals < 2 || !st.OK {
		t.Errorf("auth = %+v, want ≥2 renewals, OK", st)
	}
	st := c.Auth()
	if st.OK || !strings.Contains(st.Reason, "expired") {
		t.Errorf("auth of a token past its max TTL = %+v, want not OK, expired", st)
	}
	_, err = c.Save(t.Context(), daemon.UserKey, record("x"), 0)
	var ve *vaultstore.Error
	if !errors.As(err, &ve) || ve.StatusCode != 403 {
		t.Errorf("Save with the expired token = %v, want a 403", err)
	}
	noSecrets(t, "reason and error", st.Reason+fmt.Sprint(err), tok, capped)
}

// TestRunOnce: a second concurrent Run is refused.
func TestRunOnce(t *testing.T) {
	srv := vaulttest.Shared(t)
	s := newStore(t, srv)
	runStore(t, s)
	time.Sleep(50 * time.Millisecond)
	if err := s.Run(t.Context()); err == nil {
		t.Error("second Run = nil, want an error")
	}
}

// TestConcurrentUseDuringTokenSwap: many callers while the token changes
// underneath (for the race detector).
func TestConcurrentUseDuringTokenSwap(t *testing.T) {
	srv := vaulttest.Shared(t)
	file := filepath.Join(t.TempDir(), "sink")
	storePolicy(t, srv, slug(t), testPath(t))
	writeFile(t, file, childToken(t, srv, map[string]any{"policies": []string{slug(t)}}))
	s, err := vaultstore.New(t.Context(), vaultstore.Config{Address: srv.Addr, TokenFile: file, Path: testPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	runStore(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				if _, _, err := s.Load(t.Context(), daemon.ClientKey(fmt.Sprintf("p%d-%d", i, j))); !errors.Is(err, daemon.ErrNotFound) {
					errs <- err
				}
			}
		})
	}
	for range 5 {
		replaceFile(t, file, childToken(t, srv, map[string]any{"policies": []string{slug(t)}}))
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Load during token swaps: %v", err)
	}
}
