// Package bench is exless's benchmark harness (issue 6): it measures a
// cached token fetch from the real exlessd binary over its Unix socket side
// by side with a direct Vault KV v2 read of the same secret and with the
// floor, a bare net/http handler on a Unix socket, all driven by one load
// generator in one run on one machine. It also times whole CLI processes
// (exlessctl, vault kv get, curl), reads the daemon's resident memory idle
// and with many cached tokens, and times policy evaluation.
//
// It owns only measurement: it starts a Vault dev server, the Exceptionless
// test server, exlessd and the floor as they would run for real, and never
// reaches into the daemon's internals. Results are a table on stdout, a JSON
// file and an SVG plot (see bench/README.md).
//
// This package imports github.com/hashicorp/vault/api for the direct-read
// baseline only. Outside bench/, vaultstore stays the only importer of the
// Vault API.
//
// Secrets (the Vault tokens, the Exceptionless password, the tokens served)
// are passed to child processes through files and the environment, never
// argv, and never appear in the output.
package bench
