// Command exless-bench runs exless's benchmark harness: exlessd's cached
// token fetch over its socket side by side with a direct Vault read and the
// bare-socket floor, whole-process CLI timings, exlessd's memory and policy
// evaluation, checked against the targets of issue 6. Run it from the exless
// module (it builds exlessd, exlessctl and the floor there); `make bench`
// does.
//
//	exless-bench                                   # smoke run, about two minutes
//	exless-bench -duration 10s -warmup 2s -cli-runs 200 -out bench/results
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/exless/exless/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "exless-bench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cfg := bench.DefaultConfig()
	fs := flag.NewFlagSet("exless-bench", flag.ContinueOnError)
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured `time` of each load run")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured `time` before each load run")
	conns := fs.String("conn", "keepalive,new", "connection `modes`: keepalive, new (a new connection per request)")
	conc := fs.String("concurrency", "1,8,32,128", "comma-separated `list` of concurrencies")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "`rounds` of load runs, pooled per server (rotating their order)")
	fs.IntVar(&cfg.CLIRuns, "cli-runs", cfg.CLIRuns, "`runs` of each whole-process command (0 skips)")
	fs.IntVar(&cfg.Projects, "projects", cfg.Projects, "project tokens cached for the memory measure (0 skips)")
	fs.IntVar(&cfg.PolicyRules, "policy-rules", cfg.PolicyRules, "policy size for the evaluation timing (0 skips)")
	rerender := fs.String("rerender", "", "re-judge and re-plot a saved results.json `file` instead of measuring")
	fs.StringVar(&cfg.OutDir, "out", "", "`dir` for results.json and latency.svg (e.g. bench/results); empty writes none")
	fs.Func("daemon-env", "`KEY=VALUE` added to exlessd's environment (repeatable), e.g. GOMEMLIMIT=30MiB", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return errors.New("want KEY=VALUE")
		}
		cfg.DaemonEnv = append(cfg.DaemonEnv, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *rerender != "" {
		return bench.Rerender(*rerender, os.Stdout)
	}
	cfg.Concurrency = nil
	for _, f := range strings.Split(*conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return fmt.Errorf("-concurrency: %q is not a positive number", f)
		}
		cfg.Concurrency = append(cfg.Concurrency, c)
	}
	cfg.Conns = nil
	for _, f := range strings.Split(*conns, ",") {
		switch f = strings.TrimSpace(f); f {
		case bench.ConnKeepAlive, bench.ConnNew:
			cfg.Conns = append(cfg.Conns, f)
		default:
			return fmt.Errorf("-conn: %q is neither keepalive nor new", f)
		}
	}
	if cfg.Duration <= 0 || cfg.Warmup < 0 {
		return errors.New("-duration must be positive and -warmup not negative")
	}
	_, err := bench.Run(ctx, cfg)
	return err
}
