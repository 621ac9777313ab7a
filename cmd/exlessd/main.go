// Command exlessd is the exless daemon: it keeps the Exceptionless user token
// in Vault and hands tokens to the local processes its policy allows.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "exlessd: %v\n", err)
		os.Exit(1)
	}
}
