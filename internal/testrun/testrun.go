// Package testrun lets tests hand the secrets they create and the logs they
// collect to a run directory, so that `make test` can check afterwards that
// no secret reached any log (see cmd/secretscan).
//
// The run directory is named by EXLESS_TEST_RUNDIR. Without it every helper
// is a cheap no-op, so a plain `go test` needs no setup. Test binaries of
// different packages run at once, so files are only ever appended to
// (secrets) or created under names no other process picks (logs).
//
// The package does not import testing: the Exceptionless test server, which
// registers the tokens it issues, is also linked into a command.
package testrun

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/exless/exless/internal/syncbuf"
)

// EnvDir names the environment variable that holds the run directory.
const EnvDir = "EXLESS_TEST_RUNDIR"

// SecretsFile is the file in the run directory that lists the secrets, one
// hex-encoded secret a line. It is the one file the scan does not search.
const SecretsFile = "secrets.hex"

// LogDir is the directory in the run directory that holds saved logs.
const LogDir = "logs"

// MinLen is the shortest secret worth registering: a shorter one would be
// found by chance in ordinary log text, and every helper-made secret is
// longer.
const MinLen = 8

// Dir returns the run directory, or "" when tests do not save anything.
func Dir() string { return os.Getenv(EnvDir) }

var secrets struct {
	mu   sync.Mutex
	dir  string // the run directory f is in
	seen map[string]bool
	f    *os.File
	err  error
}

// Secret registers s as a secret that no saved log may contain. Secrets
// shorter than MinLen are ignored. It is safe for concurrent use.
func Secret(s string) {
	dir := Dir()
	if dir == "" || len(s) < MinLen {
		return
	}
	secrets.mu.Lock()
	defer secrets.mu.Unlock()
	if secrets.dir != dir {
		// Only testrun's own tests move the run directory.
		if secrets.f != nil {
			secrets.f.Close()
		}
		secrets.dir, secrets.seen, secrets.f, secrets.err = dir, nil, nil, nil
	}
	if secrets.seen[s] {
		return
	}
	if secrets.f == nil && secrets.err == nil {
		secrets.f, secrets.err = os.OpenFile(filepath.Join(dir, SecretsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	}
	if secrets.err != nil {
		// A run dir that cannot take secrets must not pass the scan by
		// default: the scan refuses a run with no secrets, and a partial
		// list would go unnoticed, so stop here.
		panic("testrun: " + secrets.err.Error())
	}
	// One write per line: O_APPEND keeps lines of concurrent test
	// processes whole.
	if _, err := secrets.f.Write([]byte(hex.EncodeToString([]byte(s)) + "\n")); err != nil {
		panic("testrun: " + err.Error())
	}
	if secrets.seen == nil {
		secrets.seen = make(map[string]bool)
	}
	secrets.seen[s] = true
}

// TB is the part of testing.TB the log helpers use.
type TB interface {
	Name() string
	Cleanup(func())
	Helper()
	Fatalf(format string, args ...any)
}

// Log returns a writer whose bytes are saved in the run directory as a log
// named after the test binary, the test and name. It is safe for concurrent
// use, and writes after tb's cleanup are dropped (a daemon's goroutines may
// log after its test ended). Without a run directory it is io.Discard.
func Log(tb TB, name string) io.Writer {
	tb.Helper()
	dir := Dir()
	if dir == "" {
		return io.Discard
	}
	f, err := createLog(dir, name, tb.Name())
	if err != nil {
		tb.Fatalf("testrun: %v", err)
	}
	w := &logWriter{f: f}
	tb.Cleanup(w.close)
	return w
}

// Buffer returns a buffer for a log that tests search, that is also saved
// in the run directory (see Log).
func Buffer(tb TB, name string) *syncbuf.Buffer {
	tb.Helper()
	return syncbuf.Tee(Log(tb, name))
}

// SaveFile copies the file at path into the run directory at tb's cleanup,
// for logs that a process writes to a file of its own.
func SaveFile(tb TB, name, path string) {
	tb.Helper()
	if Dir() == "" {
		return
	}
	w := Log(tb, name)
	// Registered after Log's close, so it runs first (cleanups run last
	// in, first out).
	tb.Cleanup(func() {
		if f, err := os.Open(path); err == nil {
			_, _ = io.Copy(w, f)
			f.Close()
		}
	})
}

// Save writes s to the run directory as a log at once; for output a test
// has in hand, such as a command's stderr. Empty output makes no file.
func Save(tb TB, name, s string) {
	tb.Helper()
	if Dir() == "" || s == "" {
		return
	}
	w := Log(tb, name)
	_, _ = io.WriteString(w, s)
}

func createLog(dir, name, test string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Join(dir, LogDir), 0o700); err != nil {
		return nil, err
	}
	pkg := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	base := clean(pkg) + "." + clean(test) + "." + clean(name) + "." + hex.EncodeToString(b) + ".log"
	// O_EXCL: a name taken by another process is an error, not a log
	// shared by accident.
	return os.OpenFile(filepath.Join(dir, LogDir, base), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// clean keeps a name usable as one path element.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

type logWriter struct {
	mu     sync.Mutex
	f      *os.File
	closed bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		_, _ = w.f.Write(p)
	}
	// Always whole: a log that cannot be saved must not change what the
	// code under test sees.
	return len(p), nil
}

func (w *logWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		w.f.Close()
	}
}
