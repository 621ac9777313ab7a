package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// contribDir holds the committed completion scripts and man page.
var contribDir = filepath.Join("..", "..", "contrib")

// manExtra adds to urfave/cli's man page what its template leaves out: the
// commands' long descriptions, examples, and where to look next.
const manExtra = `
# COMMAND DETAILS
{{ range $c := .App.VisibleCommands }}{{ if $c.Description }}
## {{ $c.Name }}

{{ $c.Description }}
{{ end }}{{ end }}
# EXAMPLES

` + "```" + `
exlessctl token --scope client --project 537650f3b77efe23a47914f4
exlessctl token --scope client --project Acme/web --format env >> deploy.env
eval "export $(exlessctl token --scope user --format env)"
exlessctl exec --scope client --project Acme/web -- ./deploy.sh
exlessctl exec --fd --scope user -- sh -c 'read -r key <&"$EXLESS_TOKEN_FD"; ...'
exlessctl --socket /run/exless/exlessd.sock status
` + "```" + `

# FILES

/run/exless/exlessd.sock, the default socket; /etc/exless/exlessd.hcl, exlessd's
configuration and policy.

# SEE ALSO

exlessd(8)
`

// generatedFiles renders every committed file this package generates,
// keyed by path under contrib/.
func generatedFiles() (map[string]string, error) {
	app := newApp(nil, io.Discard, io.Discard)

	tmpl := cli.MarkdownDocTemplate
	cli.MarkdownDocTemplate = tmpl + manExtra
	man, err := app.ToManWithSection(1)
	cli.MarkdownDocTemplate = tmpl
	if err != nil {
		return nil, fmt.Errorf("man page: %w", err)
	}

	fish, err := app.ToFishCompletion()
	if err != nil {
		return nil, fmt.Errorf("fish completion: %w", err)
	}
	// urfave/cli keeps the `PLACEHOLDER` quotes of the usage texts and
	// knows no flag values; add them from the table completion uses.
	fish = strings.ReplaceAll(fish, "`", "")
	var b strings.Builder
	b.WriteString(fish)
	b.WriteString("\n# Added by exlessctl's generator: no file names for a command name, and flag values.\n")
	b.WriteString("complete -c exlessctl -n '__fish_exlessctl_no_subcommand' -f\n")
	for _, cmd := range app.Commands {
		choices := flagChoices[cmd.Name]
		names := make([]string, 0, len(choices))
		for n := range choices {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(&b, "complete -c exlessctl -n '__fish_seen_subcommand_from %s' -l %s -x -a '%s'\n",
				cmd.Name, n, strings.Join(choices[n], " "))
		}
	}

	return map[string]string{
		"completion/exlessctl.bash": bashCompletion,
		"completion/_exlessctl":     zshCompletion,
		"completion/exlessctl.fish": b.String(),
		"man/exlessctl.1":           man,
	}, nil
}

// TestGeneratedFiles regenerates the completion scripts and the man page
// and compares them with the committed ones; -update (go generate) rewrites
// them.
func TestGeneratedFiles(t *testing.T) {
	files, err := generatedFiles()
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		path := filepath.Join(contribDir, name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (go generate ./cmd/exlessctl creates it)", err)
			continue
		}
		if string(got) != content {
			t.Errorf("%s differs from what the commands generate; run go generate ./cmd/exlessctl and commit it", path)
		}
	}
}

// TestManPage: the committed man page renders without warnings and covers
// every command.
func TestManPage(t *testing.T) {
	files, err := generatedFiles()
	if err != nil {
		t.Fatal(err)
	}
	man := files["man/exlessctl.1"]
	for _, want := range []string{".TH exlessctl 1", "EXLESS_SOCKET", "Exit status", "EXLESS_TOKEN_FD", "concealed by exlessctl", "exlessd(8)"} {
		if !strings.Contains(man, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	for _, c := range newApp(nil, io.Discard, io.Discard).VisibleCommands() {
		if !strings.Contains(man, "\n.SH "+c.Name+"\n") {
			t.Errorf("man page lacks a section for command %s", c.Name)
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("groff not installed: the page is not test-rendered")
		return
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(man)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("groff -man: %v\n%s", err, out)
	}
}
