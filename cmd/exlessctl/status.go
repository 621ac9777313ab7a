package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show whether exlessd is logged in and can reach Vault",
		Action: func(c *cli.Context) error {
			s, err := client(c).Status(c.Context)
			if err != nil {
				return err
			}
			out := c.App.Writer
			fmt.Fprintf(out, "state\t%s\n", s.State)
			fmt.Fprintf(out, "logged in\t%t\n", s.LoggedIn)
			fmt.Fprintf(out, "vault\t%s\n", map[bool]string{true: "reachable", false: "unreachable"}[s.VaultReachable])
			fmt.Fprintf(out, "client tokens\t%d\n", s.ClientTokens)
			fmt.Fprintf(out, "served\t%d\n", s.Served)
			fmt.Fprintf(out, "denied\t%d\n", s.Denied)
			for _, r := range s.DegradedReasons {
				fmt.Fprintf(out, "degraded\t%s\n", r)
			}
			return nil
		},
	}
}
