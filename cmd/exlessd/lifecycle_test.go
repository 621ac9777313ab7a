package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"
)

// fakeService serves nothing; its check is what the test makes it.
func fakeService(check func(context.Context) error) service {
	return service{
		serve:  func(ctx context.Context) error { <-ctx.Done(); return nil },
		status: func() string { return "fake" },
		reload: func() (string, error) { return "ok", nil },
		check:  check,
	}
}

// runLifecycle runs a lifecycle with a 300 ms watchdog until the test ends.
func runLifecycle(t *testing.T, svc service) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	l := &lifecycle{log: log, n: newNotifier(log), hup: make(chan os.Signal), reloads: make(chan chan error),
		watchdog: 300 * time.Millisecond, statusEvery: time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.run(ctx, svc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// noWatchdogPing fails if a WATCHDOG=1 arrives within d.
func (r *notifyRecorder) noWatchdogPing(d time.Duration) {
	r.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-r.msgs:
			if hasLines(m, "WATCHDOG=1") {
				r.t.Fatalf("got WATCHDOG=1 although the health check does not pass")
			}
		case <-deadline:
			return
		}
	}
}

func TestWatchdogNeedsAPassingCheck(t *testing.T) {
	t.Run("failing", func(t *testing.T) {
		notes := listenNotify(t)
		runLifecycle(t, fakeService(func(context.Context) error { return errors.New("broken") }))
		notes.waitFor(time.Second, "READY=1", "STATUS=fake")
		notes.noWatchdogPing(time.Second)
	})
	t.Run("hanging", func(t *testing.T) {
		// A check that never returns (a wedged serve loop): no ping, and
		// no pile of checks either.
		notes := listenNotify(t)
		started := make(chan struct{}, 100)
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		runLifecycle(t, fakeService(func(ctx context.Context) error {
			started <- struct{}{}
			<-release
			return nil
		}))
		notes.waitFor(time.Second, "READY=1")
		notes.noWatchdogPing(time.Second)
		if n := len(started); n != 1 {
			t.Errorf("%d health checks started while the first hung, want 1", n)
		}
	})
	t.Run("passing", func(t *testing.T) {
		notes := listenNotify(t)
		runLifecycle(t, fakeService(func(context.Context) error { return nil }))
		for range 3 {
			notes.waitFor(time.Second, "WATCHDOG=1")
		}
	})
}

func TestNotifyOutsideSystemdIsQuiet(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := newNotifier(slog.New(slog.DiscardHandler))
	n.ready("x") // (false, nil): nothing to do, nothing to fail
	t.Setenv("NOTIFY_SOCKET", "/nonexistent/notify")
	n.ready("x") // an error is logged at debug level only
}
