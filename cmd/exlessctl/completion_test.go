package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCompletionCandidates drives the completion protocol in process: the
// words up to the current one, then --generate-bash-completion.
func TestCompletionCandidates(t *testing.T) {
	tests := []struct {
		words []string // the last is the word being completed
		want  []string
	}{
		{[]string{""}, []string{"token", "exec", "whoami", "status", "rotate", "reload", "policy", "version", "help"}},
		{[]string{"to"}, []string{"token"}},
		{[]string{"--so"}, []string{"--socket"}},
		{[]string{"--socket", ""}, nil}, // a path: the shell completes files
		{[]string{"--socket", "/x", "st"}, []string{"status"}},
		{[]string{"token", "--sc"}, []string{"--scope"}},
		{[]string{"token", "--scope"}, []string{"--scope"}}, // the flag itself, not its values
		{[]string{"token", "--scope", ""}, []string{"user", "client"}},
		{[]string{"token", "--scope", "c"}, []string{"client"}},
		{[]string{"token", "--format", ""}, []string{"raw", "json", "env"}},
		{[]string{"token", "--scope", "user", ""}, []string{"--project", "--format", "--env-name", "--socket", "--help"}},
		{[]string{"status", "--format", "j"}, []string{"json"}},
		{[]string{"whoami", "--"}, []string{"--format", "--socket", "--help"}},
		{[]string{"exec", "--scope", "user", ""}, []string{"--", "--project", "--env-name", "--fd", "--no-mask", "--socket", "--help"}},
		{[]string{"exec", "--fd", "--scope", "user", "ls", ""}, nil}, // the command's own arguments
		{[]string{"exec", "--scope", "user", "--", "ls", ""}, nil},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.words, " "), func(t *testing.T) {
			r := ctl(t, append(slices.Clone(tc.words), completionFlag)...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			if got := strings.Fields(r.stdout); !slices.Equal(got, tc.want) {
				t.Errorf("candidates %q, want %q", got, tc.want)
			}
		})
	}
}

// requireShell finds a shell for a completion test. Under CI=true a missing
// shell fails the test (the CI image must install it: apt-get install zsh);
// elsewhere the test is skipped.
func requireShell(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; CI must install it (apt-get install -y %s) to test its completion", name, name)
	}
	t.Skipf("%s is not installed (apt-get install %s); its completion is tested in CI", name, name)
	return ""
}

// completionEnv is the environment for a shell that completes exlessctl:
// the test binary as exlessctl on PATH, logging how it is called.
func completionEnv(t *testing.T) (env []string, log string) {
	t.Helper()
	dir := t.TempDir()
	log = filepath.Join(dir, "calls")
	return []string{
		"PATH=" + binaries(t) + ":/usr/bin:/bin", "HOME=" + dir, "TERM=dumb",
		"EXLESS_SOCKET=" + filepath.Join(dir, "none.sock"), "EXLESSCTL_TEST_LOG=" + log, goraceEnv(),
	}, log
}

func readCalls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestBashCompletion sources the committed script in a real bash, sets
// COMP_WORDS and COMP_CWORD as bash does for <Tab>, calls the completion
// function and reads COMPREPLY.
func TestBashCompletion(t *testing.T) {
	bash := requireShell(t, "bash")
	script, err := filepath.Abs(filepath.Join(contribDir, "completion", "exlessctl.bash"))
	if err != nil {
		t.Fatal(err)
	}
	report := t.TempDir()
	tests := []struct {
		words []string
		want  []string
		calls int // how often exlessctl may be run
	}{
		{[]string{"exlessctl", "to"}, []string{"token"}, 1},
		{[]string{"exlessctl", ""}, []string{"token", "exec", "whoami", "status", "rotate", "reload", "policy", "version", "help"}, 1},
		{[]string{"exlessctl", "token", "--sc"}, []string{"--scope"}, 1},
		{[]string{"exlessctl", "token", "--scope", ""}, []string{"user", "client"}, 1},
		{[]string{"exlessctl", "--socket", "/x", "sta"}, []string{"status"}, 1},
		{[]string{"exlessctl", "status", "--"}, []string{"--format", "--socket", "--help"}, 1},
		{[]string{"exlessctl", "status", "--format", "te"}, []string{"text"}, 1},
		// After "--" the words are exec's command: exlessctl is not run.
		{[]string{"exlessctl", "exec", "--scope", "user", "--", "exless-child", "report", report, ""}, nil, 0},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.words, " "), func(t *testing.T) {
			env, log := completionEnv(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bash, append([]string{"--norc", "--noprofile", "-c", `
source "$0" || exit 10
complete -p exlessctl | grep -q -- '-F _exlessctl' || exit 11
COMP_WORDS=("$@")
COMP_CWORD=$(( $# - 1 ))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
_exlessctl || exit 12
printf '%s\n' "${COMPREPLY[@]}"
`, script}, tc.words...)...)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			if got := strings.Fields(string(out)); !slices.Equal(got, tc.want) {
				t.Errorf("COMPREPLY %q, want %q", got, tc.want)
			}
			if calls := readCalls(t, log); len(calls) != tc.calls {
				t.Errorf("exlessctl ran %d times (%q), want %d", len(calls), calls, tc.calls)
			}
		})
	}
	if entries, _ := os.ReadDir(report); len(entries) != 0 {
		t.Errorf("completing after -- ran the command")
	}
}

// TestZshCompletion runs a real interactive zsh in a pseudo-terminal
// (zsh/zpty), with compinit and the committed _exlessctl on $fpath, types a
// partial command line and <Tab>, and reads back the edited line. Only
// unambiguous completions are typed, so the line shows the result.
func TestZshCompletion(t *testing.T) {
	zsh := requireShell(t, "zsh")
	fpath, err := filepath.Abs(filepath.Join(contribDir, "completion"))
	if err != nil {
		t.Fatal(err)
	}
	env, log := completionEnv(t)
	home := t.TempDir()
	report := t.TempDir()
	tests := []struct{ typed, want string }{
		{"exlessctl to", "exlessctl token "},
		{"exlessctl wh", "exlessctl whoami "},
		{"exlessctl token --sc", "exlessctl token --scope "},
		{"exlessctl token --scope cl", "exlessctl token --scope client "},
		{"exlessctl token --format j", "exlessctl token --format json "},
		{"exlessctl --socket /x sta", "exlessctl --socket /x status "},
		{"exlessctl exec --no-", "exlessctl exec --no-mask "},
		// After "--", zsh's own completion takes over (a command name),
		// and exlessctl is not run.
		{"exlessctl exec --scope user -- exless-chi", "exlessctl exec --scope user -- exless-child "},
	}
	var drive strings.Builder
	fmt.Fprintf(&drive, `zmodload zsh/zpty || exit 10
zpty z 'zsh -f -i' || exit 11
zpty -w z 'PS1="> "; fpath=(%s $fpath); autoload -Uz compinit; compinit -u -d %s/.zcompdump'
zpty -w z 'print-line() { print -r -- "RES""ULT:${BUFFER}:END"; BUFFER=; zle accept-line }; zle -N print-line; bindkey "^X" print-line'
for line in "$@"; do
	zpty -w -n z "$line"$'\t\x18'
	zpty -r -m z out '*RESULT:*:END*' || exit 12
	print -r -- "${${out##*RESULT:}%%%%:END*}"
done
zpty -d z
`, fpath, home)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"-f", "-c", drive.String(), "zsh"}
	for _, tc := range tests {
		args = append(args, tc.typed)
	}
	cmd := exec.CommandContext(ctx, zsh, args...)
	cmd.Env = append(env, "HOME="+home)
	cmd.Dir = report
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("zsh: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(tests) {
		t.Fatalf("zsh printed %d lines, want %d:\n%s", len(lines), len(tests), out)
	}
	for i, tc := range tests {
		if got := strings.TrimRight(lines[i], "\r"); got != tc.want {
			t.Errorf("%q<Tab> = %q, want %q", tc.typed, got, tc.want)
		}
	}
	// One call per completion before "--", none after.
	if calls := readCalls(t, log); len(calls) != len(tests)-1 {
		t.Errorf("exlessctl ran %d times (%q), want %d", len(calls), calls, len(tests)-1)
	}
	if entries, _ := os.ReadDir(report); len(entries) != 0 {
		t.Errorf("completing after -- ran something in the working directory")
	}
}

// TestFishCompletion loads the generated script into fish, where fish is
// installed; urfave/cli generates it, so this checks syntax and the added
// flag values.
func TestFishCompletion(t *testing.T) {
	fish, err := exec.LookPath("fish")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("fish is not installed; make test installs it (scripts/deps.sh)")
		}
		t.Skip("fish is not installed")
	}
	script, err := filepath.Abs(filepath.Join(contribDir, "completion", "exlessctl.fish"))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := completionEnv(t)
	// A file whose name a command name's completion must not offer.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"exlessctl to", []string{"token"}},
		{"exlessctl token --sc", []string{"--scope"}},
		{"exlessctl token --scope ", []string{"client", "user"}},
	} {
		cmd := exec.Command(fish, "--no-config", "-c", `source $argv[1]; and complete -C $argv[2]`, script, tc.line)
		cmd.Env = env
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			got = append(got, strings.SplitN(l, "\t", 2)[0]) // drop descriptions
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("fish %q: %q, want %q", tc.line, got, tc.want)
		}
	}
}
