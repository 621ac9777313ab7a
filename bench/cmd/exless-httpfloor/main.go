// Command exless-httpfloor is the start-up floor of a Go program that links
// net/http, as any HTTP client over a Unix socket does: it initialises the
// package and exits without a request. exless-bench times it beside
// exlessctl, built the same way.
package main

import (
	"net/http"
	"os"
)

// client keeps net/http (and its package init) in the binary.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func main() {
	if client.Transport == nil {
		os.Exit(1)
	}
	os.Stdout.WriteString("ok\n")
}
