package peer

import (
	"net"
	"testing"
)

// BenchmarkAttest measures one connection's identification: dial, accept
// and the attestation, the peer being this process. "connect" is the bare
// dial and accept, for scale.
func BenchmarkAttest(b *testing.B) {
	ln, sock := listen(b)
	run := func(b *testing.B, f func(*net.UnixConn) error) {
		for b.Loop() {
			cc, err := net.Dial("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			c, err := ln.AcceptUnix()
			if err != nil {
				b.Fatal(err)
			}
			if err := f(c); err != nil {
				b.Fatal(err)
			}
			c.Close()
			cc.Close()
		}
	}
	attest := func(a *Attestor, exe Exe) func(*net.UnixConn) error {
		return func(c *net.UnixConn) error {
			id, err := a.Attest(c, exe)
			if err == nil && exe != ExeNone && !id.ExeKnown() {
				b.Fatalf("exe not known: %s", id.ExeErr)
			}
			return err
		}
	}
	cached := func(opts Options) *Attestor {
		a := NewAttestor(opts)
		a.hashes.racy = 0 // the test binary is brand new
		return a
	}

	b.Run("connect", func(b *testing.B) { run(b, func(*net.UnixConn) error { return nil }) })
	b.Run("fromconn", func(b *testing.B) {
		run(b, func(c *net.UnixConn) error { _, err := FromConn(c); return err })
	})
	b.Run("pidfd", func(b *testing.B) { run(b, attest(NewAttestor(Options{}), ExeNone)) })
	b.Run("proc", func(b *testing.B) { run(b, attest(NewAttestor(Options{NoPidfd: true}), ExeNone)) })
	b.Run("pidfd+exe-cached", func(b *testing.B) {
		a := cached(Options{})
		run(b, attest(a, ExePathHash))
		if a.HashCount() != 1 {
			b.Errorf("HashCount = %d, want 1", a.HashCount())
		}
	})
	b.Run("pidfd+hash-cached", func(b *testing.B) { run(b, attest(cached(Options{}), ExeHash)) })
	b.Run("proc+exe-cached", func(b *testing.B) { run(b, attest(cached(Options{NoPidfd: true}), ExePathHash)) })
	b.Run("pidfd+exe-uncached", func(b *testing.B) {
		run(b, func(c *net.UnixConn) error { return attest(cached(Options{}), ExePathHash)(c) })
	})
}
