package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/exless/exless/daemon"
)

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:      "token",
		Usage:     "print a token for use in $(...)",
		UsageText: "exlessctl token --scope user\n   exlessctl token --scope client --project ID",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "scope", Usage: "`user` or client"},
			&cli.StringFlag{Name: "project", Usage: "project `ID` (for --scope client)"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef(c, "unexpected argument %q", c.Args().First())
			}
			scope, project := c.String("scope"), c.String("project")
			switch scope {
			case daemon.ScopeUser:
				if project != "" {
					return usagef(c, "--project goes with --scope client only")
				}
			case daemon.ScopeClient:
				if project == "" {
					return usagef(c, "--scope client needs --project ID")
				}
			case "":
				return usagef(c, "--scope is required: user or client")
			default:
				return usagef(c, "--scope must be user or client, not %q", scope)
			}
			resp, err := client(c).Token(c.Context, scope, project)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(c.App.Writer, resp.Token.Reveal())
			return err
		},
	}
}
