package vaultstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/vaultstore"
	"github.com/exless/exless/vaultstore/vaulttest"
)

var _ daemon.TokenStore = (*vaultstore.Store)(nil)

// All tests share one dev server (stopping one takes ~1.5 s); each test
// keeps its records under its own path.
func TestMain(m *testing.M) { vaulttest.Main(m) }

const recToken = "rec-secret-token-9b2f41d7"

// testPath is a KV path of the test's own.
func testPath(t *testing.T) string {
	return "exless-test/" + strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
}

func newStore(t *testing.T, srv *vaulttest.Server) *vaultstore.Store {
	t.Helper()
	s, err := vaultstore.New(t.Context(), vaultstore.Config{
		Address: srv.Addr, Token: srv.Token, Path: testPath(t), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// apiClient is a root client for arranging state the store itself never
// creates (deletes, foreign records).
func apiClient(t *testing.T, srv *vaulttest.Server) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = srv.Addr
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(srv.Token)
	return c
}

func record(by string) daemon.Record {
	return daemon.Record{
		Schema:     daemon.RecordSchema,
		Token:      exceptionless.Token(recToken),
		Scope:      daemon.ScopeUser,
		ObtainedAt: time.Now().UTC().Truncate(time.Microsecond),
		ObtainedBy: by,
		ExpiresAt:  time.Now().Add(90 * 24 * time.Hour).UTC(),
	}
}

// checkErr fails when err's text carries any token value.
func checkErr(t *testing.T, err error, srv *vaulttest.Server, more ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, sec := range append([]string{recToken, srv.Token}, more...) {
		if sec != "" && strings.Contains(err.Error(), sec) {
			t.Errorf("error text contains a token (%d bytes)", len(err.Error()))
		}
	}
}

func TestRoundTripAndVersions(t *testing.T) {
	srv := vaulttest.Shared(t)
	s := newStore(t, srv)
	ctx := t.Context()

	_, v, err := s.Load(ctx, daemon.UserKey)
	if !errors.Is(err, daemon.ErrNotFound) || v != 0 {
		t.Fatalf("Load of an absent key = version %d, %v; want 0, ErrNotFound", v, err)
	}

	want := record("host-a")
	v1, err := s.Save(ctx, daemon.UserKey, want, 0)
	if err != nil || v1 != 1 {
		t.Fatalf("first Save = %d, %v; want 1, nil", v1, err)
	}
	got, v, err := s.Load(ctx, daemon.UserKey)
	if err != nil || v != 1 {
		t.Fatalf("Load = version %d, %v; want 1", v, err)
	}
	if got.Token.Reveal() != recToken || got.Scope != want.Scope || got.ObtainedBy != "host-a" ||
		!got.ObtainedAt.Equal(want.ObtainedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || got.Schema != 1 {
		t.Errorf("Load = %+v, want %+v", got, want)
	}

	want.ObtainedBy = "host-b"
	want.ExpiresAt = time.Time{}
	v2, err := s.Save(ctx, daemon.UserKey, want, v1)
	if err != nil || v2 != 2 {
		t.Fatalf("second Save = %d, %v; want 2, nil", v2, err)
	}
	got, v, err = s.Load(ctx, daemon.UserKey)
	if err != nil || v != 2 || got.ObtainedBy != "host-b" || !got.ExpiresAt.IsZero() {
		t.Errorf("Load after update = %+v, version %d, %v", got, v, err)
	}

	// A client record lives under its own key with its own versions.
	cr := record("host-a")
	cr.Scope, cr.ProjectID, cr.OrganizationID = daemon.ScopeClient, "537650f3b77efe23a47914f4", "org1"
	key := daemon.ClientKey(cr.ProjectID)
	if v, err := s.Save(ctx, key, cr, 0); err != nil || v != 1 {
		t.Fatalf("Save client = %d, %v", v, err)
	}
	got, v, err = s.Load(ctx, key)
	if err != nil || v != 1 || got.ProjectID != cr.ProjectID || got.OrganizationID != "org1" || got.Scope != daemon.ScopeClient {
		t.Errorf("Load client = %+v, version %d, %v", got, v, err)
	}

	// The layout in Vault is the documented one.
	kv, err := apiClient(t, srv).KVv2("secret").Get(ctx, testPath(t)+"/user")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"schema", "token", "scope", "project_id", "organization_id", "obtained_at", "obtained_by"} {
		if _, ok := kv.Data[f]; !ok {
			t.Errorf("stored record lacks field %s", f)
		}
	}
	if _, ok := kv.Data["expires_at"]; ok {
		t.Error("stored record has expires_at although ExpiresAt is zero")
	}
}

func TestConcurrentWritersOneWins(t *testing.T) {
	srv := vaulttest.Shared(t)
	s := newStore(t, srv)
	ctx := t.Context()
	v, err := s.Save(ctx, daemon.UserKey, record("seed"), 0)
	if err != nil {
		t.Fatal(err)
	}

	const writers = 8
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		winners   []string
		conflicts int
		others    []error
	)
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			by := fmt.Sprintf("writer-%d", i)
			<-start
			_, err := s.Save(ctx, daemon.UserKey, record(by), v)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, by)
			case errors.Is(err, daemon.ErrConflict):
				conflicts++
				checkErr(t, err, srv)
			default:
				others = append(others, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 || conflicts != writers-1 || len(others) != 0 {
		t.Fatalf("%d writers at version %d: winners %v, %d conflicts, other errors %v; want exactly one winner",
			writers, v, winners, conflicts, others)
	}
	got, gv, err := s.Load(ctx, daemon.UserKey)
	if err != nil || gv != v+1 || got.ObtainedBy != winners[0] {
		t.Errorf("after the race: %q at version %d (%v), want %q at %d", got.ObtainedBy, gv, err, winners[0], v+1)
	}
}

func TestSaveConflicts(t *testing.T) {
	srv := vaulttest.Shared(t)
	s := newStore(t, srv)
	ctx := t.Context()
	if _, err := s.Save(ctx, daemon.UserKey, record("a"), 0); err != nil {
		t.Fatal(err)
	}
	_, err := s.Save(ctx, daemon.UserKey, record("b"), 0)
	if !errors.Is(err, daemon.ErrConflict) {
		t.Errorf("Save with version 0 on an existing key = %v, want ErrConflict", err)
	}
	checkErr(t, err, srv)
	if _, err := s.Save(ctx, daemon.UserKey, record("b"), 1); err != nil {
		t.Fatalf("Save at the current version: %v", err)
	}
	_, err = s.Save(ctx, daemon.UserKey, record("c"), 1)
	if !errors.Is(err, daemon.ErrConflict) {
		t.Errorf("Save at a stale version = %v, want ErrConflict", err)
	}
	_, err = s.Save(ctx, daemon.UserKey, record("c"), 7)
	if !errors.Is(err, daemon.ErrConflict) {
		t.Errorf("Save at a future version = %v, want ErrConflict", err)
	}
	checkErr(t, err, srv)
}

func TestSoftDeleteKeepsVersion(t *testing.T) {
	srv := vaulttest.Shared(t)
	s := newStore(t, srv)
	ctx := t.Context()
	kv := apiClient(t, srv).KVv2("secret")
	path := testPath(t) + "/user"

	if _, err := s.Save(ctx, daemon.UserKey, record("a"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, daemon.UserKey, record("a"), 1); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, path); err != nil {
		t.Fatal(err)
	}
	_, v, err := s.Load(ctx, daemon.UserKey)
	if !errors.Is(err, daemon.ErrNotFound) || v != 2 {
		t.Fatalf("Load after soft delete = version %d, %v; want 2, ErrNotFound", v, err)
	}
	if _, err := s.Save(ctx, daemon.UserKey, record("b"), 0); !errors.Is(err, daemon.ErrConflict) {
		t.Errorf("Save with 0 after soft delete = %v, want ErrConflict (the key still has versions)", err)
	}
	nv, err := s.Save(ctx, daemon.UserKey, record("b"), v)
	if err != nil || nv != 3 {
		t.Fatalf("Save with the deleted version = %d, %v; want 3, nil", nv, err)
	}
	got, _, err := s.Load(ctx, daemon.UserKey)
	if err != nil || got.ObtainedBy != "b" {
		t.Errorf("Load after re-save = %+v, %v", got, err)
	}

	// Destroyed data reads like deleted data.
	if err := kv.Destroy(ctx, path, []int{3}); err != nil {
		t.Fatal(err)
	}
	if _, v, err := s.Load(ctx, daemon.UserKey); !errors.Is(err, daemon.ErrNotFound) || v != 3 {
		t.Errorf("Load after destroy = version %d, %v; want 3, ErrNotFound", v, err)
	}

	// Deleting the metadata forgets the key: back to version 0.
	if err := kv.DeleteMetadata(ctx, path); err != nil {
		t.Fatal(err)
	}
	if _, v, err := s.Load(ctx, daemon.UserKey); !errors.Is(err, daemon.ErrNotFound) || v != 0 {
		t.Errorf("Load after metadata delete = version %d, %v; want 0, ErrNotFound", v, err)
	}
	if v, err := s.Save(ctx, daemon.UserKey, record("c"), 0); err != nil || v != 1 {
		t.Errorf("Save with 0 after metadata delete = %d, %v; want 1", v, err)
	}
}

func TestLoadRefusesForeignRecords(t *testing.T) {
	srv := vaulttest.Shared(t)
	s := newStore(t, srv)
	ctx := t.Context()
	kv := apiClient(t, srv).KVv2("secret")
	base := map[string]any{
		"schema": 1, "token": recToken, "scope": "user",
		"obtained_at": time.Now().UTC().Format(time.RFC3339Nano),
	}

	newer := map[string]any{"schema": daemon.RecordSchema + 1, "token": recToken, "whatever": "v2 layout"}
	if _, err := kv.Put(ctx, testPath(t)+"/user", newer); err != nil {
		t.Fatal(err)
	}
	_, v, err := s.Load(ctx, daemon.UserKey)
	var se *vaultstore.SchemaError
	if !errors.As(err, &se) || se.Key != "user" {
		t.Fatalf("Load of a schema %d record = %v, want a SchemaError", daemon.RecordSchema+1, err)
	}
	if errors.Is(err, daemon.ErrNotFound) || v != 1 {
		t.Errorf("Load of a newer record: version %d, err %v; want version 1 and not ErrNotFound", v, err)
	}
	checkErr(t, err, srv)

	for _, tc := range []struct {
		field string
		edit  func(map[string]any)
	}{
		{"obtained_at", func(m map[string]any) { delete(m, "obtained_at") }},
		{"token", func(m map[string]any) { m["token"] = 12345 }},
		{"scope", func(m map[string]any) { m["scope"] = "client" }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			data := map[string]any{}
			for k, v := range base {
				data[k] = v
			}
			tc.edit(data)
			if _, err := kv.Put(ctx, testPath(t)+"/user", data); err != nil {
				t.Fatal(err)
			}
			s := newStore(t, srv)
			_, _, err := s.Load(ctx, daemon.UserKey)
			var fe *vaultstore.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), `"user"`) {
				t.Errorf("Load = %v, want a FieldError naming key \"user\" and field %s", err, tc.field)
			}
			checkErr(t, err, srv)
		})
	}
}

func TestTokenFileAuth(t *testing.T) {
	srv := vaulttest.Shared(t)
	t.Setenv("VAULT_TOKEN", "")
	file := filepath.Join(t.TempDir(), "vault-token")
	// A Vault Agent sink writes the bare token; a trailing newline is common
	// in hand-made files.
	if err := os.WriteFile(file, []byte(srv.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := vaultstore.New(t.Context(), vaultstore.Config{Address: srv.Addr, TokenFile: file, Path: testPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping with a token file: %v", err)
	}
	if _, err := s.Save(t.Context(), daemon.UserKey, record("file"), 0); err != nil {
		t.Fatalf("Save with a token file: %v", err)
	}
}

func TestEnvTokenAuth(t *testing.T) {
	srv := vaulttest.Shared(t)
	t.Setenv("VAULT_TOKEN", srv.Token)
	t.Setenv("VAULT_ADDR", srv.Addr)
	s, err := vaultstore.New(t.Context(), vaultstore.Config{Path: testPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping with VAULT_ADDR/VAULT_TOKEN: %v", err)
	}
}

func TestMissingToken(t *testing.T) {
	srv := vaulttest.Shared(t)
	t.Setenv("VAULT_TOKEN", "")
	_, err := vaultstore.New(t.Context(), vaultstore.Config{Address: srv.Addr})
	if err == nil || !strings.Contains(err.Error(), "set vault.token_file, vault.approle or VAULT_TOKEN") {
		t.Errorf("New without a token = %v, want a hint to set vault.token_file, vault.approle or VAULT_TOKEN", err)
	}
}

func TestWrongToken(t *testing.T) {
	srv := vaulttest.Shared(t)
	const wrong = "hvs.wrong-token-0c8f2a91d3"
	s, err := vaultstore.New(t.Context(), vaultstore.Config{Address: srv.Addr, Token: wrong, Path: testPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	errs := map[string]error{"Ping": s.Ping(ctx)}
	_, _, errs["Load"] = s.Load(ctx, daemon.UserKey)
	_, errs["Save"] = s.Save(ctx, daemon.UserKey, record("x"), 0)
	for op, err := range errs {
		var ve *vaultstore.Error
		if !errors.As(err, &ve) || ve.StatusCode != 403 {
			t.Errorf("%s with a wrong token = %v, want a 403 *vaultstore.Error", op, err)
		}
		if errors.Is(err, daemon.ErrNotFound) || errors.Is(err, daemon.ErrConflict) {
			t.Errorf("%s with a wrong token = %v, must not look like not-found or conflict", op, err)
		}
		checkErr(t, err, srv, wrong)
		t.Logf("%s: %v", op, err)
	}
}

func TestUnreachableAndCancelled(t *testing.T) {
	srv := vaulttest.Shared(t)
	s, err := vaultstore.New(t.Context(), vaultstore.Config{Address: "http://127.0.0.1:1", Token: srv.Token, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Load(t.Context(), daemon.UserKey)
	if err == nil || !strings.Contains(err.Error(), `read vault record "user"`) || !strings.Contains(err.Error(), "http://127.0.0.1:1") {
		t.Errorf("Load from a dead address = %v, want the key and the address named", err)
	}
	checkErr(t, err, srv)
	t.Logf("unreachable: %v", err)

	s = newStore(t, srv)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = s.Save(ctx, daemon.UserKey, record("x"), 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Save with a cancelled context = %v, want errors.Is context.Canceled", err)
	}
	checkErr(t, err, srv)
}

func TestKVv1MountRefused(t *testing.T) {
	srv := vaulttest.Shared(t)
	c := apiClient(t, srv)
	mount := "kv1-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if err := c.Sys().MountWithContext(t.Context(), mount, &vault.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	s, err := vaultstore.New(t.Context(), vaultstore.Config{Address: srv.Addr, Token: srv.Token, Mount: mount})
	if err != nil {
		t.Fatal(err)
	}
	// Without a check, KV v1 would store the record and ignore check-and-set.
	_, err = s.Save(t.Context(), daemon.UserKey, record("x"), 0)
	if err == nil || !strings.Contains(err.Error(), "KV version 2") {
		t.Errorf("Save on a KV v1 mount = %v, want an error about KV version 2", err)
	}
	_, _, err = s.Load(t.Context(), daemon.UserKey)
	if err == nil || !strings.Contains(err.Error(), "KV version 2") {
		t.Errorf("Load on a KV v1 mount = %v, want an error about KV version 2", err)
	}
	if err := s.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), "want a KV version 2 mount") {
		t.Errorf("Ping on a KV v1 mount = %v, want an error about KV version 2", err)
	}
}

func TestMissingMount(t *testing.T) {
	srv := vaulttest.Shared(t)
	s, err := vaultstore.New(t.Context(), vaultstore.Config{Address: srv.Addr, Token: srv.Token, Mount: "no-such-mount"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), `"no-such-mount"`) {
		t.Errorf("Ping with a missing mount = %v, want an error naming the mount", err)
	} else {
		t.Logf("Ping: %v", err)
	}
	_, err = s.Save(t.Context(), daemon.UserKey, record("x"), 0)
	if err == nil || !strings.Contains(err.Error(), `"no-such-mount"`) {
		t.Errorf("Save to a missing mount = %v, want an error naming the mount", err)
	} else {
		t.Logf("Save: %v", err)
	}
	// What Load sees: Vault's 404 for a missing mount is indistinguishable
	// from an absent key through the api, hence the mount check in Ping.
	_, _, err = s.Load(t.Context(), daemon.UserKey)
	t.Logf("Load: %v", err)
}

func TestPing(t *testing.T) {
	srv := vaulttest.Shared(t)
	if err := newStore(t, srv).Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// TestPasswordRecordInVault provisions a password the way the README tells
// operators to (a bare "password" field), then has the store add a token and
// a pending password with check-and-set, as a password change does.
func TestPasswordRecordInVault(t *testing.T) {
	srv := vaulttest.Shared(t)
	s := newStore(t, srv)
	ctx := t.Context()
	const pw, pending = "store-password-51ac9e", "store-pending-password-0d4b7f"
	kv := apiClient(t, srv).KVv2("secret")
	if _, err := kv.Put(ctx, testPath(t)+"/account", map[string]any{"password": pw}); err != nil {
		t.Fatal(err)
	}
	rec, v, err := s.Load(ctx, "account")
	if err != nil || v != 1 || !rec.Token.IsZero() || string(rec.Password) != pw || rec.Scope != daemon.ScopeUser {
		t.Fatalf("Load of a provisioned password: version %d, err %v", v, err)
	}
	next := record("host-p")
	next.Password = rec.Password
	next.PendingPassword = daemon.Password(pending)
	next.PendingSince = time.Now().UTC().Truncate(time.Microsecond)
	next.PendingBy = "host-p"
	v2, err := s.Save(ctx, "account", next, v)
	if err != nil || v2 != 2 {
		t.Fatalf("Save: version %d, err %v", v2, err)
	}
	got, _, err := s.Load(ctx, "account")
	if err != nil || got.Token != next.Token || string(got.Password) != pw || string(got.PendingPassword) != pending ||
		!got.PendingSince.Equal(next.PendingSince) || got.PendingBy != "host-p" {
		t.Fatalf("Load after Save: err %v", err)
	}
	// A stale writer loses, and its error names neither password.
	_, err = s.Save(ctx, "account", next, v)
	if !errors.Is(err, daemon.ErrConflict) {
		t.Fatalf("stale Save = %v, want ErrConflict", err)
	}
	checkErr(t, err, srv, pw, pending)
	// The key now refuses writes without check-and-set, so a plain
	// "vault kv put" cannot silently replace the password.
	if _, err := kv.Put(ctx, testPath(t)+"/account", map[string]any{"password": "someone-else"}); err == nil {
		t.Fatal("a write without check-and-set was accepted")
	}
}
