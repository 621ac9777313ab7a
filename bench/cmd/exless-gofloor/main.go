// Command exless-gofloor is the start-up floor of any Go program: it writes
// one line and exits. exless-bench times it beside exlessctl, built the
// same way (static, stripped), so that the report can say how much of
// exlessctl's time is the Go runtime starting at all.
package main

import "os"

func main() { os.Stdout.WriteString("ok\n") }
