// Command exless-floor is the benchmark floor: a bare Go net/http server
// answering every request on a Unix socket with a fixed 60-byte JSON body.
// exless-bench runs it as a process of its own, as exlessd is, and measures
// both with the same client code.
//
//	exless-floor -socket /tmp/x/floor.sock
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/exless/exless/bench/floor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "exless-floor: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("exless-floor", flag.ContinueOnError)
	socket := fs.String("socket", "", "Unix socket `PATH` to listen on (must not exist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *socket == "" {
		return errors.New("-socket is required")
	}
	ln, err := net.Listen("unix", *socket)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: floor.Handler()}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	_ = hs.Close()
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
