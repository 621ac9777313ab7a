package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/exless/exless/daemon/api"
	"github.com/exless/exless/daemon/policy"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "inspect exlessd's policy",
		Subcommands: []*cli.Command{{
			Name:  "explain",
			Usage: "say whether an identity would get a token or action, and which rule decides",
			UsageText: "exlessctl policy explain --uid 1000 --scope client --project ORG/NAME\n" +
				"   exlessctl policy explain --user deploy --unit deploy.service --exe /usr/local/bin/deploy --scope client --project ID\n" +
				"   exlessctl policy explain --config /etc/exless/exlessd.hcl --group ops --action reload",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "uid", Usage: "numeric `UID`"},
				&cli.StringFlag{Name: "user", Usage: "user `NAME` (resolved here)"},
				&cli.StringFlag{Name: "gid", Usage: "primary group `GID`"},
				&cli.StringFlag{Name: "group", Usage: "primary group `NAME` (resolved here)"},
				&cli.StringFlag{Name: "groups", Usage: "supplementary groups, `GID,...`"},
				&cli.StringFlag{Name: "unit", Usage: "systemd `UNIT`, e.g. deploy.service or user@1000.service/app.slice/x.service"},
				&cli.StringFlag{Name: "exe", Usage: "executable `PATH`; its sha256 is computed here", TakesFile: true},
				&cli.StringFlag{Name: "action", Value: policy.ActionToken, Usage: "`ACTION`: token, rotate, reload, status or metrics"},
				&cli.StringFlag{Name: "scope", Usage: "user or client (for token and rotate)"},
				&cli.StringFlag{Name: "project", Usage: "project `ID` or ORG/NAME (for scope client)"},
				&cli.StringFlag{Name: "config", Usage: "evaluate this config `FILE` here, with the exlessd program beside exlessctl or on PATH, instead of asking the running daemon", TakesFile: true},
				formatFlag(),
			},
			Action: explainAction,
		}},
	}
}

func explainAction(c *cli.Context) error {
	if c.Args().Present() {
		return usagef(c, "unexpected argument %s: explain takes only flags", shown(c.Args().First()))
	}
	if _, err := checkTextFormat(c); err != nil {
		return err
	}
	q, err := explainQuery(c)
	if err != nil {
		return err
	}
	var ex policy.Explanation
	if file := c.String("config"); file != "" {
		ex, err = explainOffline(c.Context, file, q)
	} else {
		ex, err = client(c).Explain(c.Context, q)
	}
	if err != nil {
		return err
	}
	return writeView(c, ex, renderExplain)
}

// explainQuery turns the flags into the query the daemon's explain endpoint
// takes, resolving names and hashing the executable on this host.
func explainQuery(c *cli.Context) (url.Values, error) {
	q := url.Values{}
	id := func(numFlag, nameFlag, what string, lookup func(string) (string, error)) (string, error) {
		n, name := c.String(numFlag), c.String(nameFlag)
		switch {
		case n != "" && name != "":
			return "", usagef(c, "give --%s or --%s, not both", numFlag, nameFlag)
		case n != "":
			if _, err := strconv.ParseUint(n, 10, 32); err != nil {
				return "", usagef(c, "--%s must be a number, not %s", numFlag, shown(n))
			}
			return n, nil
		case name != "":
			v, err := lookup(name)
			if err != nil {
				return "", usagef(c, "no %s named %s on this host; give --%s instead", what, shown(name), numFlag)
			}
			return v, nil
		}
		return "", nil
	}
	uid, err := id("uid", "user", "user", func(n string) (string, error) {
		u, err := nssNames{}.LookupUser(n)
		return strconv.FormatUint(uint64(u), 10), err
	})
	if err != nil {
		return nil, err
	}
	gid, err := id("gid", "group", "group", func(n string) (string, error) {
		g, err := nssNames{}.LookupGroup(n)
		return strconv.FormatUint(uint64(g), 10), err
	})
	if err != nil {
		return nil, err
	}
	if uid == "" && c.String("unit") == "" && c.String("exe") == "" && gid == "" {
		return nil, usagef(c, "say whom to explain: --uid/--user, --gid/--group, --unit or --exe")
	}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("uid", uid)
	set("gid", gid)
	set("groups", c.String("groups"))
	set("unit", c.String("unit"))
	if exe := c.String("exe"); exe != "" {
		sum, err := fileSHA256(exe)
		if err != nil {
			return nil, usagef(c, "--exe: %v", err)
		}
		set("exe_path", exe)
		set("exe_sha256", sum)
	}
	action := c.String("action")
	set("action", action)
	if action == policy.ActionToken || action == policy.ActionRotate {
		scope := c.String("scope")
		if scope != api.ScopeUser && scope != api.ScopeClient {
			return nil, usagef(c, "--action %s needs --scope user or client", action)
		}
		if scope == api.ScopeClient && c.String("project") == "" {
			return nil, usagef(c, "--scope client needs --project ID or ORG/NAME")
		}
		set("scope", scope)
		set("project", c.String("project"))
	}
	return q, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// explainOffline evaluates a config file's policy on this host by running
// `exlessd config explain`: exlessd reads the file exactly as it would at
// start, and exlessctl, which starts once per token, stays free of the
// config parser and the daemon (together several milliseconds of package
// init on every run).
func explainOffline(ctx context.Context, file string, q url.Values) (policy.Explanation, error) {
	bin, err := findExlessd()
	if err != nil {
		return policy.Explanation{}, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "config", "explain", "--config", file, "--query", q.Encode())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		// exlessd's error names the file and what to fix; keep exlessctl's
		// one-line error contract.
		msg := strings.Join(strings.Fields(strings.TrimPrefix(stderr.String(), "exlessd: ")), " ")
		if msg == "" {
			msg = fmt.Sprintf("%s config explain: %v", bin, err)
		}
		return policy.Explanation{}, errors.New(msg)
	}
	var ex policy.Explanation
	if err := json.Unmarshal(stdout.Bytes(), &ex); err != nil {
		return policy.Explanation{}, fmt.Errorf("%s config explain answered something other than an explanation (%v): is it the same version as exlessctl?", bin, err)
	}
	return ex, nil
}

// findExlessd looks for exlessd beside this exlessctl (as the package
// installs them), then on PATH.
func findExlessd() (string, error) {
	if self, err := os.Executable(); err == nil {
		if self, err = filepath.EvalSymlinks(self); err == nil {
			p := filepath.Join(filepath.Dir(self), "exlessd")
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	p, err := exec.LookPath("exlessd")
	if err != nil {
		return "", errors.New("--config needs exlessd, which reads the file as the daemon would, and it is neither beside exlessctl nor on PATH: install the exless package, or drop --config to ask the running daemon")
	}
	return p, nil
}

func renderExplain(t *table, o object) {
	allow, _ := o.take("allow")
	reason, _ := o.take("reason")
	verdict := "deny"
	if allow == true {
		verdict = "allow"
	}
	t.add("verdict", verdict+": "+plain("", reason))
	o.take("rule")
	if v, ok := o.take("rules"); ok {
		rules, _ := v.([]any)
		for _, r := range rules {
			ro, ok := r.(object)
			if !ok {
				continue
			}
			name, _ := ro.take("rule")
			why, _ := ro.take("why")
			t.add("rule", fmt.Sprintf("%s: %s", plain("", name), strings.TrimSpace(plain("", why))))
		}
	}
	t.addRest(o)
}
