package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/exless/exless/daemon/api"
	"github.com/exless/exless/daemon/policy"
)

var (
	scopes       = []string{api.ScopeUser, api.ScopeClient}
	tokenFormats = []string{"raw", "json", "env"}
)

// defaultEnvName is the variable Exceptionless clients conventionally read.
const defaultEnvName = "EXCEPTIONLESS_API_KEY"

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:      "token",
		Usage:     "print a token for use in $(...)",
		UsageText: "exlessctl token --scope user|client [--project ID] [--format raw|json|env] [--env-name NAME]",
		Flags: append(scopeFlags(),
			&cli.StringFlag{Name: "format", Value: "raw", Usage: "output `FORMAT`: raw (the token and a newline), json (the daemon's record) or env (a NAME=token line, for eval or an env file)"},
			envNameFlag(),
		),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef(c, "unexpected argument %s: token takes only flags", shown(c.Args().First()))
			}
			scope, project, err := scopeAndProject(c)
			if err != nil {
				return err
			}
			format := c.String("format")
			if !slices.Contains(tokenFormats, format) {
				return usagef(c, "--format must be raw, json or env, not %s", shown(format))
			}
			envName := c.String("env-name")
			if c.IsSet("env-name") && format != "env" {
				return usagef(c, "--env-name goes with --format env")
			}
			if err := checkEnvName(c, envName); err != nil {
				return err
			}
			resp, err := client(c).Token(c.Context, scope, project)
			if err != nil {
				return err
			}
			out := c.App.Writer
			switch format {
			case "json":
				// The record as the daemon sent it; Token is a plain
				// string to encoding/json (it redacts only in fmt and
				// slog).
				err = json.NewEncoder(out).Encode(resp)
			case "env":
				_, err = fmt.Fprintf(out, "%s=%s\n", envName, shellQuote(resp.Token.Reveal()))
			default:
				_, err = fmt.Fprintln(out, resp.Token.Reveal())
			}
			return err
		},
	}
}

// scopeFlags are token's and exec's way of naming a token.
func scopeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "scope", Usage: "the token's `SCOPE`: user (the account's) or client (one project's)"},
		&cli.StringFlag{Name: "project", Usage: "project `ID`, or ORGANIZATION/PROJECT-NAME (with --scope client)"},
	}
}

func envNameFlag() cli.Flag {
	return &cli.StringFlag{Name: "env-name", Value: defaultEnvName, Usage: "environment variable `NAME` for the token"}
}

// scopeAndProject checks --scope and --project before anything is asked of
// the daemon.
func scopeAndProject(c *cli.Context) (scope, project string, err error) {
	scope, project = c.String("scope"), c.String("project")
	switch scope {
	case api.ScopeUser:
		if project != "" {
			return "", "", usagef(c, "--project goes with --scope client only")
		}
	case api.ScopeClient:
		switch {
		case project == "":
			return "", "", usagef(c, "--scope client needs --project ID")
		case !policy.ValidProjectID(project) && !policy.IsProjectName(project):
			// exlessd resolves ORGANIZATION/NAME to the id.
			return "", "", usagef(c, "--project must be a project id (24 to 36 letters and digits) or ORGANIZATION/PROJECT-NAME")
		}
	case "":
		return "", "", usagef(c, "--scope is required: user or client")
	default:
		return "", "", usagef(c, "--scope must be user or client, not %s", shown(scope))
	}
	return scope, project, nil
}

// validEnvName reports whether name is a shell variable name
// ([A-Za-z_][A-Za-z0-9_]*), checked by hand: a package-level regexp would be
// compiled at every start, token or not.
func validEnvName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return name != ""
}

func checkEnvName(c *cli.Context, name string) error {
	if !validEnvName(name) {
		return usagef(c, "--env-name must be a shell variable name (letters, digits and _, not starting with a digit)")
	}
	return nil
}

// shellQuote makes s one word for sh, bash and zsh. Tokens are letters and
// digits, which are left bare so that the line also works in env files that
// do not unquote (docker --env-file); anything else is single-quoted.
func shellQuote(s string) string {
	bare := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.,:/@%+=", r))
	}) < 0
	if bare {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
