package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/exless/exless/daemon/api"
)

func rotateCommand() *cli.Command {
	return &cli.Command{
		Name:      "rotate",
		Usage:     "replace a project's client token (revoking the old one after a grace period), or change the account password",
		UsageText: "exlessctl rotate --scope client --project ID|ORG/NAME [--grace 10m]\n   exlessctl rotate --scope client --project ID --grace 0   # leaked token: revoke at once\n   exlessctl rotate --scope user --password   # new account password (kept in Vault) and user token",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "scope", Value: api.ScopeClient, Usage: "`client`, or user with --password"},
			&cli.BoolFlag{Name: "password", Usage: "with --scope user: change the Exceptionless password to a new random one kept in Vault (needs exceptionless.password_vault_key); every login token of the account, web sessions included, stops working"},
			&cli.StringFlag{Name: "project", Usage: "project `ID` or ORG/NAME"},
			&cli.StringFlag{Name: "grace", Usage: "how long the old token stays valid, e.g. 10m; 0 revokes at once (default: the daemon's rotation.grace)"},
			formatFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef(c, "unexpected argument %s: rotate takes only flags", shown(c.Args().First()))
			}
			if _, err := checkTextFormat(c); err != nil {
				return err
			}
			switch c.String("scope") {
			case api.ScopeClient:
				if c.Bool("password") {
					return usagef(c, "--password goes with --scope user")
				}
			case api.ScopeUser:
				if !c.Bool("password") {
					return usagef(c, "the user token is not rotated on its own: exlessd logs in again when Exceptionless rejects it; --password changes the account password, which replaces it")
				}
				if c.IsSet("project") || c.IsSet("grace") {
					return usagef(c, "--scope user --password takes no --project or --grace")
				}
				res, err := client(c).RotatePassword(c.Context)
				if err != nil {
					return err
				}
				return writeView(c, res, renderPasswordRotate)
			default:
				return usagef(c, "--scope must be client or user, not %s", shown(c.String("scope")))
			}
			project := c.String("project")
			if project == "" {
				return usagef(c, "--project is required")
			}
			grace := time.Duration(-1)
			if g := c.String("grace"); g != "" {
				d, err := time.ParseDuration(g)
				if err != nil || d < 0 {
					return usagef(c, "--grace must be a duration such as 10m, or 0, not %s", shown(g))
				}
				grace = d
			}
			res, err := client(c).Rotate(c.Context, project, grace)
			if err != nil {
				return err
			}
			return writeView(c, res, renderRotate)
		},
	}
}

func renderRotate(t *table, o object) {
	for _, k := range []struct{ key, label string }{
		{"project_id", "project"}, {"old_fingerprint", "old"}, {"new_fingerprint", "new"},
	} {
		if v, ok := o.take(k.key); ok {
			t.add(k.label, plain("", v))
		}
	}
	revoked, _ := o.take("revoked")
	after, _ := o.take("revoke_after")
	if revoked == true {
		t.add("revoked", "the old token is revoked")
	} else if after != nil {
		t.add("revoke", "the old token stays valid until "+plain("", after))
	}
	if v, ok := o.take("received_by"); ok {
		got, _ := v.([]any)
		if len(got) == 0 {
			t.add("holders", "this daemon gave the old token to nobody")
		}
		for _, g := range got {
			t.add("holder", plain("", g)+" (restart it to pick up the new token)")
		}
	}
	t.addRest(o)
}

func renderPasswordRotate(t *table, o object) {
	for _, k := range []struct{ key, label string }{
		{"old_fingerprint", "old token"}, {"new_fingerprint", "new token"}, {"changed_at", "changed"},
	} {
		if v, ok := o.take(k.key); ok {
			t.add(k.label, plain("", v))
		}
	}
	t.add("password", "changed; the new one is in Vault only")
	if v, ok := o.take("received_by"); ok {
		got, _ := v.([]any)
		for _, g := range got {
			t.add("holder", plain("", g)+" (its user token no longer works: fetch again or restart it)")
		}
	}
	t.addRest(o)
}
