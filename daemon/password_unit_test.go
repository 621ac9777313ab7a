package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestPasswordNeverFormats(t *testing.T) {
	const secret = "hunter2-password-9f8e"
	p := Password(secret)
	rec := Record{Scope: ScopeUser, Password: p, PendingPassword: p}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "password", p, "record", rec)
	outs := []string{fmt.Sprint(p), fmt.Sprintf("%s %q %x %X %v %+v %#v", p, p, p, p, p, p, p),
		fmt.Sprintf("%+v %#v", rec, rec), logged.String()}
	for _, out := range outs {
		if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprintf("%x", secret)) {
			t.Fatalf("a password was formatted: %d bytes of output hold it", len(out))
		}
	}
	if _, err := json.Marshal(rec); err == nil {
		t.Fatal("a record with a password encoded to JSON")
	}
	if Password(nil).String() != "" || p.String() != "[REDACTED]" {
		t.Fatal("String")
	}
	if len(newPassword()) != 43 || bytes.Equal(newPassword(), newPassword()) {
		t.Fatal("newPassword: want 43 random characters")
	}
}
