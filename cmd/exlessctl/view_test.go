package main

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/policy"
)

var (
	lastRotation = time.Date(2025, 3, 2, 12, 0, 0, 0, time.UTC)
	statusOK     = daemon.Status{
		State: "ok", LoggedIn: true, VaultReachable: true, ClientTokens: 1, Served: 1234, Denied: 2,
		Tokens: []daemon.TokenStatus{
			{Scope: "user", ObtainedBy: "host-a", ObtainedAt: time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC),
				AgeSeconds: 86400 + 3725.4, StaleSeconds: 3, Version: 4, Fingerprint: "ab12cd34"},
			{Scope: "client", ProjectID: "0123456789abcdef01234567", ObtainedBy: "host-b",
				ObtainedAt: time.Date(2025, 3, 2, 12, 0, 0, 0, time.UTC), AgeSeconds: 12, StaleSeconds: 0.4,
				Version: 2, Retiring: 1, Fingerprint: "ef567890"},
		},
		LeaseHolder: "host-a", LastRotation: &lastRotation, Logins: 1, Mints: 3, Rotations: 1,
		Requests: 1301, ConnectionsCutOff: 4, CutOffs: map[string]uint64{"max_connections": 3, "header_timeout": 1, "idle_timeout": 0},
		VaultErrors: 2, UpstreamErrors: 1,
	}
	statusDegraded = daemon.Status{
		State: "degraded", LoggedIn: false, VaultReachable: false, ClientTokens: 1, Served: 7,
		DegradedReasons: []string{"vault unreachable since 03:04:05 UTC", "not logged in: login held back until 03:15:00 UTC"},
	}
	whoamiGrants = daemon.WhoAmI{
		PID: 4242, UID: 1000, User: "deploy", GID: 1001, Group: "exless-client",
		Groups: []uint32{1001, 27}, GroupNames: []string{"exless-client", "sudo"},
		Unit: "deploy.service", ExePath: "/usr/local/bin/deploy", ExeSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Pin: "pidfd",
		Grants: []policy.Grant{
			{Rule: "deployers", Actions: []string{"token"}, Scopes: []string{"client"}, Projects: []string{"0123456789abcdef01234567", "Acme/web"}},
			{Rule: "ops", Actions: []string{"token", "status", "reload"}, Scopes: []string{"user", "client"}, Projects: []string{"*"}},
		},
		CanStatus: true,
	}
	whoamiNone = daemon.WhoAmI{
		PID: 7, UID: 65534, User: "nobody", GID: 65534, Groups: []uint32{}, GroupNames: []string{},
		Unit: "user@1000.service/app.slice/x.service", UserUnit: true,
		ExeUnknown: "not read: no rule uses exe_paths or exe_sha256", Pin: "starttime", Grants: []policy.Grant{},
	}
)

func TestStatusAndWhoAmI(t *testing.T) {
	tests := []struct {
		name string
		path string
		body any
		args []string
	}{
		{"status_ok", "/v1/status", statusOK, []string{"status"}},
		{"status_degraded", "/v1/status", statusDegraded, []string{"status", "--format", "text"}},
		{"whoami_grants", "/v1/whoami", whoamiGrants, []string{"whoami"}},
		{"whoami_none", "/v1/whoami", whoamiNone, []string{"whoami"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newFakeDaemon(t)
			d.set(tc.path, http.StatusOK, tc.body)
			r := ctl(t, append([]string{"--socket", d.socket}, tc.args...)...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			golden(t, tc.name, r.stdout)

			// json is the daemon's reply, one line.
			r = ctl(t, "--socket", d.socket, tc.args[0], "--format", "json")
			if r.code != 0 {
				t.Fatalf("--format json: exit %d, stderr %q", r.code, r.stderr)
			}
			want, _ := json.Marshal(tc.body)
			var got, wantV any
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("--format json: %v", err)
			}
			_ = json.Unmarshal(want, &wantV)
			if !reflect.DeepEqual(got, wantV) || strings.Count(r.stdout, "\n") != 1 {
				t.Errorf("--format json = %s, want %s", r.stdout, want)
			}
		})
	}
}

// TestRenderUnknownFields: the fields the daemon is gaining (tokens with
// their age and source host, lease, rotation counts) have their rows, fields
// nobody told the renderer about still appear, and secret-looking ones are
// not shown.
func TestRenderUnknownFields(t *testing.T) {
	raw := `{"state":"degraded","logged_in":true,"vault_reachable":true,"client_tokens":2,
		"tokens_served":5,"requests_denied":0,"degraded_reasons":["exceptionless unreachable"],
		"tokens":[
			{"scope":"user","obtained_by":"host-a","obtained_at":"2025-03-01T11:00:00Z","age_seconds":3725.4,"stale_seconds":3,"version":4,"fingerprint":"ab12cd34"},
			{"scope":"client","project_id":"0123456789abcdef01234567","obtained_by":"host-b","age_seconds":12,"stale_seconds":0.4,"version":1,"retiring":1,"fingerprint":"ef56","new_thing":true}],
		"lease_holder":"host-a","last_rotation":"2025-03-01T12:00:00Z","logins":1,"mints":3,"rotations":1,"revocations":0,
		"queue":{"waiting":2,"oldest_seconds":90},"peers":["uid 1000 pid 5","uid 0 pid 6"],
		"user_token":"tkSECRETSECRETSECRET","watchdog":false,"version":null}`
	obj, err := decodeObject([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	var tb table
	renderStatus(&tb, obj)
	var b strings.Builder
	if err := tb.write(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "status_future_fields", b.String())
	if strings.Contains(b.String(), "SECRET") {
		t.Errorf("a secret-looking field is shown")
	}
}
