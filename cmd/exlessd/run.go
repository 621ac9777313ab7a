package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/exless/exless/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// run is the whole program; main only calls it. args includes the program
// name, as os.Args does.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return newApp(stdout, stderr).RunContext(ctx, args)
}

// newApp defines exlessd's command line. Its definition is also what a
// man page (cli.App.ToMan) would be generated from.
func newApp(stdout, stderr io.Writer) *cli.App {
	configFlag := func() *cli.StringFlag {
		return &cli.StringFlag{Name: "config", Value: daemon.DefaultConfigPath, Usage: "config `FILE`", EnvVars: []string{"EXLESSD_CONFIG"}}
	}
	app := &cli.App{
		Name:      "exlessd",
		Usage:     "keep Exceptionless tokens in Vault and hand them to permitted local processes",
		Version:   version,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unknown command %q (see exlessd --help)", c.Args().First())
			}
			return serve(c.Context, serveOptions{
				configPath:  c.String("config"),
				logLevel:    c.String("log-level"),
				stderr:      stderr,
				startWait:   30 * time.Second,
				statusEvery: 2 * time.Second,
				drain:       5 * time.Second,
			})
		},
		Commands: []*cli.Command{
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintln(c.App.Writer, "exlessd", version)
					return nil
				},
			},
			{
				Name:  "config",
				Usage: "work with the config file",
				Subcommands: []*cli.Command{{
					Name:  "validate",
					Usage: "check the config file: syntax, values, policy, readable secret files; with --online also Vault",
					Flags: []cli.Flag{
						configFlag(),
						&cli.BoolFlag{Name: "online", Usage: "also check that Vault answers and accepts the token"},
					},
					Action: func(c *cli.Context) error {
						return validate(c.Context, c.App.Writer, configPath(c), os.Getenv("CREDENTIALS_DIRECTORY"), c.Bool("online"))
					},
				}, {
					Name:      "explain",
					Usage:     "evaluate the config file's policy for an identity; exlessctl policy explain --config runs this",
					UsageText: "exlessd config explain --config FILE --query 'uid=1000&action=token&scope=client&project=Acme/web'",
					Flags: []cli.Flag{
						configFlag(),
						&cli.StringFlag{Name: "query", Usage: "the identity and request as a URL `QUERY`: uid, gid, groups, unit, exe_path, exe_sha256, action, scope, project", Required: true},
					},
					Action: func(c *cli.Context) error {
						return explain(c.App.Writer, configPath(c), c.String("query"))
					},
				}},
			},
		},
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
	}
	return app
}

// configPath returns the innermost --config given on the command line
// (exlessd --config F config validate works too), else the app's value
// (EXLESSD_CONFIG or the default).
func configPath(c *cli.Context) string {
	lineage := c.Lineage()
	for _, lc := range lineage {
		for _, name := range lc.LocalFlagNames() {
			if name == "config" {
				return lc.String("config")
			}
		}
	}
	return lineage[len(lineage)-1].String("config")
}
