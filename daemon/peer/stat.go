package peer

import (
	"bytes"
	"errors"
	"fmt"
)

// procStat is what Attest needs from /proc/<pid>/stat.
type procStat struct {
	pid       int32
	comm      string
	state     byte
	startTime uint64 // field 22: clock ticks after boot when the process started
}

// exited reports whether the task has exited (zombie or dead), even if it
// has not been reaped and its pid is still taken.
func (s procStat) exited() bool { return s.state == 'Z' || s.state == 'X' }

// parseStat parses /proc/<pid>/stat: "pid (comm) state ppid ... starttime
// ...". comm is whatever the process named itself (up to 15 bytes, any but
// NUL, spaces and ')' included), so the fields after it are found from the
// last ')', never by splitting the whole line.
func parseStat(data []byte) (procStat, error) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 1 || end < open || data[open-1] != ' ' {
		return procStat{}, errors.New("stat: want \"pid (comm) ...\"")
	}
	pid, err := parseDecimal(string(data[:open-1]), 31)
	if err != nil {
		return procStat{}, fmt.Errorf("stat: pid: %w", err)
	}
	rest := data[end+1:]
	if len(rest) == 0 || rest[0] != ' ' {
		return procStat{}, errors.New("stat: want a space after comm")
	}
	// Fields from 3 (state) on; starttime is field 22.
	fields := bytes.Fields(rest)
	const want = 22 - 3 + 1
	if len(fields) < want {
		return procStat{}, fmt.Errorf("stat: %d fields after comm, want at least %d", len(fields), want)
	}
	if len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("stat: state %q is not one letter", fields[0])
	}
	start, err := parseDecimal(string(fields[22-3]), 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat: starttime: %w", err)
	}
	return procStat{
		pid:       int32(pid),
		comm:      string(data[open+1 : end]),
		state:     fields[0][0],
		startTime: start,
	}, nil
}

// parseStatusIDs returns the effective uid and gid from /proc/<pid>/status
// ("Uid:\treal\teffective\tsaved\tfs"): SO_PEERCRED reports the effective
// ids of the connecting process.
func parseStatusIDs(data []byte) (euid, egid uint32, err error) {
	var gotU, gotG bool
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		var dst *uint32
		switch {
		case bytes.HasPrefix(line, []byte("Uid:")):
			dst, gotU = &euid, true
		case bytes.HasPrefix(line, []byte("Gid:")):
			dst, gotG = &egid, true
		default:
			continue
		}
		f := bytes.Fields(line[4:])
		if len(f) != 4 {
			return 0, 0, fmt.Errorf("status: %q: want four ids", line)
		}
		v, err := parseDecimal(string(f[1]), 32)
		if err != nil {
			return 0, 0, fmt.Errorf("status: %w", err)
		}
		*dst = uint32(v)
	}
	if !gotU || !gotG {
		return 0, 0, errors.New("status: no Uid or Gid line")
	}
	return euid, egid, nil
}
