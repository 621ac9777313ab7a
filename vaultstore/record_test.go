package vaultstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
)

const unitToken = "unit-secret-token-6f1c9e"

func userRecord() daemon.Record {
	return daemon.Record{
		Schema:     daemon.RecordSchema,
		Token:      exceptionless.Token(unitToken),
		Scope:      daemon.ScopeUser,
		ObtainedAt: time.Date(2026, 11, 28, 22, 1, 2, 345678901, time.UTC),
		ObtainedBy: "host-a",
		ExpiresAt:  time.Date(2027, 2, 26, 0, 0, 0, 0, time.UTC),
	}
}

func clientRecord() daemon.Record {
	return daemon.Record{
		Schema:         daemon.RecordSchema,
		Token:          exceptionless.Token(unitToken),
		Scope:          daemon.ScopeClient,
		ProjectID:      "537650f3b77efe23a47914f4",
		OrganizationID: "537650f3b77efe23a47914f3",
		ObtainedAt:     time.Date(2026, 11, 28, 22, 1, 2, 0, time.FixedZone("CET", 3600)),
		ObtainedBy:     "host-b",
	}
}

// viaJSON mimics what the api client hands back: numbers as json.Number.
func viaJSON(t *testing.T, data map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		key string
		rec daemon.Record
	}{
		{daemon.UserKey, userRecord()},
		{daemon.ClientKey(clientRecord().ProjectID), clientRecord()},
	} {
		t.Run(tc.key, func(t *testing.T) {
			data, err := encodeRecord(tc.key, tc.rec)
			if err != nil {
				t.Fatalf("encodeRecord: %v", err)
			}
			got, err := decodeRecord(tc.key, viaJSON(t, data))
			if err != nil {
				t.Fatalf("decodeRecord: %v", err)
			}
			assertRecordEqual(t, got, tc.rec)
		})
	}
}

func assertRecordEqual(t *testing.T, got, want daemon.Record) {
	t.Helper()
	if got.Schema != want.Schema || got.Token != want.Token || got.Scope != want.Scope ||
		got.ProjectID != want.ProjectID || got.OrganizationID != want.OrganizationID ||
		got.ObtainedBy != want.ObtainedBy || !got.ObtainedAt.Equal(want.ObtainedAt) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !bytes.Equal(got.Password, want.Password) ||
		!bytes.Equal(got.PendingPassword, want.PendingPassword) || !got.PendingSince.Equal(want.PendingSince) ||
		got.PendingBy != want.PendingBy {
		// Token redacts itself in %+v, so this never prints it.
		t.Errorf("record = %+v, want %+v", got, want)
	}
}

func TestEncodeRecordFields(t *testing.T) {
	data, err := encodeRecord(daemon.UserKey, userRecord())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"schema":          1,
		"token":           unitToken,
		"scope":           "user",
		"project_id":      "",
		"organization_id": "",
		"obtained_at":     "2026-11-28T22:01:02.345678901Z",
		"obtained_by":     "host-a",
		"expires_at":      "2027-02-26T00:00:00Z",
	}
	if !maps.Equal(data, want) {
		t.Errorf("encodeRecord fields differ:\n got %v\nwant %v", keysOf(data), keysOf(want))
	}

	rec := clientRecord()
	rec.Schema = 0 // zero means "current"
	data, err = encodeRecord(daemon.ClientKey(rec.ProjectID), rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := data["expires_at"]; ok {
		t.Error("zero ExpiresAt was written; want the field omitted")
	}
	if data["schema"] != daemon.RecordSchema {
		t.Errorf("schema = %v, want %d", data["schema"], daemon.RecordSchema)
	}
	if data["obtained_at"] != "2026-11-28T21:01:02Z" {
		t.Errorf("obtained_at = %v, want UTC 2026-11-28T21:01:02Z", data["obtained_at"])
	}
}

func keysOf(m map[string]any) string {
	var b strings.Builder
	for _, k := range []string{"schema", "token", "scope", "project_id", "organization_id", "obtained_at", "obtained_by", "expires_at"} {
		v, ok := m[k]
		if k == "token" && ok {
			v = "<set>"
		}
		fmt.Fprintf(&b, "%s=%v(%t) ", k, v, ok)
	}
	return b.String()
}

func TestEncodeRecordRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, key, field string
		edit             func(*daemon.Record)
	}{
		{"empty token", "user", "token", func(r *daemon.Record) { r.Token = "" }},
		{"bad scope", "user", "scope", func(r *daemon.Record) { r.Scope = "admin" }},
		{"client scope under user key", "user", "scope", func(r *daemon.Record) { r.Scope = daemon.ScopeClient; r.ProjectID = "p" }},
		{"zero obtained_at", "user", "obtained_at", func(r *daemon.Record) { r.ObtainedAt = time.Time{} }},
		{"newer schema", "user", "schema", func(r *daemon.Record) { r.Schema = daemon.RecordSchema + 1 }},
		{"user scope under client key", "client/p", "scope", func(r *daemon.Record) {}},
		{"client without project", "other", "project_id", func(r *daemon.Record) { r.Scope = daemon.ScopeClient }},
		{"project does not match key", "client/p", "project_id", func(r *daemon.Record) { r.Scope = daemon.ScopeClient; r.ProjectID = "q" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := userRecord()
			tc.edit(&rec)
			_, err := encodeRecord(tc.key, rec)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || fe.Key != tc.key {
				t.Fatalf("encodeRecord error = %v, want a FieldError for %s of %q", err, tc.field, tc.key)
			}
			assertNoSecret(t, err.Error(), unitToken)
		})
	}
}

func TestDecodeRecordRefuses(t *testing.T) {
	good, err := encodeRecord(daemon.UserKey, userRecord())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, field string
		edit        func(map[string]any)
	}{
		{"no schema", "schema", func(m map[string]any) { delete(m, "schema") }},
		{"schema string", "schema", func(m map[string]any) { m["schema"] = "1" }},
		{"schema fraction", "schema", func(m map[string]any) { m["schema"] = 1.5 }},
		{"schema zero", "schema", func(m map[string]any) { m["schema"] = 0 }},
		{"no token", "token", func(m map[string]any) { delete(m, "token") }},
		{"token number", "token", func(m map[string]any) { m["token"] = 42 }},
		{"token empty", "token", func(m map[string]any) { m["token"] = "" }},
		{"no scope", "scope", func(m map[string]any) { delete(m, "scope") }},
		{"scope unknown", "scope", func(m map[string]any) { m["scope"] = "root" }},
		{"obtained_by number", "obtained_by", func(m map[string]any) { m["obtained_by"] = 7 }},
		{"no obtained_at", "obtained_at", func(m map[string]any) { delete(m, "obtained_at") }},
		{"obtained_at garbage", "obtained_at", func(m map[string]any) { m["obtained_at"] = "yesterday" }},
		{"expires_at garbage", "expires_at", func(m map[string]any) { m["expires_at"] = "2027-02-30" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := maps.Clone(good)
			tc.edit(data)
			_, err := decodeRecord(daemon.UserKey, viaJSON(t, data))
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || fe.Key != daemon.UserKey {
				t.Fatalf("decodeRecord error = %v, want a FieldError for field %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), `"user"`) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name the key and field", err)
			}
			assertNoSecret(t, err.Error(), unitToken)
		})
	}

	t.Run("newer schema", func(t *testing.T) {
		data := maps.Clone(good)
		data["schema"] = daemon.RecordSchema + 1
		data["shiny_new_field"] = true
		_, err := decodeRecord(daemon.UserKey, viaJSON(t, data))
		var se *SchemaError
		if !errors.As(err, &se) || se.Schema != daemon.RecordSchema+1 {
			t.Fatalf("decodeRecord error = %v, want a SchemaError", err)
		}
		if !strings.Contains(err.Error(), "upgrade exless") {
			t.Errorf("error %q does not say what to do", err)
		}
		assertNoSecret(t, err.Error(), unitToken)
	})

	t.Run("unknown fields ignored", func(t *testing.T) {
		data := maps.Clone(good)
		data["note"] = "added by a later minor version"
		if _, err := decodeRecord(daemon.UserKey, viaJSON(t, data)); err != nil {
			t.Errorf("decodeRecord with an extra field: %v", err)
		}
	})
}

func TestCheckPath(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"user", true},
		{"client/537650f3b77efe23a47914f4", true},
		{"a/b/c", true},
		{"", false},
		{"client/", false},
		{"/user", false},
		{"a//b", false},
		{"..", false},
		{"client/../user", false},
		{"./user", false},
		{"user?version=1", false},
		{"us%65r", false},
		{"a\nb", false},
	} {
		err := checkPath(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("checkPath(%q) = %v, want ok=%t", tc.in, err, tc.ok)
		}
	}
}

func TestConfigNeverPrintsToken(t *testing.T) {
	const secret = "hvs.config-secret-123"
	cfg := Config{Address: "https://vault:8200", Token: secret, Mount: "kv", Timeout: time.Second}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
		got := fmt.Sprintf(verb, cfg)
		assertNoSecret(t, got, secret)
		if verb == "%#v" && !strings.Contains(got, "Token:true") {
			t.Errorf("%s: %q does not show that a token is set", verb, got)
		}
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, string(b), secret)
	if got := fmt.Sprintf("%#v", Config{}); !strings.Contains(got, "Token:false") {
		t.Errorf("%%#v of an empty Config = %q, want Token:false", got)
	}
}

func TestTokenSourceOrder(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		cfg        Config
		env        string
		want       string
		wantErr    string
		wantUseErr string
	}{
		{name: "inline wins", cfg: Config{Token: "inline", TokenFile: file}, env: "from-env", want: "inline"},
		{name: "file before env", cfg: Config{TokenFile: file}, env: "from-env", want: "from-file"},
		{name: "env last", env: "from-env", want: "from-env"},
		{name: "none", wantErr: "set vault.token_file, vault.approle or VAULT_TOKEN"},
		// A Vault Agent may not have written its sink yet: New succeeds, the
		// store has no token (not VAULT_TOKEN: the file was asked for) and
		// says why on use.
		{name: "missing file", cfg: Config{TokenFile: filepath.Join(dir, "nope")}, env: "from-env", wantUseErr: "no such file"},
		{name: "empty file", cfg: Config{TokenFile: empty}, env: "from-env", wantUseErr: "is empty"},
		{name: "approle excludes token", cfg: Config{Token: "x", AppRole: &AppRoleConfig{RoleIDFile: file, SecretIDFile: file}}, wantErr: "set one of token, token_file and approle"},
		{name: "approle needs both files", cfg: Config{AppRole: &AppRoleConfig{RoleIDFile: file}}, wantErr: "role_id_file and secret_id_file are both required"},
		{name: "approle missing role id", cfg: Config{AppRole: &AppRoleConfig{RoleIDFile: filepath.Join(dir, "nope"), SecretIDFile: file}}, wantErr: "no such file"},
		{name: "approle has no token yet", cfg: Config{AppRole: &AppRoleConfig{RoleIDFile: file, SecretIDFile: file}}, env: "from-env", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("VAULT_TOKEN", tc.env)
			t.Setenv("VAULT_ADDR", "")
			s, err := New(t.Context(), tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.client.Token(); got != tc.want {
				t.Errorf("token source = %q, want %q", got, tc.want)
			}
			if tc.wantUseErr != "" {
				_, err := s.auth.use(t.Context())
				if err == nil || !strings.Contains(err.Error(), tc.wantUseErr) {
					t.Errorf("use() = %v, want an error containing %q", err, tc.wantUseErr)
				}
				if ok, reason := s.AuthStatus(); ok || !strings.Contains(reason, tc.wantUseErr) {
					t.Errorf("AuthStatus() = %t, %q, want false and a reason containing %q", ok, reason, tc.wantUseErr)
				}
			}
		})
	}
}

func TestNewDefaultsAndBadPaths(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "x")
	s, err := New(t.Context(), Config{Address: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if s.mount != "secret" || s.path != "exless" || s.client.Address() != "http://127.0.0.1:1" {
		t.Errorf("defaults: mount %q path %q address %q", s.mount, s.path, s.client.Address())
	}
	for _, cfg := range []Config{{Mount: "a//b"}, {Path: "x/../y"}} {
		if _, err := New(t.Context(), cfg); err == nil {
			t.Errorf("New(%#v) accepted a bad path", cfg)
		}
	}
}

func TestVaultErrShapes(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "")
	s, err := New(t.Context(), Config{Token: "hvs.store-token"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		in     error
		want   string
		status int
	}{
		{
			name:   "vault json error",
			in:     fmt.Errorf("error writing secret to secret/data/x: %w", &vault.ResponseError{HTTPMethod: "PUT", URL: "http://v/v1/secret/data/x", StatusCode: 403, Errors: []string{"1 error occurred:\n\t* permission denied\n\n"}}),
			want:   "vault responded 403: 1 error occurred: * permission denied (check the vault token and its policy)",
			status: 403,
		},
		{
			name:   "raw body is dropped",
			in:     &vault.ResponseError{StatusCode: 502, RawError: true, Errors: []string{"<html>" + unitToken + "</html>"}},
			want:   "vault responded 502 (not a Vault JSON error; a proxy in the way?)",
			status: 502,
		},
		{
			name:   "echoed secrets are masked",
			in:     &vault.ResponseError{StatusCode: 400, Errors: []string{"bad " + unitToken + " and hvs.store-token"}},
			want:   "vault responded 400: bad [REDACTED] and [REDACTED]",
			status: 400,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.vaultErr(tc.in, unitToken)
			var ve *Error
			if !errors.As(err, &ve) || ve.StatusCode != tc.status {
				t.Fatalf("vaultErr = %#v, want *Error with status %d", err, tc.status)
			}
			if err.Error() != tc.want {
				t.Errorf("vaultErr = %q, want %q", err, tc.want)
			}
			var re *vault.ResponseError
			if errors.As(err, &re) {
				t.Error("the api's ResponseError (with its raw body) is still reachable by errors.As")
			}
		})
	}
}

func TestIsCASMismatch(t *testing.T) {
	cas := &vault.ResponseError{StatusCode: 400, Errors: []string{"check-and-set parameter did not match the current version"}}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("error writing secret: %w", cas), true},
		{&vault.ResponseError{StatusCode: 400, Errors: []string{"check-and-set parameter required for this call"}}, false},
		{&vault.ResponseError{StatusCode: 403, Errors: []string{"permission denied"}}, false},
		{errors.New("check-and-set parameter did not match the current version"), false},
	} {
		if got := isCASMismatch(tc.err); got != tc.want {
			t.Errorf("isCASMismatch(%v) = %t, want %t", tc.err, got, tc.want)
		}
	}
}

func assertNoSecret(t *testing.T, s, secret string) {
	t.Helper()
	if strings.Contains(s, secret) {
		// Report without echoing the secret itself.
		t.Errorf("output contains a secret (%d bytes of output)", len(s))
	}
}

// anyContains reports whether tok is part of any key or value in v.
func anyContains(v any, tok string) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if strings.Contains(k, tok) || anyContains(x, tok) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if anyContains(x, tok) {
				return true
			}
		}
	case string:
		return strings.Contains(v, tok)
	case json.Number:
		return strings.Contains(v.String(), tok)
	}
	return false
}

// FuzzDecodeRecord: whatever JSON a record key holds in Vault (another tool
// may have written it), decoding returns a record or an error, never
// panics, and an error never carries the token field's value.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"schema":1,"token":"abcdefghijabcdefghijabcdefghijabcdefghij","scope":"user","obtained_at":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"schema":1,"token":"x","scope":"client","project_id":"537650f3b77efe23a47914f4","obtained_at":"2026-01-02T03:04:05Z","retiring":[{"token":"y","revoke_after":"2026-01-02T03:04:05Z"}]}`))
	f.Add([]byte(`{"schema":99}`))
	f.Add([]byte(`{"schema":"1","retiring":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if dec.Decode(&m) != nil {
			return
		}
		tok, _ := m["token"].(string)
		// An error may quote other fields (a project_id that does not match
		// the key); a token that is also part of one of them proves
		// nothing when it shows up there.
		rest := maps.Clone(m)
		delete(rest, "token")
		checkable := len(tok) >= 8 && !anyContains(rest, tok)
		for _, key := range []string{"user", "client/537650f3b77efe23a47914f4"} {
			_, err := decodeRecord(key, m)
			if err == nil {
				continue
			}
			if checkable && strings.Contains(err.Error(), tok) {
				t.Fatalf("decode error reveals the token field")
			}
		}
	})
}

func TestPasswordRecordEncoding(t *testing.T) {
	const pw, pending = "unit-password-3c81d0", "unit-pending-password-77ae21"
	withPw := userRecord()
	withPw.Password = daemon.Password(pw)
	withPending := withPw
	withPending.PendingPassword = daemon.Password(pending)
	withPending.PendingSince = time.Date(2026, 11, 29, 1, 2, 3, 0, time.UTC)
	withPending.PendingBy = "host-c"
	noToken := daemon.Record{Schema: daemon.RecordSchema, Scope: daemon.ScopeUser, Password: daemon.Password(pw)}
	for name, rec := range map[string]daemon.Record{"password": withPw, "pending": withPending, "no token": noToken} {
		data, err := encodeRecord("account", rec)
		if err != nil {
			t.Fatalf("%s: encodeRecord: %v", name, err)
		}
		got, err := decodeRecord("account", viaJSON(t, data))
		if err != nil {
			t.Fatalf("%s: decodeRecord: %v", name, err)
		}
		assertRecordEqual(t, got, rec)
	}
	// As an operator writes it: no schema, no scope.
	got, err := decodeRecord("account", map[string]any{"password": pw})
	if err != nil || got.Scope != daemon.ScopeUser || string(got.Password) != pw || !got.Token.IsZero() {
		t.Fatalf("operator-written password record: %v", err)
	}

	bad := []struct {
		name  string
		rec   daemon.Record
		field string
	}{
		{"client with password", func() daemon.Record { r := clientRecord(); r.Password = daemon.Password(pw); return r }(), fieldPassword},
		{"pending without since", func() daemon.Record { r := withPending; r.PendingSince = time.Time{}; return r }(), fieldPendingSince},
		{"pending without password or token", daemon.Record{Scope: daemon.ScopeUser, PendingPassword: daemon.Password(pending), PendingSince: time.Now()}, fieldPassword},
	}
	for _, tc := range bad {
		_, err := encodeRecord("account", tc.rec)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: encodeRecord = %v, want a FieldError on %s", tc.name, err, tc.field)
		}
		if err != nil {
			assertNoSecret(t, err.Error(), pw)
			assertNoSecret(t, err.Error(), pending)
		}
	}
	for name, data := range map[string]map[string]any{
		"password not a string":  {"password": 12345678},
		"scope client":           {"password": pw, "scope": "client"},
		"pending without since":  {"password": pw, "pending_password": pending},
		"newer schema":           {"password": pw, "schema": daemon.RecordSchema + 1},
		"pending since not time": {"password": pw, "pending_password": pending, "pending_since": pw},
	} {
		_, err := decodeRecord("account", viaJSON(t, data))
		if err == nil {
			t.Errorf("%s: decodeRecord accepted it", name)
			continue
		}
		assertNoSecret(t, err.Error(), pw)
		assertNoSecret(t, err.Error(), pending)
	}
}
