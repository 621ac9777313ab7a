package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

func whoamiCommand() *cli.Command {
	return &cli.Command{
		Name:  "whoami",
		Usage: "show who exlessd sees calling and what its policy grants",
		Flags: []cli.Flag{formatFlag()},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef(c, "unexpected argument %s: whoami takes only flags", shown(c.Args().First()))
			}
			if _, err := checkTextFormat(c); err != nil {
				return err
			}
			w, err := client(c).WhoAmI(c.Context)
			if err != nil {
				return err
			}
			return writeView(c, w, renderWhoAmI)
		},
	}
}

// renderWhoAmI lays out /v1/whoami: the identity the kernel attested, then
// what the policy grants it.
func renderWhoAmI(t *table, o object) {
	named := func(id, name any) string {
		if name == nil || name == "" {
			return plain("", id)
		}
		return plain("", id) + " (" + plain("", name) + ")"
	}
	user, _ := o.take("user")
	group, _ := o.take("group")
	if v, ok := o.take("uid"); ok {
		t.add("uid", named(v, user))
	}
	if v, ok := o.take("gid"); ok {
		t.add("gid", named(v, group))
	}
	names, _ := o.take("group_names")
	if v, ok := o.take("groups"); ok {
		gs, _ := v.([]any)
		ns, _ := names.([]any)
		parts := make([]string, len(gs))
		for i, g := range gs {
			var n any
			if len(ns) == len(gs) {
				n = ns[i]
			}
			parts[i] = named(g, n)
		}
		if len(parts) == 0 {
			parts = []string{"none"}
		}
		t.add("groups", strings.Join(parts, " "))
	}
	pin, _ := o.take("pin")
	if v, ok := o.take("pid"); ok {
		if pin != nil && pin != "" {
			t.add("pid", fmt.Sprintf("%s (pinned: %s)", plain("", v), plain("", pin)))
		} else {
			t.add("pid", plain("", v))
		}
	}
	userUnit, _ := o.take("user_unit")
	if v, ok := o.take("unit"); ok && v != "" {
		unit := plain("", v)
		if userUnit == true {
			unit += " (a user manager's unit)"
		}
		t.add("unit", unit)
	}
	path, _ := o.take("exe_path")
	sum, _ := o.take("exe_sha256")
	unknown, _ := o.take("exe_unknown")
	switch {
	case path != nil && path != "":
		exe := plain("", path)
		if sum != nil && sum != "" {
			exe += " sha256 " + plain("", sum)
		}
		t.add("exe", exe)
	case sum != nil && sum != "":
		// The daemon reads the path only for policies with exe_paths.
		t.add("exe", "sha256 "+plain("", sum)+" (path not read: no rule uses exe_paths)")
	case unknown != nil && unknown != "":
		t.add("exe", plain("", unknown))
	}
	if v, ok := o.take("grants"); ok {
		grants, _ := v.([]any)
		if len(grants) == 0 {
			t.add("grants", "none: no rule matches this identity")
		}
		for _, g := range grants {
			t.add("grant", grantLine(g))
		}
	}
	if v, ok := o.take("can_status"); ok {
		t.add("status", map[any]string{true: "may read status and policy explanations", false: "may not read status"}[v])
	}
	t.addRest(o)
}

// grantLine renders one policy grant: rule "name": actions a scopes b projects c.
func grantLine(g any) string {
	o, ok := g.(object)
	if !ok {
		return plain("grant", g)
	}
	var b strings.Builder
	if v, ok := o.take("rule"); ok {
		fmt.Fprintf(&b, "rule %q:", plain("rule", v))
	}
	for _, key := range []string{"actions", "scopes", "projects"} {
		if v, ok := o.take(key); ok {
			if list, _ := v.([]any); len(list) > 0 {
				fmt.Fprintf(&b, " %s %s", key, plain(key, v))
			}
		}
	}
	for _, f := range o {
		fmt.Fprintf(&b, " %s %s", f.key, plain(f.key, f.value))
	}
	return strings.TrimSpace(b.String())
}
