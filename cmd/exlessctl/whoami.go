package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

func whoamiCommand() *cli.Command {
	return &cli.Command{
		Name:  "whoami",
		Usage: "show who exlessd sees calling and what it may have",
		Action: func(c *cli.Context) error {
			w, err := client(c).WhoAmI(c.Context)
			if err != nil {
				return err
			}
			out := c.App.Writer
			fmt.Fprintf(out, "uid\t%d%s\n", w.UID, paren(w.User))
			fmt.Fprintf(out, "gid\t%d%s\n", w.GID, paren(w.Group))
			groups := make([]string, len(w.Groups))
			for i, g := range w.Groups {
				groups[i] = fmt.Sprint(g)
			}
			fmt.Fprintf(out, "groups\t%s\n", strings.Join(groups, " "))
			fmt.Fprintf(out, "pid\t%d\n", w.PID)
			if len(w.Grants) == 0 {
				fmt.Fprintln(out, "grants\tnone: no rule matches this identity")
			}
			for _, g := range w.Grants {
				line := "scopes " + strings.Join(g.Scopes, ",")
				if len(g.Projects) > 0 {
					line += " projects " + strings.Join(g.Projects, ",")
				}
				fmt.Fprintf(out, "grant\trule %q: %s\n", g.Rule, line)
			}
			return nil
		},
	}
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
