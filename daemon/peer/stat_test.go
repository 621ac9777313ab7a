package peer

import (
	"bytes"
	"fmt"
	"testing"
)

// statTail is a recorded /proc/<pid>/stat after the comm field; field 22
// (starttime) is 279890.
const statTail = " R 22516 22516 4938 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 279890 3133440 406 18446744073709551615 94093812318208 94093812338089 140729963849056 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94093812354096 94093812355712 94093876932608 140729963854335 140729963854355 140729963854355 140729963855851 0\n"

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       procStat
	}{
		{"plain", "22518 (cat)" + statTail, procStat{pid: 22518, comm: "cat", state: 'R', startTime: 279890}},
		{"spaces and parens in comm", "7 (a) b) (c)" + statTail, procStat{pid: 7, comm: "a) b) (c", state: 'R', startTime: 279890}},
		{"newline in comm", "7 (x\ny)" + statTail, procStat{pid: 7, comm: "x\ny", state: 'R', startTime: 279890}},
		{"empty comm", "7 ()" + statTail, procStat{pid: 7, comm: "", state: 'R', startTime: 279890}},
		{"comm looks like fields", "7 (x) S 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 99999)" + statTail,
			procStat{pid: 7, comm: "x) S 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 99999", state: 'R', startTime: 279890}},
		{"zombie", "9 (z) Z 1 9 9 0 -1 4228173 0 0 0 0 0 0 0 0 20 0 1 0 123 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
			procStat{pid: 9, comm: "z", state: 'Z', startTime: 123}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.data))
			if err != nil {
				t.Fatalf("parseStat(%q): %v", tc.data, err)
			}
			if got != tc.want {
				t.Errorf("parseStat(%q) = %+v, want %+v", tc.data, got, tc.want)
			}
		})
	}
}

func TestParseStatRejectsGarbage(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"empty", ""},
		{"no comm", "7 R 1 2 3\n"},
		{"no closing paren", "7 (cat R 1 2 3\n"},
		{"no pid", "(cat)" + statTail},
		{"pid not a number", "x (cat)" + statTail},
		{"negative pid", "-7 (cat)" + statTail},
		{"no space after comm", "7 (cat)R 1 2 3\n"},
		{"too few fields", "7 (cat) R 1 2 3\n"},
		{"state not a letter", "7 (cat) RR" + statTail[2:]},
		{"starttime not a number", "7 (cat) R 1 1 1 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 x 3133440\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := parseStat([]byte(tc.data)); err == nil {
				t.Errorf("parseStat(%q) = %+v, want an error", tc.data, got)
			}
		})
	}
}

func TestParseStatusIDs(t *testing.T) {
	data := "Name:\tx\nUmask:\t0022\nUid:\t1000\t4242\t4242\t4242\nGid:\t100\t4343\t4343\t4343\nGroups:\t4444\n"
	euid, egid, err := parseStatusIDs([]byte(data))
	if err != nil || euid != 4242 || egid != 4343 {
		t.Errorf("parseStatusIDs = %d, %d, %v; want 4242, 4343, nil", euid, egid, err)
	}
	for _, bad := range []string{"", "Uid:\t1\t2\t3\t4\n", "Uid:\t1\t2\nGid:\t1\t2\t3\t4\n", "Uid:\t1\tx\t3\t4\nGid:\t1\t2\t3\t4\n"} {
		if _, _, err := parseStatusIDs([]byte(bad)); err == nil {
			t.Errorf("parseStatusIDs(%q) succeeded, want an error", bad)
		}
	}
}

// FuzzParseStat checks that whatever a process names itself, the fields
// after its name are read correctly, and that no input panics.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("cat"), uint64(279890))
	f.Add([]byte("a) b) (c"), uint64(1))
	f.Fuzz(func(t *testing.T, comm []byte, start uint64) {
		parseStat(comm) // arbitrary bytes must not panic

		if bytes.IndexByte(comm, 0) >= 0 {
			return // the kernel never prints a NUL in comm
		}
		line := fmt.Sprintf("42 (%s) S 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0 0\n", comm, start)
		got, err := parseStat([]byte(line))
		if err != nil {
			t.Fatalf("parseStat(%q): %v", line, err)
		}
		if want := (procStat{pid: 42, comm: string(comm), state: 'S', startTime: start}); got != want {
			t.Fatalf("parseStat(%q) = %+v, want %+v", line, got, want)
		}
	})
}
