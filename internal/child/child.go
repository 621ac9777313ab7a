// Package child runs the servers that tests and the benchmark harness start
// as processes (Vault dev servers, exlessd, the floor): each in a process
// group of its own, so that a ^C meant for the parent does not stop it
// midway, killed by the kernel if the parent dies (even by SIGKILL), reaped
// by one goroutine, and stopped with SIGTERM, then SIGKILL.
package child

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Proc is a started child process.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is reaped
	err  error         // Wait's error, valid once done is closed
}

// Start runs bin with args, env (nil: none) and working directory dir,
// stdout and stderr going to out (nil: /dev/null).
func Start(bin string, args, env []string, dir string, out *os.File) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	if out != nil { // a nil *os.File in an io.Writer is not "no output"
		cmd.Stdout = out
		cmd.Stderr = out
	}
	// Pdeathsig follows the forking OS thread; the Go runtime only retires
	// threads locked by a goroutine that exits, which the caller's is not.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the child's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed once the child has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the child exited (Wait's error); valid once Done is closed.
func (p *Proc) Err() error { return p.err }

// Exited reports whether the child has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the child at once and reaps it.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM, then SIGKILL if the child has not exited within
// grace, and reaps it. It fails only if the child outlives SIGKILL by
// another grace. Signals go through os.Process, which uses a pidfd: never
// to another process that reused the pid.
func (p *Proc) Stop(grace time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		return fmt.Errorf("pid %d did not exit after SIGKILL", p.PID())
	}
}

// Args is the child's command line, program name first.
func (p *Proc) Args() []string { return p.cmd.Args }
