package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// command is a program timed as a whole process.
type command struct {
	name string
	bin  string
	args []string
	env  []string // secrets go here, never in args
	dir  string
	mask []string
	// noOutput: the command prints nothing, and that is no error.
	noOutput bool
}

// shown is the command line as printed: argv only, which holds no secret.
func (c command) shown() string {
	return strings.Join(append([]string{c.name0()}, c.args...), " ")
}

func (c command) name0() string {
	if i := strings.LastIndexByte(c.bin, '/'); i >= 0 {
		return c.bin[i+1:]
	}
	return c.bin
}

// counter counts bytes written and keeps none: the output is a token.
type counter struct{ n int }

func (c *counter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

// once runs c once, with its output going to a pipe the harness drains (as
// $(...) would), and returns the wall time from start to exit.
func (c command) once(ctx context.Context) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, c.bin, c.args...)
	var out counter
	var errb bytes.Buffer
	c.prepare(cmd, &out, &errb)
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, c.failure(err, &errb)
	}
	if out.n == 0 && !c.noOutput {
		return d, errors.New("no output")
	}
	return d, nil
}

func (c command) prepare(cmd *exec.Cmd, out, errb io.Writer) {
	cmd.Env = c.env
	cmd.Dir = c.dir
	cmd.Stdout = out
	cmd.Stderr = errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// failure describes a failed run by its first line of stderr, secrets
// masked.
func (c command) failure(err error, errb *bytes.Buffer) error {
	msg := strings.TrimSpace(errb.String())
	for _, s := range c.mask {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[REDACTED]")
		}
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return fmt.Errorf("%v: %.200s", err, msg)
}

// peakRSS runs c once under GNU time and returns the process's peak RSS.
// The rusage of a child Go starts itself is no use: Go spawns with vfork,
// so the child's ru_maxrss starts at the parent's, the harness's. time
// forks the command from its own small process.
func (c command) peakRSS(ctx context.Context, gnuTime, dir string) (int64, error) {
	f, err := os.CreateTemp(dir, "rss")
	if err != nil {
		return 0, err
	}
	f.Close()
	defer os.Remove(f.Name())
	cmd := exec.CommandContext(ctx, gnuTime, append([]string{"-o", f.Name(), "-f", "%M", c.bin}, c.args...)...)
	var out counter
	var errb bytes.Buffer
	c.prepare(cmd, &out, &errb)
	if err := cmd.Run(); err != nil {
		return 0, c.failure(err, &errb)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return 0, err
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("time -f %%M: %q", b)
	}
	return kb << 10, nil
}

// timeCommands runs each command runs times, round-robin, so that a change
// in the machine's load touches all of them alike.
//
// Peak RSS is measured apart, in a few runs under GNU time (gnuTime; ""
// leaves it unmeasured), so that time's own start-up is not in the timings.
func timeCommands(ctx context.Context, cmds []command, runs int, gnuTime, tmp string) []CLIResult {
	times := make([][]time.Duration, len(cmds))
	rss := make([][]int64, len(cmds))
	res := make([]CLIResult, len(cmds))
	for i, c := range cmds {
		res[i] = CLIResult{Name: c.name, Command: c.shown()}
	}
	for range runs {
		for i, c := range cmds {
			if ctx.Err() != nil {
				break
			}
			d, err := c.once(ctx)
			res[i].Runs++
			if err != nil {
				res[i].Errors++
				if res[i].FirstError == "" {
					res[i].FirstError = err.Error()
				}
				continue
			}
			times[i] = append(times[i], d)
		}
	}
	for range min(runs, 3) {
		for i, c := range cmds {
			if gnuTime == "" || ctx.Err() != nil {
				break
			}
			if m, err := c.peakRSS(ctx, gnuTime, tmp); err == nil {
				rss[i] = append(rss[i], m)
			} else if res[i].FirstError == "" {
				res[i].FirstError = "peak RSS: " + err.Error()
			}
		}
	}
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
	for i := range cmds {
		if len(times[i]) == 0 {
			continue
		}
		slices.Sort(times[i])
		res[i].MedianMS = ms(Percentile(times[i], .5))
		res[i].P90MS = ms(Percentile(times[i], .9))
		res[i].MinMS = ms(times[i][0])
		if len(rss[i]) > 0 {
			slices.Sort(rss[i])
			res[i].PeakRSS = rss[i][len(rss[i])/2]
		}
	}
	return res
}
