package main

import "syscall"

// syscallUmask sets the process umask and returns the previous one. The
// daemon is single-purpose and sets it only around creating its socket,
// before serving starts.
func syscallUmask(mask int) int { return syscall.Umask(mask) }
