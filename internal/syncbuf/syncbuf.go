// Package syncbuf is a byte buffer that several goroutines may write to,
// for tests that collect a daemon's log and then search it.
package syncbuf

import (
	"bytes"
	"io"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent Write and String.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	tee io.Writer
}

// Tee returns a Buffer that also writes everything to w, under the same
// lock, so w sees writes in the buffer's order and need not be safe for
// concurrent use. Errors from w are ignored.
func Tee(w io.Writer) *Buffer { return &Buffer{tee: w} }

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tee != nil {
		_, _ = b.tee.Write(p)
	}
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
