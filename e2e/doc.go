// Package e2e holds end-to-end tests: they build exlessd and exlessctl, run
// them against a real Vault dev server and the Exceptionless test server, and
// drive them as users would, including from processes of other uids.
package e2e
