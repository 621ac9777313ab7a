package main

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
)

func TestServeNotifiesReadyStatusAndStopping(t *testing.T) {
	notes := listenNotify(t)
	e := newTestEnv(t)
	e.writeConfig(myRule())
	stop := e.start(0)

	// READY=1 comes once state is loaded: the daemon has logged in.
	notes.waitFor(10*time.Second, "READY=1", "STATUS=logged in; 0 client tokens held; 0 tokens served*")

	project := e.ex.Account.Projects[0].ID
	tok, err := e.client().Token(context.Background(), daemon.ScopeClient, project)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if tok.Token == "" {
		t.Fatal("empty client token")
	}
	// The status line follows the state without a request to ask for it.
	notes.waitFor(5*time.Second, "STATUS=logged in; 1 client tokens held; 1 tokens served, 0 requests denied")

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v, want nil after a clean stop", err)
	}
	notes.waitFor(time.Second, "STOPPING=1")
}

func TestReloadAppliesNewPolicyAndKeepsServing(t *testing.T) {
	notes := listenNotify(t)
	e := newTestEnv(t)
	e.writeConfig(otherRule())
	e.start(0)
	notes.waitFor(10*time.Second, "READY=1")
	ctx := context.Background()
	project := e.ex.Account.Projects[0].ID

	_, err := e.client().Token(ctx, daemon.ScopeClient, project)
	var denied *daemon.AccessDeniedError
	if !errors.As(err, &denied) {
		t.Fatalf("before reload: Token error = %v, want AccessDeniedError", err)
	}

	// A good config: the new policy applies, on the same socket and process.
	e.writeConfig(myRule())
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m := notes.waitFor(5*time.Second, "RELOADING=1", "MONOTONIC_USEC=*")
	if strings.Contains(m, "READY=1") {
		t.Errorf("RELOADING=1 and READY=1 in one message %q; systemd wants them apart", m)
	}
	notes.waitFor(5*time.Second, "READY=1", "STATUS=logged in*")
	if _, err := e.client().Token(ctx, daemon.ScopeClient, project); err != nil {
		t.Fatalf("after reload: Token: %v", err)
	}

	// A bad config is rejected: the policy in force stays, and so does
	// the service.
	writeFile(t, e.config, "socket = 17 {")
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	notes.waitFor(5*time.Second, "RELOADING=1")
	notes.waitFor(5*time.Second, "READY=1", "STATUS=*last reload failed, see the journal")
	if _, err := e.client().Token(ctx, daemon.ScopeClient, project); err != nil {
		t.Fatalf("after a rejected reload: Token: %v", err)
	}
	if !strings.Contains(e.logs.String(), "reload failed; the running configuration stays") {
		t.Error("the rejected reload is not logged")
	}

	// Reloading over the socket goes through the same path.
	e.writeConfig(otherRule() + "\n" + myRule())
	if err := e.client().Reload(ctx); err != nil {
		t.Fatalf("Reload over the socket: %v", err)
	}
	notes.waitFor(5*time.Second, "RELOADING=1")
	notes.waitFor(5*time.Second, "READY=1", "STATUS=logged in*")
}

func TestWatchdogPingsWhileServing(t *testing.T) {
	notes := listenNotify(t)
	e := newTestEnv(t)
	e.writeConfig(myRule())
	e.start(300 * time.Millisecond)
	notes.waitFor(10*time.Second, "READY=1")
	// Every third of the interval a self-request runs; each success pings.
	for range 3 {
		notes.waitFor(2*time.Second, "WATCHDOG=1")
	}
}

func TestNotConfiguredAnswersEveryRequest(t *testing.T) {
	notes := listenNotify(t)
	e := newTestEnv(t)
	writeFile(t, e.config, "configured = false\nsocket = \""+e.socket+"\"\n")
	e.start(300 * time.Millisecond)
	notes.waitFor(5*time.Second, "READY=1", "STATUS=not configured: edit "+e.config)
	// Its health check works too: no restart by the watchdog.
	notes.waitFor(2*time.Second, "WATCHDOG=1")

	_, err := e.client().Token(context.Background(), daemon.ScopeUser, "")
	var apiErr *daemon.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != codeNotConfigured || !apiErr.Unavailable() {
		t.Fatalf("Token error = %#v, want a 503 %s", err, codeNotConfigured)
	}
	if !strings.Contains(apiErr.Message, "not configured: edit "+e.config) {
		t.Errorf("error %q does not say what to edit", apiErr.Message)
	}

	// Once the file is complete, a reload says to restart.
	e.writeConfig(myRule())
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	notes.waitFor(5*time.Second, "READY=1", "STATUS=not configured yet; "+e.config+" is now complete: run systemctl restart exlessd")
}

func TestStartWithoutVaultTokenServesDegraded(t *testing.T) {
	// A fresh install's credential files are empty: the daemon must start,
	// answer, and say what is wrong, not crash-loop.
	notes := listenNotify(t)
	e := newTestEnv(t)
	e.writeConfig(myRule())
	writeFile(t, e.credDir+"/vault-token", "")
	e.start(0)
	// STATUS= says why: the token file is empty.
	notes.waitFor(15*time.Second, "READY=1", "STATUS=degraded: *vault auth: *is empty*")
	_, err := e.client().Token(context.Background(), daemon.ScopeUser, "")
	var apiErr *daemon.APIError
	if !errors.As(err, &apiErr) || !apiErr.Unavailable() {
		t.Fatalf("Token error = %v, want 503 unavailable", err)
	}
}

func TestStatusLine(t *testing.T) {
	for _, tc := range []struct {
		in   daemon.Status
		want string
	}{
		{daemon.Status{State: "ok", LoggedIn: true, ClientTokens: 2, Served: 5, Denied: 1},
			"logged in; 2 client tokens held; 5 tokens served, 1 requests denied"},
		{daemon.Status{State: "degraded", DegradedReasons: []string{"not logged in: x", "vault unreachable"}},
			"degraded: not logged in: x; vault unreachable; 0 client tokens held; 0 tokens served, 0 requests denied"},
	} {
		if got := statusLine(tc.in); got != tc.want {
			t.Errorf("statusLine(%+v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
