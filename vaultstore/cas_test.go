package vaultstore_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/vaultstore"
	"github.com/exless/exless/vaultstore/vaulttest"
)

func metadata(t *testing.T, srv *vaulttest.Server, path string) map[string]any {
	t.Helper()
	out := must(t, srv, http.MethodGet, "secret/metadata/"+path, nil)
	data, _ := out["data"].(map[string]any)
	return data
}

// TestCASRequiredOnFirstWrite: the store's first write of a key sets
// cas_required on its metadata, after which Vault refuses a write without
// check-and-set from anyone; the record's token appears nowhere in the
// metadata.
func TestCASRequiredOnFirstWrite(t *testing.T) {
	srv := vaulttest.Shared(t)
	s := newStore(t, srv)
	ctx := t.Context()
	if _, err := s.Save(ctx, daemon.UserKey, record("a"), 0); err != nil {
		t.Fatal(err)
	}
	md := metadata(t, srv, testPath(t)+"/user")
	if md["cas_required"] != true {
		t.Errorf("cas_required = %v after the first Save, want true", md["cas_required"])
	}
	if cm, _ := md["custom_metadata"].(map[string]any); len(cm) != 0 {
		t.Errorf("custom_metadata = %v, want none: nothing of a record goes into metadata", cm)
	}
	raw, _ := json.Marshal(md)
	noSecrets(t, "key metadata", string(raw), recToken)

	// Another writer without check-and-set is refused by Vault itself.
	kv := apiClient(t, srv).KVv2("secret")
	_, err := kv.Put(ctx, testPath(t)+"/user", map[string]any{"token": "overwritten"})
	if err == nil || !strings.Contains(err.Error(), "check-and-set parameter required") {
		t.Fatalf("write without cas = %v, want Vault's check-and-set required refusal", err)
	}
	got, v, err := s.Load(ctx, daemon.UserKey)
	if err != nil || v != 1 || got.ObtainedBy != "a" {
		t.Errorf("record after the refused write: %q at %d, %v", got.ObtainedBy, v, err)
	}
}

// TestCASRequiredOnExistingKey: a key written before (by an older exless,
// without cas_required) gets it at this store's first write, and keeps the
// operator's other metadata.
func TestCASRequiredOnExistingKey(t *testing.T) {
	srv := vaulttest.Shared(t)
	path := testPath(t) + "/user"
	must(t, srv, http.MethodPost, "secret/metadata/"+path, map[string]any{
		"max_versions": 7, "custom_metadata": map[string]any{"owner": "ops"},
	})
	kv := apiClient(t, srv).KVv2("secret")
	if _, err := kv.Put(t.Context(), path, map[string]any{"schema": 1, "token": recToken, "scope": "user",
		"obtained_at": "2026-11-28T00:00:00Z"}); err != nil {
		t.Fatal(err)
	}
	if md := metadata(t, srv, path); md["cas_required"] != false {
		t.Fatalf("cas_required before = %v, want false", md["cas_required"])
	}
	s := newStore(t, srv)
	if _, err := s.Save(t.Context(), daemon.UserKey, record("b"), 1); err != nil {
		t.Fatal(err)
	}
	md := metadata(t, srv, path)
	cm, _ := md["custom_metadata"].(map[string]any)
	if md["cas_required"] != true || md["max_versions"] != float64(7) || cm["owner"] != "ops" {
		t.Errorf("metadata after Save = cas_required %v, max_versions %v, custom %v; want true, 7, owner=ops",
			md["cas_required"], md["max_versions"], cm)
	}
}

// TestCASRequiredNeedsMetadataRights: a policy without rights on the
// metadata path makes Save fail with the path to grant, and Ping say so
// first.
func TestCASRequiredNeedsMetadataRights(t *testing.T) {
	srv := vaulttest.Shared(t)
	must(t, srv, http.MethodPut, "sys/policies/acl/"+slug(t), map[string]any{
		"policy": `path "secret/data/` + testPath(t) + `/*" { capabilities = ["create", "read", "update"] }`,
	})
	tok := childToken(t, srv, map[string]any{"policies": []string{slug(t)}})
	s, err := vaultstore.New(t.Context(), vaultstore.Config{Address: srv.Addr, Token: tok, Path: testPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Ping(t.Context())
	if err == nil || !strings.Contains(err.Error(), "secret/metadata/"+testPath(t)) {
		t.Errorf("Ping = %v, want the metadata path named", err)
	}
	t.Logf("Ping: %v", err)
	_, err = s.Save(t.Context(), daemon.UserKey, record("x"), 0)
	if err == nil || !strings.Contains(err.Error(), "must allow create and update on secret/metadata/"+testPath(t)) {
		t.Errorf("Save = %v, want the metadata rights named", err)
	}
	t.Logf("Save: %v", err)
	noSecrets(t, "errors", err.Error(), tok, recToken)
}

// TestControlRecordsUseStoreAuthAndCAS: the fleet's control records go
// through the same path as token records: an AppRole store that has done
// nothing else logs in for them, and their keys get cas_required.
func TestControlRecordsUseStoreAuthAndCAS(t *testing.T) {
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
	ctx := t.Context()
	if _, _, err := s.LoadControl(ctx, daemon.LeaseKey); !errors.Is(err, daemon.ErrNotFound) {
		t.Fatalf("LoadControl of an absent lease = %v, want ErrNotFound", err)
	}
	lease := daemon.Control{Holder: "host-a", Purpose: "login", TTL: 30 * time.Second}
	v, err := s.SaveControl(ctx, daemon.LeaseKey, lease, 0)
	if err != nil || v != 1 {
		t.Fatalf("SaveControl = %d, %v", v, err)
	}
	if _, err := s.SaveControl(ctx, daemon.LeaseKey, lease, 0); !errors.Is(err, daemon.ErrConflict) {
		t.Errorf("second SaveControl at version 0 = %v, want ErrConflict", err)
	}
	got, meta, err := s.LoadControl(ctx, daemon.LeaseKey)
	if err != nil || meta.Version != 1 || got.Holder != "host-a" || got.TTL != 30*time.Second {
		t.Errorf("LoadControl = %+v, %+v, %v", got, meta, err)
	}
	if md := metadata(t, srv, testPath(t)+"/"+daemon.LeaseKey); md["cas_required"] != true {
		t.Errorf("lease key cas_required = %v, want true", md["cas_required"])
	}
	if st := s.Auth(); st.Logins != 1 || !st.OK {
		t.Errorf("auth = %+v, want one login, OK", st)
	}
}
