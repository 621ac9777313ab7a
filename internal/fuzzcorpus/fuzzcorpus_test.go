package fuzzcorpus

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestEncode(t *testing.T) {
	got, err := Encode([]byte("0::/\n\xff"), "a\"b", uint8(3), uint16(401), uint64(1<<40))
	if err != nil {
		t.Fatal(err)
	}
	want := "go test fuzz v1\n[]byte(\"0::/\\n\\xff\")\nstring(\"a\\\"b\")\nbyte(3)\nuint16(401)\nuint64(1099511627776)\n"
	if string(got) != want {
		t.Errorf("Encode:\n%s\nwant:\n%s", got, want)
	}
	if _, err := Encode(1.5); err == nil {
		t.Error("Encode accepted a float64")
	}
}

// roundTrip is written by Encode into testdata/fuzz/FuzzRoundTrip/encoded,
// which go test reads as a seed of FuzzRoundTrip: a format go test refused
// would fail FuzzRoundTrip, and TestRoundTripFileCurrent keeps the file
// what Encode writes today.
var roundTrip = []any{[]byte("0::/\n\x00\xff"), "tab\t\"quote\" é \xfe", uint8(255), uint16(65535), uint64(1<<63 + 1)}

func FuzzRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, s string, u8 uint8, u16 uint16, u64 uint64) {
		if !bytes.Equal(b, roundTrip[0].([]byte)) {
			return // not the committed file
		}
		if got := []any{b, s, u8, u16, u64}; !reflect.DeepEqual(got, roundTrip) {
			t.Errorf("go test read back %#v, want %#v", got, roundTrip)
		}
	})
}

func TestRoundTripFileCurrent(t *testing.T) {
	want, err := Encode(roundTrip...)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "fuzz", "FuzzRoundTrip", "encoded")
	if Writing() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != string(want) {
		t.Errorf("%s is not what Encode writes (run with -write-corpus): %v", path, err)
	}
}

func TestAddWritesReadableFiles(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	c := New(t, "FuzzX")
	c.Add("a", []byte("x"), "y", uint16(1))
	c.Add("a", []byte("z"), "y", uint16(1))
	c.Done()
	files, _ := filepath.Glob(filepath.Join(dir, "testdata", "fuzz", "FuzzX", "*"))
	if len(files) != 2 {
		t.Errorf("%d files, want 2 (a label used twice gets a suffix)", len(files))
	}
}
