// Package soak holds the bounded soak test of exlessd: several hundred
// concurrent peers (allowed ones in this process and as another uid, refused
// ones as a third uid) fetch tokens over the socket for a fixed time while
// client tokens are rotated, the policy is reloaded, the Exceptionless test
// server injects errors and latency, and the Vault server restarts. At the
// end it checks that no allowed fetch failed, every refused one was
// refused, goroutines, open files and the live heap came back near where
// they started, and no token reached the log.
//
// It runs for EXLESS_SOAK_DURATION (default 2m; e.g. 2h for a long run):
//
//	EXLESS_SOAK_DURATION=30m make soak
package soak
