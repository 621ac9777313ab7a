package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show whether exlessd is logged in, can reach Vault, and why it is degraded",
		Flags: []cli.Flag{formatFlag()},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef(c, "unexpected argument %s: status takes only flags", shown(c.Args().First()))
			}
			if _, err := checkTextFormat(c); err != nil {
				return err
			}
			s, err := client(c).Status(c.Context)
			if err != nil {
				return err
			}
			return writeView(c, s, renderStatus)
		},
	}
}

// renderStatus lays out /v1/status: state and why first, then each part.
func renderStatus(t *table, o object) {
	if v, ok := o.take("state"); ok {
		t.add("state", plain("state", v))
	}
	if v, ok := o.take("degraded_reasons"); ok {
		reasons, _ := v.([]any)
		for _, r := range reasons {
			t.add("reason", plain("reason", r))
		}
	}
	if v, ok := o.take("vault_reachable"); ok {
		t.add("vault", map[any]string{true: "reachable", false: "unreachable"}[v])
	}
	if v, ok := o.take("logged_in"); ok {
		t.add("login", map[any]string{true: "logged in to Exceptionless", false: "not logged in to Exceptionless"}[v])
	}
	if v, ok := o.take("lease_holder"); ok && v != "" {
		t.add("lease", "held by "+plain("", v))
	}
	if v, ok := o.take("client_tokens"); ok {
		t.add("held", plain("", v)+" client tokens")
	}
	if v, ok := o.take("tokens"); ok {
		tokens, _ := v.([]any)
		for _, tok := range tokens {
			t.add("token", tokenLine(tok))
		}
	}
	if v, ok := o.take("last_rotation"); ok && v != nil {
		t.add("rotated", "last at "+plain("", v))
	}
	type count struct{ key, what string }
	counts := func(label string, cs ...count) {
		var parts []string
		for _, c := range cs {
			if v, ok := o.take(c.key); ok {
				if c.key == "password_changes" && plain("", v) == "0" {
					continue // only daemons with the password in Vault change it
				}
				parts = append(parts, c.what+" "+plain("", v))
			}
		}
		if len(parts) > 0 {
			t.add(label, strings.Join(parts, ", "))
		}
	}
	counts("counts", count{"requests", "requests"}, count{"tokens_served", "served"}, count{"requests_denied", "refused"},
		count{"logins", "logins"}, count{"mints", "mints"}, count{"rotations", "rotations"}, count{"revocations", "revocations"},
		count{"connections_cut_off", "connections cut off"}, count{"rate_limited", "rate limited"},
		count{"password_changes", "password changes"})
	if v, ok := o.take("connections_cut_off_by_reason"); ok {
		if reasons, ok := v.(object); ok {
			var parts []string
			for _, f := range reasons {
				if n := plain("", f.value); n != "0" {
					parts = append(parts, f.key+" "+n)
				}
			}
			if len(parts) > 0 {
				t.add("cut off", strings.Join(parts, ", "))
			}
		}
	}
	counts("failures", count{"vault_errors", "vault calls"}, count{"upstream_errors", "exceptionless calls"},
		count{"attestation_failures", "peers not identified"})
	t.addRest(o)
}

// tokenLine renders one held token: what it is for, where and when it came
// from, and how fresh the daemon's copy is. Never the token: the daemon
// sends a fingerprint.
func tokenLine(v any) string {
	o, ok := v.(object)
	if !ok {
		return plain("token", v)
	}
	str := func(key string) string {
		if v, ok := o.take(key); ok && v != nil && v != "" {
			return plain(key, v)
		}
		return ""
	}
	line := str("scope")
	if p := str("project_id"); p != "" {
		line += " " + p
	}
	var facts []string
	if by := str("obtained_by"); by != "" {
		facts = append(facts, "from "+by)
	}
	if age := str("age_seconds"); age != "" {
		facts = append(facts, age+" old")
	}
	o.take("obtained_at") // age says it for people
	if stale := str("stale_seconds"); stale != "" {
		facts = append(facts, "read from Vault "+stale+" ago")
	}
	if ver := str("version"); ver != "" {
		facts = append(facts, "version "+ver)
	}
	if r := str("retiring"); r != "" && r != "0" {
		facts = append(facts, r+" retiring")
	}
	if fp := str("fingerprint"); fp != "" {
		facts = append(facts, "fingerprint "+fp)
	}
	for _, f := range o {
		facts = append(facts, f.key+" "+plain(f.key, f.value))
	}
	if len(facts) > 0 {
		line += ": " + strings.Join(facts, ", ")
	}
	return line
}
