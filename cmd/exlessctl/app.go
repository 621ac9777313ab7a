package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/exless/exless/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes: the contract scripts rely on.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitDenied      = 3
	exitUnreachable = 4
	exitUnavailable = 5
)

// usageError is a mistake in how exlessctl was called.
type usageError struct {
	msg     string
	command string // for the help hint
}

func (e *usageError) Error() string {
	help := "exlessctl --help"
	if e.command != "" {
		help = "exlessctl " + e.command + " --help"
	}
	return fmt.Sprintf("%s (see '%s')", e.msg, help)
}

func usagef(c *cli.Context, format string, args ...any) error {
	name := ""
	if c != nil && c.Command != nil {
		name = c.Command.Name
	}
	return &usageError{msg: fmt.Sprintf(format, args...), command: name}
}

// socketFlag is declared on the app and on every command, so that --socket
// works before or after the command name. Only the app's copy reads
// EXLESS_SOCKET and has the default; a command's copy counts only when it is
// given on the command line, so the flag always beats the environment.
func socketFlag(app bool) cli.Flag {
	f := &cli.StringFlag{Name: "socket", Usage: "exlessd socket `PATH` (env EXLESS_SOCKET)"}
	if app {
		f.Value = daemon.DefaultSocket
		f.EnvVars = []string{"EXLESS_SOCKET"}
	}
	return f
}

// socketPath returns the innermost --socket given on the command line, else
// the app's value (environment or default).
func socketPath(c *cli.Context) string {
	lineage := c.Lineage()
	for _, lc := range lineage {
		for _, name := range lc.LocalFlagNames() {
			if name == "socket" {
				return lc.String("socket")
			}
		}
	}
	return lineage[len(lineage)-1].String("socket")
}

func client(c *cli.Context) *daemon.Client { return daemon.NewClient(socketPath(c)) }

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usagef(c, "%v", err)
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "exlessctl",
		Usage:                "get Exceptionless tokens from exlessd",
		Version:              version,
		Writer:               stdout,
		ErrWriter:            stderr,
		Flags:                []cli.Flag{socketFlag(true)},
		OnUsageError:         onUsageError,
		EnableBashCompletion: true,
		Commands:             []*cli.Command{tokenCommand(), whoamiCommand(), statusCommand(), versionCommand()},
		CommandNotFound: func(c *cli.Context, name string) {
			// Reported from run: urfave/cli gives this hook no way to
			// return an error.
			unknownCommand = name
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	for _, cmd := range app.Commands {
		cmd.Flags = append(cmd.Flags, socketFlag(false))
		cmd.OnUsageError = onUsageError
	}
	return app
}

var unknownCommand string

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	unknownCommand = ""
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil && unknownCommand != "" {
		err = &usageError{msg: fmt.Sprintf("unknown command %q", unknownCommand)}
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "exlessctl: %s\n", oneLine(err.Error()))
	return exitCode(err)
}

func exitCode(err error) int {
	var (
		usage   *usageError
		denied  *daemon.AccessDeniedError
		unreach *daemon.UnreachableError
		apiErr  *daemon.APIError
	)
	switch {
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &denied):
		return exitDenied
	case errors.As(err, &unreach):
		return exitUnreachable
	case errors.As(err, &apiErr) && apiErr.Unavailable():
		return exitUnavailable
	case strings.HasPrefix(err.Error(), "flag provided but not defined"),
		strings.HasPrefix(err.Error(), "Required flag"):
		return exitUsage
	}
	return exitError
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
