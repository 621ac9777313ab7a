package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print exlessctl's version",
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef(c, "unexpected argument %s: version takes no arguments", shown(c.Args().First()))
			}
			_, err := fmt.Fprintln(c.App.Writer, "exlessctl", version)
			return err
		},
	}
}
