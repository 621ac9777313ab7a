// Command secretscan checks a test run directory (see package testrun):
// it searches every saved log for every registered secret and exits 1 if
// any is found, or if the directory holds no secrets or no logs. It prints
// where a secret was found and the secret's fingerprint, never the secret.
//
//	go run ./internal/testrun/cmd/secretscan -dir RUNDIR
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/exless/exless/internal/testrun"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("secretscan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", os.Getenv(testrun.EnvDir), "the run directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "usage: secretscan -dir RUNDIR (or %s set)\n", testrun.EnvDir)
		return 2
	}
	r, err := testrun.Scan(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "secretscan: %v\n", err)
		return 1
	}
	for _, h := range r.Hits {
		fmt.Fprintf(stderr, "secretscan: %s\n", h)
	}
	fmt.Fprintf(stdout, "secretscan: %d secrets checked across %d logs, %d hits\n", r.Secrets, r.Logs, len(r.Hits))
	if len(r.Hits) > 0 {
		return 1
	}
	return 0
}
