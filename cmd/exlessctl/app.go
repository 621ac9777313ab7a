package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/exless/exless/daemon/api"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes: the contract scripts rely on. exec exits with its command's
// status instead, once the command has started.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitDenied      = 3
	exitUnreachable = 4
	exitUnavailable = 5
)

// description is the long help, and the man page's DESCRIPTION.
const description = `exlessctl asks exlessd, over its Unix socket, for Exceptionless tokens and
about its state. exlessd decides by the caller's kernel-attested identity
(uid, gid, groups) whether to answer; 'exlessctl whoami' shows what it sees.

No secret is ever taken on the command line. Output of token is only the
token in the chosen format; errors are one line on stderr starting with
"exlessctl:".

Exit status: 0 ok; 1 other error; 2 usage error; 3 denied (by the policy, or
by the socket's permissions); 4 exlessd unreachable; 5 Exceptionless or
Vault unavailable. exec exits with its command's status (128+N when the
command is killed by signal N).

Environment: EXLESS_SOCKET is the socket path (default
/run/exless/exlessd.sock); --socket, before or after the command, wins.`

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
	var names []string
	if c != nil {
		// Walk up so that a subcommand is named with its parents
		// ("policy explain").
		for _, lc := range c.Lineage() {
			if lc.Command != nil && lc.Command.Name != "" && lc.Command.Name != c.App.Name {
				names = append([]string{lc.Command.Name}, names...)
			}
		}
	}
	name := strings.Join(names, " ")
	return &usageError{msg: fmt.Sprintf(format, args...), command: name}
}

// shown quotes a value from the command line for an error message, unless
// it is long enough to be a credential pasted in the wrong place: error
// lines end up in logs and CI output.
func shown(s string) string {
	if len(s) > 20 {
		return fmt.Sprintf("(%d characters, not shown)", len(s))
	}
	return fmt.Sprintf("%q", s)
}

// childExit is how exec reports its command's status: run exits with it and
// prints nothing, since the command has spoken for itself.
type childExit struct{ code int }

func (e *childExit) Error() string { return fmt.Sprintf("command exited with status %d", e.code) }

// socketFlag is declared on the app and on every command, so that --socket
// works before or after the command name. Only the app's copy reads
// EXLESS_SOCKET and has the default; a command's copy counts only when it is
// given on the command line, so the flag always beats the environment.
func socketFlag(app bool) cli.Flag {
	f := &cli.StringFlag{Name: "socket", Usage: "exlessd socket `PATH` (default: $EXLESS_SOCKET, else " + api.DefaultSocket + ")", TakesFile: true}
	if app {
		f.Usage = "exlessd socket `PATH`"
		f.Value = api.DefaultSocket
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

func client(c *cli.Context) *api.Client { return api.NewClient(socketPath(c)) }

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usagef(c, "%v", err)
}

// newApp builds the CLI. argv is the command line being run: shell
// completion reads it (urfave/cli's own completer reads os.Args instead).
func newApp(argv []string, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "exlessctl",
		HelpName:             "exlessctl",
		Usage:                "get Exceptionless tokens from exlessd",
		Description:          description,
		Version:              version,
		Writer:               stdout,
		ErrWriter:            stderr,
		Flags:                []cli.Flag{socketFlag(true)},
		OnUsageError:         onUsageError,
		EnableBashCompletion: true,
		BashComplete:         completer(argv, nil),
		Commands: []*cli.Command{
			tokenCommand(), execCommand(), whoamiCommand(), statusCommand(),
			rotateCommand(), reloadCommand(), policyCommand(), versionCommand(),
		},
		// Reached only without a known command: a script calling
		// "exlessctl $cmd" with an empty or wrong $cmd must fail, not
		// print the help and succeed.
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef(nil, "unknown command %s", shown(c.Args().First()))
			}
			return usagef(nil, "missing command: token, exec, whoami, status, rotate, reload, policy or version")
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	for _, cmd := range app.Commands {
		cmd.Flags = append(cmd.Flags, socketFlag(false))
		cmd.OnUsageError = onUsageError
		cmd.HideHelpCommand = true // "exlessctl help token" and "token --help" remain
		cmd.BashComplete = completer(argv, cmd)
	}
	return app
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	parsed := args
	if isCompletion(args) && slices.Contains(args[:len(args)-1], "--") {
		// urfave/cli treats a completion request that contains "--" as
		// a real command line: exec would run the command. A <Tab> must
		// never do that, so answer with no candidates.
		if args[len(args)-2] != "--" {
			return exitOK
		}
		// "--" is the word being completed, as a flag's start; urfave
		// must not see it (the completer still does).
		parsed = append(slices.Clone(args[:len(args)-2]), "-", completionFlag)
	}
	err := newApp(args, stdout, stderr).RunContext(ctx, parsed)
	if err == nil {
		return exitOK
	}
	var ce *childExit
	if errors.As(err, &ce) {
		return ce.code
	}
	fmt.Fprintf(stderr, "exlessctl: %s\n", oneLine(explain(err)))
	return exitCode(err)
}

// explain adds to an error what to do about it, where the error itself
// does not say.
func explain(err error) string {
	var (
		denied *api.AccessDeniedError
		apiErr *api.APIError
	)
	switch {
	case errors.As(err, &denied) && !denied.Socket:
		// The daemon's text names the attested identity and what no
		// rule grants.
		return err.Error() + " (an operator must add a rule to exlessd's policy; 'exlessctl whoami' shows what exlessd sees of you)"
	case errors.As(err, &apiErr) && apiErr.Unavailable():
		return err.Error() + " (exlessd is degraded: retry later; 'exlessctl status' says why)"
	case errors.Is(err, context.Canceled):
		return "interrupted"
	}
	return err.Error()
}

func exitCode(err error) int {
	var (
		usage   *usageError
		denied  *api.AccessDeniedError
		unreach *api.UnreachableError
		apiErr  *api.APIError
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
