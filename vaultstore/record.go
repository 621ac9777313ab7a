package vaultstore

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
)

// Names of the KV fields a daemon.Record is stored as.
const (
	fieldSchema         = "schema"
	fieldToken          = "token"
	fieldScope          = "scope"
	fieldProjectID      = "project_id"
	fieldOrganizationID = "organization_id"
	fieldObtainedAt     = "obtained_at"
	fieldObtainedBy     = "obtained_by"
	fieldExpiresAt      = "expires_at"
	fieldRetiring       = "retiring"
	// The password fields of a user record whose password is kept in Vault.
	// "password" is also what an operator writes first, alone:
	// vault kv put secret/<path>/<key> password=-
	fieldPassword        = "password"
	fieldPendingPassword = "pending_password"
	fieldPendingSince    = "pending_since"
	fieldPendingBy       = "pending_by"
)

// FieldError reports a record field that is missing or invalid, in Vault or
// in a record about to be written. It names the key and the field, never the
// field's value: one of them is a token.
type FieldError struct {
	Key    string // storage key, e.g. "user"
	Field  string // KV field name, e.g. "obtained_at"
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("vault record %q: field %s: %s", e.Key, e.Field, e.Reason)
}

// SchemaError reports a record written by a newer exless, whose layout this
// build does not know. It is refused rather than misread.
type SchemaError struct {
	Key    string
	Schema int
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("vault record %q has schema %d, newer than this exless understands (%d): upgrade exless on this host",
		e.Key, e.Schema, daemon.RecordSchema)
}

// encodeRecord turns rec into KV data, checking it first so that nothing
// Load would refuse is ever written. A zero Schema means the current one.
func encodeRecord(key string, rec daemon.Record) (map[string]any, error) {
	if rec.Schema == 0 {
		rec.Schema = daemon.RecordSchema
	}
	if rec.Schema != daemon.RecordSchema {
		// This build writes only its own layout; a record read from a newer
		// exless never gets here (decodeRecord refuses it).
		return nil, &FieldError{key, fieldSchema, fmt.Sprintf("is %d, this exless writes only schema %d", rec.Schema, daemon.RecordSchema)}
	}
	if err := checkRecord(key, rec); err != nil {
		return nil, err
	}
	data := map[string]any{
		fieldSchema: rec.Schema,
		fieldScope:  rec.Scope,
	}
	if len(rec.Password) > 0 {
		data[fieldPassword] = string(rec.Password)
	}
	if len(rec.PendingPassword) > 0 {
		data[fieldPendingPassword] = string(rec.PendingPassword)
		data[fieldPendingSince] = rec.PendingSince.UTC().Format(time.RFC3339Nano)
		data[fieldPendingBy] = rec.PendingBy
	}
	if rec.Token.IsZero() {
		// A password record that holds no token yet.
		return data, nil
	}
	data[fieldToken] = rec.Token.Reveal()
	data[fieldProjectID] = rec.ProjectID
	data[fieldOrganizationID] = rec.OrganizationID
	data[fieldObtainedAt] = rec.ObtainedAt.UTC().Format(time.RFC3339Nano)
	data[fieldObtainedBy] = rec.ObtainedBy
	if !rec.ExpiresAt.IsZero() {
		data[fieldExpiresAt] = rec.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	if len(rec.Retiring) > 0 {
		// Retiring tokens live in the same record as the token that replaced
		// them: as protected as it, and published in the same write.
		list := make([]any, len(rec.Retiring))
		for i, r := range rec.Retiring {
			list[i] = map[string]any{
				fieldToken:     r.Token.Reveal(),
				"revoke_after": r.RevokeAfter.UTC().Format(time.RFC3339Nano),
			}
		}
		data[fieldRetiring] = list
	}
	return data, nil
}

// decodeRecord turns KV data read from key into a Record. Unknown fields are
// ignored, so that a later exless may add optional fields without a schema
// bump; a newer schema is refused.
func decodeRecord(key string, data map[string]any) (daemon.Record, error) {
	var rec daemon.Record
	if data[fieldToken] == nil && data[fieldPassword] != nil {
		return decodePasswordOnly(key, data)
	}
	schema, err := intField(key, data, fieldSchema)
	if err != nil {
		return rec, err
	}
	if schema > daemon.RecordSchema {
		return rec, &SchemaError{Key: key, Schema: schema}
	}
	if schema < 1 {
		return rec, &FieldError{key, fieldSchema, fmt.Sprintf("is %d, want 1 to %d", schema, daemon.RecordSchema)}
	}
	rec.Schema = schema

	tok, err := stringField(key, data, fieldToken, true)
	if err != nil {
		return rec, err
	}
	rec.Token = exceptionless.Token(tok)
	if rec.Scope, err = stringField(key, data, fieldScope, true); err != nil {
		return rec, err
	}
	if rec.ProjectID, err = stringField(key, data, fieldProjectID, false); err != nil {
		return rec, err
	}
	if rec.OrganizationID, err = stringField(key, data, fieldOrganizationID, false); err != nil {
		return rec, err
	}
	if rec.ObtainedBy, err = stringField(key, data, fieldObtainedBy, false); err != nil {
		return rec, err
	}
	if rec.ObtainedAt, err = timeField(key, data, fieldObtainedAt, true); err != nil {
		return rec, err
	}
	if rec.ExpiresAt, err = timeField(key, data, fieldExpiresAt, false); err != nil {
		return rec, err
	}
	if rec.Retiring, err = retiringField(key, data); err != nil {
		return rec, err
	}
	if err := passwordFields(key, data, &rec); err != nil {
		return rec, err
	}
	if err := checkRecord(key, rec); err != nil {
		return daemon.Record{}, err
	}
	return rec, nil
}

// decodePasswordOnly reads a user record that holds a password and no token:
// as an operator provisions it (often without a schema field) or as exless
// leaves it before its first login.
func decodePasswordOnly(key string, data map[string]any) (daemon.Record, error) {
	rec := daemon.Record{Schema: daemon.RecordSchema, Scope: daemon.ScopeUser}
	if _, ok := data[fieldSchema]; ok {
		schema, err := intField(key, data, fieldSchema)
		if err != nil {
			return rec, err
		}
		if schema > daemon.RecordSchema {
			return rec, &SchemaError{Key: key, Schema: schema}
		}
	}
	if scope, err := stringField(key, data, fieldScope, false); err != nil || (scope != "" && scope != daemon.ScopeUser) {
		return daemon.Record{}, &FieldError{key, fieldScope, "must be \"user\" (or absent) in a password record"}
	}
	if err := passwordFields(key, data, &rec); err != nil {
		return daemon.Record{}, err
	}
	if err := checkRecord(key, rec); err != nil {
		return daemon.Record{}, err
	}
	return rec, nil
}

// passwordFields reads the optional password fields into rec.
func passwordFields(key string, data map[string]any, rec *daemon.Record) error {
	pw, err := stringField(key, data, fieldPassword, false)
	if err != nil {
		return err
	}
	pending, err := stringField(key, data, fieldPendingPassword, false)
	if err != nil {
		return err
	}
	if pw != "" {
		rec.Password = daemon.Password(pw)
	}
	if pending == "" {
		return nil
	}
	rec.PendingPassword = daemon.Password(pending)
	if rec.PendingSince, err = timeField(key, data, fieldPendingSince, true); err != nil {
		return err
	}
	rec.PendingBy, err = stringField(key, data, fieldPendingBy, false)
	return err
}

// checkRecord enforces what both directions rely on. The key checks catch a
// record copied under the wrong key, which would otherwise hand one
// project's token to callers of another.
func checkRecord(key string, rec daemon.Record) error {
	hasPassword := len(rec.Password) > 0 || len(rec.PendingPassword) > 0
	if hasPassword && rec.Scope != daemon.ScopeUser {
		return &FieldError{key, fieldPassword, "is set in a record that is not the user's"}
	}
	if len(rec.PendingPassword) > 0 && rec.PendingSince.IsZero() {
		return &FieldError{key, fieldPendingSince, "is missing"}
	}
	if rec.Token.IsZero() {
		if len(rec.Password) > 0 {
			return nil // a password record before the first login
		}
		if hasPassword {
			return &FieldError{key, fieldPassword, "is empty while a change to a pending password is recorded"}
		}
		return &FieldError{key, fieldToken, "is empty"}
	}
	switch rec.Scope {
	case daemon.ScopeUser, daemon.ScopeClient:
	default:
		return &FieldError{key, fieldScope, fmt.Sprintf("is %q, want %q or %q", rec.Scope, daemon.ScopeUser, daemon.ScopeClient)}
	}
	if key == daemon.UserKey && rec.Scope != daemon.ScopeUser {
		return &FieldError{key, fieldScope, fmt.Sprintf("is %q under the user key", rec.Scope)}
	}
	if rec.Scope == daemon.ScopeClient && rec.ProjectID == "" {
		return &FieldError{key, fieldProjectID, "is empty for a client token"}
	}
	if id, ok := strings.CutPrefix(key, daemon.ClientKey("")); ok {
		if rec.Scope != daemon.ScopeClient {
			return &FieldError{key, fieldScope, fmt.Sprintf("is %q under a client key", rec.Scope)}
		}
		if rec.ProjectID != id {
			return &FieldError{key, fieldProjectID, fmt.Sprintf("is %q, does not match the key", rec.ProjectID)}
		}
	}
	if rec.ObtainedAt.IsZero() {
		return &FieldError{key, fieldObtainedAt, "is missing"}
	}
	return nil
}

// intField reads a whole number. Vault's client decodes JSON numbers as
// json.Number; plain float64 and int are accepted for data from elsewhere.
func intField(key string, data map[string]any, name string) (int, error) {
	v, ok := data[name]
	if !ok || v == nil {
		return 0, &FieldError{key, name, "is missing"}
	}
	var f float64
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			return 0, &FieldError{key, name, "is not a whole number"}
		}
		f = float64(i)
	case float64:
		f = n
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	default:
		return 0, &FieldError{key, name, fmt.Sprintf("is a %s, want a number", jsonKind(v))}
	}
	if f != math.Trunc(f) || f > math.MaxInt32 || f < math.MinInt32 {
		return 0, &FieldError{key, name, "is not a small whole number"}
	}
	return int(f), nil
}

// stringField reads a string; absent optional fields read as "". Type errors
// give the JSON kind only, since the field may be the token.
func stringField(key string, data map[string]any, name string, required bool) (string, error) {
	v, ok := data[name]
	if !ok || v == nil {
		if required {
			return "", &FieldError{key, name, "is missing"}
		}
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", &FieldError{key, name, fmt.Sprintf("is a %s, want a string", jsonKind(v))}
	}
	if required && s == "" {
		return "", &FieldError{key, name, "is empty"}
	}
	return s, nil
}

func timeField(key string, data map[string]any, name string, required bool) (time.Time, error) {
	s, err := stringField(key, data, name, required)
	if err != nil || s == "" {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, &FieldError{key, name, "is not an RFC 3339 time"}
	}
	return t, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number, float64, int, int64:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

// retiringField decodes the optional list of tokens awaiting revocation.
func retiringField(key string, data map[string]any) ([]daemon.Retiring, error) {
	v, ok := data[fieldRetiring]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, &FieldError{key, fieldRetiring, "is " + jsonKind(v) + ", want a list"}
	}
	out := make([]daemon.Retiring, 0, len(list))
	for _, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, &FieldError{key, fieldRetiring, "holds " + jsonKind(item) + ", want objects"}
		}
		tok, err := stringField(key, m, fieldToken, true)
		if err != nil {
			return nil, &FieldError{key, fieldRetiring, "an entry has no token"}
		}
		after, err := timeField(key, m, "revoke_after", true)
		if err != nil {
			return nil, &FieldError{key, fieldRetiring, "an entry has no valid revoke_after"}
		}
		out = append(out, daemon.Retiring{Token: exceptionless.Token(tok), RevokeAfter: after})
	}
	return out, nil
}
