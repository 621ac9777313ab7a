package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// tokenFDEnv names the descriptor that exec --fd passes the token on.
const tokenFDEnv = "EXLESS_TOKEN_FD"

// forwardedSignals are passed on to exec's command. SIGTSTP and friends are
// not: job control acts on the whole process group already.
var forwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH,
}

// outputGrace is how long exec keeps copying (and masking) output after its
// command exits, for processes the command left behind that still hold its
// stdout or stderr.
const outputGrace = time.Second

func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command with a token in its environment or on a file descriptor",
		UsageText: "exlessctl exec --scope user|client [--project ID] [--env-name NAME | --fd] [--no-mask] -- COMMAND [ARG...]",
		Description: `The command gets the token in $EXCEPTIONLESS_API_KEY (--env-name to rename),
or with --fd on an inherited, read-only file descriptor named in $EXLESS_TOKEN_FD
(the token and a newline; read it with: read -r key <&"$EXLESS_TOKEN_FD"), so
that it never appears in /proc/PID/environ. Signals (INT, TERM, HUP, QUIT, USR1,
USR2, WINCH) are forwarded to it, and exlessctl exits with its status. The
token is replaced by ` + "`" + mask + "`" + ` in its stdout and stderr
unless --no-mask is given, which also lets the command write to the terminal
directly.`,
		Flags: append(scopeFlags(),
			envNameFlag(),
			&cli.BoolFlag{Name: "fd", Usage: "pass the token on a file descriptor named in $" + tokenFDEnv + ", not in the environment"},
			&cli.BoolFlag{Name: "no-mask", Usage: "do not conceal the token in the command's output"},
		),
		Action: runExec,
	}
}

func runExec(c *cli.Context) error {
	scope, project, err := scopeAndProject(c)
	if err != nil {
		return err
	}
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return usagef(c, "exec needs a command to run, after --")
	}
	useFD := c.Bool("fd")
	envName := c.String("env-name")
	if useFD && c.IsSet("env-name") {
		return usagef(c, "--env-name and --fd exclude each other")
	}
	if err := checkEnvName(c, envName); err != nil {
		return err
	}
	// Before asking for a token: a typo should not fetch one.
	path, err := exec.LookPath(argv[0])
	if err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			err = ee.Err // its text repeats the name
		}
		return fmt.Errorf("cannot run %s: %w", argv[0], err)
	}
	resp, err := client(c).Token(c.Context, scope, project)
	if err != nil {
		return err
	}
	token := []byte(resp.Token.Reveal())

	// The environment is the only way in for the token, never argv.
	cmd := &exec.Cmd{Path: path, Args: argv, Stdin: os.Stdin, WaitDelay: outputGrace}
	cmd.Env = withoutVars(os.Environ(), envName, tokenFDEnv)
	if useFD {
		f, err := tokenFile(token)
		if err != nil {
			return fmt.Errorf("pass the token on a file descriptor: %w", err)
		}
		defer f.Close()
		cmd.ExtraFiles = []*os.File{f}
		cmd.Env = append(cmd.Env, tokenFDEnv+"=3") // ExtraFiles[0] is fd 3
	} else {
		cmd.Env = append(cmd.Env, envName+"="+string(token))
	}

	var masks []*maskWriter
	if c.Bool("no-mask") {
		cmd.Stdout, cmd.Stderr = c.App.Writer, c.App.ErrWriter
	} else {
		stdout, stderr := newMaskWriter(c.App.Writer, token), newMaskWriter(c.App.ErrWriter, token)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		masks = append(masks, stdout, stderr)
		// Our stdout may be a pipe that closes (| head). Without this
		// the Go runtime kills exlessctl on the first write, leaving the
		// command running; with it the write fails, the command's pipe
		// closes, and the command gets its own SIGPIPE, as in a shell
		// pipeline. Caught signals revert to default in the command.
		pipes := make(chan os.Signal, 1)
		signal.Notify(pipes, syscall.SIGPIPE)
		defer signal.Stop(pipes)
	}

	// Catch before starting, so that no signal is lost in between.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot run %s: %w", argv[0], err)
	}
	done := make(chan struct{})
	go forwardSignals(cmd.Process, sigs, done)
	err = cmd.Wait()
	close(done)
	for _, m := range masks {
		if ferr := m.Flush(); ferr != nil && err == nil {
			err = ferr
		}
	}

	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
	case err == nil, errors.Is(err, exec.ErrWaitDelay), errors.Is(err, syscall.EPIPE):
		// Success, or output cut off after the command itself was
		// done: its status still stands.
	default:
		return fmt.Errorf("copy the output of %s: %w", argv[0], err)
	}
	return &childExit{code: exitStatus(cmd.ProcessState)}
}

// exitStatus is a shell's $? for a finished process.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// forwardSignals passes caught signals on to p until done.
//
// When exlessctl runs in the foreground of a terminal, the terminal already
// sends the keyboard's SIGINT and SIGQUIT, and SIGWINCH, to the whole
// foreground process group, the command included; forwarding them too
// would deliver them twice, and some programs treat a second Ctrl-C as
// "abort now". Those three are therefore forwarded only when exlessctl is
// not the terminal's foreground job (scripts, units, kill from elsewhere).
func forwardSignals(p *os.Process, sigs <-chan os.Signal, done <-chan struct{}) {
	tty, err := os.Open("/dev/tty")
	if err != nil {
		tty = nil // no controlling terminal
	} else {
		defer tty.Close()
	}
	for {
		select {
		case <-done:
			return
		case s := <-sigs:
			switch s {
			case syscall.SIGINT, syscall.SIGQUIT, syscall.SIGWINCH:
				if foreground(tty) {
					continue
				}
			}
			_ = p.Signal(s) // fails only if p has exited
		}
	}
}

// foreground reports whether this process's group is the foreground group
// of tty.
func foreground(tty *os.File) bool {
	if tty == nil {
		return false
	}
	pgrp, err := unix.IoctlGetInt(int(tty.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

// withoutVars returns env without the named variables.
func withoutVars(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			if name == n {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// tokenFile returns a read-only file holding the token and a newline, for
// the command to inherit: a sealed memfd (which the command can reread,
// e.g. through /dev/fd/N), or a pipe where memfds are unavailable.
func tokenFile(token []byte) (*os.File, error) {
	data := append(append([]byte{}, token...), '\n')
	if f, err := sealedMemfd(data); err == nil {
		return f, nil
	}
	return tokenPipe(data)
}

func tokenPipe(data []byte) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	// A token is far below the pipe buffer (64 KiB): this cannot block.
	if _, err := w.Write(data); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func sealedMemfd(data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("exless-token", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "exless-token")
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return nil, err
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS,
		unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return nil, err
	}
	// A read-only open file description of its own, at offset 0.
	return os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_RDONLY, 0)
}
