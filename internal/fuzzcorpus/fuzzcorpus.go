// Package fuzzcorpus writes seed corpus files for Go fuzz targets, in the
// "go test fuzz v1" format that go test reads from testdata/fuzz/<Target>/.
//
// Each package with fuzz targets has a test that gathers real inputs (config
// files from the repository, /proc files of this machine, answers of the
// test servers, records as the code writes them) and writes them when run
// with -write-corpus:
//
//	go test -run '^TestWriteFuzzCorpus$' ./daemon -write-corpus
//
// The files are committed; go test then runs every one as a seed.
package fuzzcorpus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

var write = flag.Bool("write-corpus", false, "write testdata/fuzz seed corpora from real inputs")

// Writing reports whether the test run was asked to write corpora.
func Writing() bool { return *write }

// Encode returns the values as one corpus file. The types are those go
// test accepts for fuzz arguments that the targets here use.
func Encode(vals ...any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		case string:
			fmt.Fprintf(&b, "string(%s)\n", strconv.Quote(v))
		case uint8:
			fmt.Fprintf(&b, "byte(%d)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		default:
			return nil, fmt.Errorf("fuzzcorpus: type %T not supported", v)
		}
	}
	return b.Bytes(), nil
}

// TB is the part of testing.TB that Corpus uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// Corpus collects the seed files of one fuzz target.
type Corpus struct {
	tb    TB
	dir   string
	names map[string]bool
}

// New starts a corpus for target in the current package's testdata/fuzz.
func New(tb TB, target string) *Corpus {
	return &Corpus{tb: tb, dir: filepath.Join("testdata", "fuzz", target), names: map[string]bool{}}
}

// Add writes one seed file named name (a short label of where the input
// came from); a label used twice gets a content hash appended.
func (c *Corpus) Add(name string, vals ...any) {
	c.tb.Helper()
	data, err := Encode(vals...)
	if err != nil {
		c.tb.Fatalf("%s: %v", name, err)
	}
	if c.names[name] {
		sum := sha256.Sum256(data)
		name += "-" + hex.EncodeToString(sum[:4])
	}
	c.names[name] = true
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		c.tb.Fatalf("%v", err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, name), data, 0o644); err != nil {
		c.tb.Fatalf("%v", err)
	}
}

// Done logs how many files were written.
func (c *Corpus) Done() {
	c.tb.Helper()
	c.tb.Logf("%s: %d seed files", c.dir, len(c.names))
}
