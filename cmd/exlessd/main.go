// Command exlessd is the exless daemon: it keeps the Exceptionless user token
// in Vault and hands tokens to the local processes its policy allows.
//
// It is a systemd service (Type=notify, socket-activated, watchdog, reload
// on SIGHUP); see the README for the units and the package.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// exitConfig is EX_CONFIG from sysexits.h. exlessd.service lists it in
// RestartPreventExitStatus=, so a bad config file is not restarted in a loop.
const exitConfig = 78

func main() {
	// No core dumps and no ptrace by other processes of the same user: the
	// daemon's memory holds the account's token. (Go cannot promise more:
	// net/http, encoding/json and TLS copy secrets into buffers it does not
	// wipe, so memory locking is not attempted.)
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "exlessd: %v\n", err)
		var ce *configError
		if errors.As(err, &ce) {
			os.Exit(exitConfig)
		}
		os.Exit(1)
	}
}
