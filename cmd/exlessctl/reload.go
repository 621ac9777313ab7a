package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func reloadCommand() *cli.Command {
	return &cli.Command{
		Name:  "reload",
		Usage: "make exlessd re-read its configuration (a bad one is refused and the old one stays)",
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef(c, "unexpected argument %s: reload takes only flags", shown(c.Args().First()))
			}
			if err := client(c).Reload(c.Context); err != nil {
				return err
			}
			_, err := fmt.Fprintln(c.App.Writer, "reloaded")
			return err
		},
	}
}
