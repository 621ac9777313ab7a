package main

import (
	"context"
	"log/slog"
	"os"
	"time"
)

// service is what the lifecycle runs: a serving function and the hooks that
// systemd's notifications need. Both modes (configured and not) provide one.
type service struct {
	// serve serves until ctx ends, then drains requests in flight.
	serve func(ctx context.Context) error
	// status is the STATUS= line: short, for humans, no secrets.
	status func() string
	// reload re-reads the config and applies what can be applied while
	// running. An error means nothing was changed.
	reload func() (summary string, err error)
	// check proves the daemon still serves; the watchdog is pinged only
	// after it succeeds.
	check func(ctx context.Context) error
}

// lifecycle speaks to systemd around a service: READY=1 once serving,
// STATUS= whenever the status line changes, RELOADING=1 … READY=1 around a
// SIGHUP reload, WATCHDOG=1 after each passing health check, STOPPING=1
// when asked to stop.
type lifecycle struct {
	log *slog.Logger
	n   *notifier
	hup <-chan os.Signal
	// reloads carries reloads asked for over the socket (POST /v1/reload);
	// each gets its result back. They run here, like SIGHUP's, so that
	// RELOADING=1 and READY=1 pair up and reloads never overlap.
	reloads chan chan error
	// watchdog is systemd's WatchdogSec= (0: off). The health check runs
	// every third of it and may take a third, so one hung check still
	// leaves a ping in time and two in a row do not.
	watchdog time.Duration
	// statusEvery is how often the status line is recomputed; STATUS= is
	// sent only when it changed.
	statusEvery time.Duration
}

func (l *lifecycle) run(ctx context.Context, svc service) error {
	// The service stops when told to here, after STOPPING=1 went out,
	// not when ctx ends: systemd should hear "stopping" before draining.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	errc := make(chan error, 1)
	go func() { errc <- svc.serve(serveCtx) }()

	reloadNote := ""
	line := func() string {
		if reloadNote != "" {
			return svc.status() + "; " + reloadNote
		}
		return svc.status()
	}
	last := line()
	l.n.ready(last)

	var wdTick <-chan time.Time
	if l.watchdog > 0 {
		t := time.NewTicker(l.watchdog / 3)
		defer t.Stop()
		wdTick = t.C
		l.log.Info("watchdog enabled", "interval", l.watchdog)
	}
	st := time.NewTicker(l.statusEvery)
	defer st.Stop()
	checkc := make(chan error, 1)
	checking := false

	for {
		select {
		case <-ctx.Done():
			l.n.stopping()
			l.log.Info("stopping: finishing requests in flight")
			stopServing()
			return <-errc
		case err := <-errc:
			return err
		case <-l.hup:
			err := l.reload(svc)
			reloadNote = noteFor(err)
			last = line()
			l.n.ready(last)
		case reply := <-l.reloads:
			err := l.reload(svc)
			reloadNote = noteFor(err)
			last = line()
			l.n.ready(last)
			reply <- err
		case <-wdTick:
			// A check still running is a hung one: start no second one,
			// so a wedged daemon stops pinging and systemd restarts it.
			if !checking {
				checking = true
				go func() {
					cctx, cancel := context.WithTimeout(ctx, l.watchdog/3)
					defer cancel()
					checkc <- svc.check(cctx)
				}()
			}
		case err := <-checkc:
			checking = false
			if err != nil {
				l.log.Warn("health check failed; not pinging the watchdog", "err", err)
				continue
			}
			l.n.watchdog()
		case <-st.C:
			if s := line(); s != last {
				last = s
				l.n.status(s)
			}
		}
	}
}

// reload runs svc.reload between RELOADING=1 and the caller's READY=1.
func (l *lifecycle) reload(svc service) error {
	l.n.reloading()
	summary, err := svc.reload()
	if err != nil {
		l.log.Error("reload failed; the running configuration stays", "err", err)
		return err
	}
	l.log.Info("reloaded", "result", summary)
	return nil
}

func noteFor(reloadErr error) string {
	if reloadErr != nil {
		return "last reload failed, see the journal"
	}
	return ""
}

// requestReload asks the running lifecycle for a reload and waits for it.
func (l *lifecycle) requestReload(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case l.reloads <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
