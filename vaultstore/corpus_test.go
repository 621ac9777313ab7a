package vaultstore

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/internal/fuzzcorpus"
)

// TestWriteFuzzCorpus writes the seed corpus of FuzzDecodeRecord when run
// with -write-corpus (see internal/fuzzcorpus): records as encodeRecord
// makes them and Vault's KV v2 returns them, as JSON. The tokens are made
// up, in the real tokens' shape.
func TestWriteFuzzCorpus(t *testing.T) {
	if !fuzzcorpus.Writing() {
		t.Skip("writes testdata/fuzz only with -write-corpus")
	}
	tok := func(c string) exceptionless.Token { return exceptionless.Token(strings.Repeat(c, 40)) }
	at := time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC)
	const project, org = "537650f3b77efe23a47914f4", "537650f3b77efe23a47914f1"
	c := fuzzcorpus.New(t, "FuzzDecodeRecord")
	for _, r := range []struct {
		label, key string
		rec        daemon.Record
	}{
		{"user", "user", daemon.Record{Token: tok("u"), Scope: daemon.ScopeUser, ObtainedAt: at, ObtainedBy: "web-1", ExpiresAt: at.Add(30 * 24 * time.Hour)}},
		{"user-no-expiry", "user", daemon.Record{Token: tok("v"), Scope: daemon.ScopeUser, ObtainedAt: at.Truncate(time.Second), ObtainedBy: "host.example.com"}},
		{"client", "client/" + project, daemon.Record{Token: tok("c"), Scope: daemon.ScopeClient, ProjectID: project, OrganizationID: org, ObtainedAt: at, ObtainedBy: "web-1"}},
		{"client-retiring", "client/" + project, daemon.Record{Token: tok("d"), Scope: daemon.ScopeClient, ProjectID: project, OrganizationID: org, ObtainedAt: at, ObtainedBy: "web-2",
			Retiring: []daemon.Retiring{{Token: tok("c"), RevokeAfter: at.Add(10 * time.Minute)}}}},
		{"client-retiring-three", "client/" + project, daemon.Record{Token: tok("g"), Scope: daemon.ScopeClient, ProjectID: project, OrganizationID: org, ObtainedAt: at, ObtainedBy: "web-3",
			ExpiresAt: at.Add(time.Hour), Retiring: []daemon.Retiring{
				{Token: tok("d"), RevokeAfter: at.Add(-time.Minute)}, {Token: tok("e"), RevokeAfter: at}, {Token: tok("f"), RevokeAfter: at.Add(time.Minute)}}}},
	} {
		data, err := encodeRecord(r.key, r.rec)
		if err != nil {
			t.Fatalf("%s: %v", r.label, err)
		}
		b, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		c.Add(r.label, b)
	}
	c.Done()
}
