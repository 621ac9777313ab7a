package main

import (
	"log/slog"
	"strings"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
)

// notifier sends sd_notify(3) messages to systemd. Outside systemd
// (no $NOTIFY_SOCKET) every call is a no-op.
type notifier struct {
	log *slog.Logger
	// send is sddaemon.SdNotify; tests may replace it.
	send func(unsetEnv bool, state string) (bool, error)
}

func newNotifier(log *slog.Logger) *notifier {
	return &notifier{log: log, send: sddaemon.SdNotify}
}

// notify sends the given KEY=VALUE lines as one datagram, so that systemd
// sees e.g. READY=1 and its STATUS= together.
func (n *notifier) notify(lines ...string) {
	// (false, nil) means not running under systemd: nothing to do. An error
	// is worth a debug line only: the daemon serves either way, and systemd
	// acts on a missing READY=1 or WATCHDOG=1 by itself.
	if _, err := n.send(false, strings.Join(lines, "\n")); err != nil {
		n.log.Debug("sd_notify", "err", err)
	}
}

func (n *notifier) ready(status string) {
	n.notify(sddaemon.SdNotifyReady, "STATUS="+status)
}

// reloading tells systemd a reload began. MONOTONIC_USEC lets systemd (and
// systemctl reload) match the READY=1 that ends it to this reload.
func (n *notifier) reloading() {
	n.notify(sddaemon.SdNotifyReloading, sddaemon.SdNotifyMonotonicUsec(), "STATUS=reloading the configuration")
}

func (n *notifier) stopping() {
	n.notify(sddaemon.SdNotifyStopping, "STATUS=stopping: finishing requests in flight")
}

func (n *notifier) status(s string) { n.notify("STATUS=" + s) }

func (n *notifier) watchdog() { n.notify(sddaemon.SdNotifyWatchdog) }
