package main

import (
	"bytes"
	"io"
)

// mask replaces the token in exec's command output, as 1Password's op run
// does.
const mask = "<concealed by exlessctl>"

// maskWriter copies to w with every occurrence of secret replaced by mask,
// also when an occurrence is split across writes. It holds back only a
// pending partial match: the longest suffix of what it was given that is a
// proper prefix of the secret (at most len(secret)-1 bytes). Everything else
// is written at once, so a prompt or a progress line is not delayed.
//
// A maskWriter is not safe for concurrent use; Flush ends the stream.
type maskWriter struct {
	w       io.Writer
	secret  []byte
	mask    []byte
	pending []byte
	out     []byte
}

func newMaskWriter(w io.Writer, secret []byte) *maskWriter {
	return &maskWriter{w: w, secret: secret, mask: []byte(mask)}
}

// Write implements io.Writer. It reports len(p) on success: held-back bytes
// are the writer's responsibility from then on.
func (m *maskWriter) Write(p []byte) (int, error) {
	if len(m.secret) == 0 {
		return m.w.Write(p)
	}
	data := append(m.pending, p...)
	out := m.out[:0]
	for {
		i := bytes.Index(data, m.secret)
		if i < 0 {
			break
		}
		out = append(out, data[:i]...)
		out = append(out, m.mask...)
		data = data[i+len(m.secret):]
	}
	keep := partialMatch(data, m.secret)
	out = append(out, data[:len(data)-keep]...)
	// data may share memory with pending; copy handles the overlap.
	tail := data[len(data)-keep:]
	if cap(m.pending) < keep {
		m.pending = make([]byte, 0, len(m.secret))
	}
	m.pending = m.pending[:keep]
	copy(m.pending, tail)
	m.out = out
	if len(out) > 0 {
		if _, err := m.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes the held-back bytes: at the end of the stream they can no
// longer become the secret.
func (m *maskWriter) Flush() error {
	if len(m.pending) == 0 {
		return nil
	}
	_, err := m.w.Write(m.pending)
	m.pending = m.pending[:0]
	return err
}

// partialMatch returns the length of the longest suffix of data that is a
// proper prefix of secret.
func partialMatch(data, secret []byte) int {
	for k := min(len(data), len(secret)-1); k > 0; k-- {
		if bytes.Equal(data[len(data)-k:], secret[:k]) {
			return k
		}
	}
	return 0
}
