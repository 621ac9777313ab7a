package main

import (
	"bytes"
	"errors"
	"testing"
)

// The secrets here are made up; failures print split points, not data.
var maskCases = []struct{ secret, input string }{
	{"tk3Fz9Q", "before tk3Fz9Q after"},
	{"tk3Fz9Q", "tk3Fz9Q"},
	{"tk3Fz9Q", "tk3Fz9Qtk3Fz9Q"},
	{"tk3Fz9Q", "tktk3tk3Fz9tk3Fz9Qtk3F"}, // false starts, then a match, then a partial at the end
	{"tk3Fz9Q", "no secret here at all"},
	{"tk3Fz9Q", ""},
	{"abcabd", "abcabcabdabcab"}, // the secret overlaps itself
	{"aa", "aaaaa"},
	{"aba", "ababababa"},
	{"x", "xyxxy"},
}

// TestMaskWriterEverySplit writes each input in two and in three pieces at
// every split point and compares with masking the whole at once.
func TestMaskWriterEverySplit(t *testing.T) {
	for ci, tc := range maskCases {
		secret, input := []byte(tc.secret), []byte(tc.input)
		want := bytes.ReplaceAll(input, secret, []byte(mask))
		for i := 0; i <= len(input); i++ {
			for j := i; j <= len(input); j++ {
				var out bytes.Buffer
				m := newMaskWriter(&out, secret)
				for _, piece := range [][]byte{input[:i], input[i:j], input[j:]} {
					if n, err := m.Write(piece); n != len(piece) || err != nil {
						t.Fatalf("case %d: Write = %d, %v", ci, n, err)
					}
				}
				if err := m.Flush(); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), want) {
					t.Errorf("case %d split at %d and %d: output differs from masking the whole", ci, i, j)
				}
			}
		}
	}
}

func TestMaskWriterByteByByte(t *testing.T) {
	for ci, tc := range maskCases {
		var out bytes.Buffer
		m := newMaskWriter(&out, []byte(tc.secret))
		for i := range len(tc.input) {
			_, _ = m.Write([]byte{tc.input[i]})
		}
		_ = m.Flush()
		if want := bytes.ReplaceAll([]byte(tc.input), []byte(tc.secret), []byte(mask)); !bytes.Equal(out.Bytes(), want) {
			t.Errorf("case %d byte by byte: output differs from masking the whole", ci)
		}
	}
}

// TestMaskWriterHoldsOnlyPartialMatches: output is passed on at once unless
// its end could be the start of the secret.
func TestMaskWriterHoldsOnlyPartialMatches(t *testing.T) {
	var out bytes.Buffer
	m := newMaskWriter(&out, []byte("tk3Fz9Q"))
	steps := []struct{ write, want string }{
		{"Password: ", "Password: "},             // no partial match: nothing held
		{"progress 50%", "progress 50%"},         // nor here
		{"key=tk3", "key="},                      // "tk3" may be the secret's start
		{"F", ""},                                // still may be
		{"x\n", "tk3Fx\n"},                       // was not
		{"t", ""},                                // may be
		{"k3Fz9Q!", "<concealed by exlessctl>!"}, // was
	}
	for _, s := range steps {
		out.Reset()
		_, _ = m.Write([]byte(s.write))
		if out.String() != s.want {
			t.Errorf("after writing %q: passed on %q, want %q", s.write, out.String(), s.want)
		}
	}
	out.Reset()
	_, _ = m.Write([]byte("end tk"))
	_ = m.Flush()
	if out.String() != "end tk" {
		t.Errorf("Flush passed on %q, want the held-back %q too", out.String(), "end tk")
	}
}

func TestMaskWriterError(t *testing.T) {
	m := newMaskWriter(failWriter{}, []byte("tk3Fz9Q"))
	if _, err := m.Write([]byte("hello")); err == nil {
		t.Errorf("Write passed no error from the underlying writer")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken") }

// FuzzMaskWriter: any input, any split, same as masking the whole.
func FuzzMaskWriter(f *testing.F) {
	for _, tc := range maskCases {
		f.Add(tc.secret, tc.input, uint8(3))
	}
	f.Fuzz(func(t *testing.T, secret, input string, step uint8) {
		if secret == "" || step == 0 {
			return
		}
		var out bytes.Buffer
		m := newMaskWriter(&out, []byte(secret))
		for i := 0; i < len(input); i += int(step) {
			_, _ = m.Write([]byte(input[i:min(i+int(step), len(input))]))
		}
		_ = m.Flush()
		if want := bytes.ReplaceAll([]byte(input), []byte(secret), []byte(mask)); !bytes.Equal(out.Bytes(), want) {
			t.Errorf("output differs from masking the whole (step %d)", step)
		}
	})
}
