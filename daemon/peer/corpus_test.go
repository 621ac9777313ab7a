package peer

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"

	"github.com/exless/exless/internal/fuzzcorpus"
)

// TestWriteFuzzCorpus adds this machine's real /proc/PID/cgroup and
// /proc/PID/stat contents to the seed corpora of FuzzParseCgroup and
// FuzzParseStat when run with -write-corpus (see internal/fuzzcorpus). The
// hand-made seeds beside them (systemd layouts this machine lacks) stay.
func TestWriteFuzzCorpus(t *testing.T) {
	if !fuzzcorpus.Writing() {
		t.Skip("writes testdata/fuzz only with -write-corpus")
	}
	pids, _ := filepath.Glob("/proc/[0-9]*")
	sort.Slice(pids, func(i, j int) bool { return pidOf(pids[i]) < pidOf(pids[j]) })
	pids = append([]string{"/proc/self"}, pids...)

	cg := fuzzcorpus.New(t, "FuzzParseCgroup")
	seenCG := map[string]bool{}
	for _, p := range pids {
		data, err := os.ReadFile(filepath.Join(p, "cgroup"))
		// One file per layout: processes differ here only in ids.
		key := hexID.ReplaceAllString(string(data), "ID")
		if err != nil || seenCG[key] {
			continue
		}
		seenCG[key] = true
		cg.Add("proc-"+filepath.Base(p)+"-cgroup", data)
	}
	cg.Done()

	st := fuzzcorpus.New(t, "FuzzParseStat")
	seenComm := map[string]bool{}
	for _, p := range pids {
		data, err := os.ReadFile(filepath.Join(p, "stat"))
		if err != nil {
			continue
		}
		ps, err := parseStat(data)
		if err != nil {
			t.Fatalf("%s/stat: %v", p, err)
		}
		if seenComm[ps.comm] || len(seenComm) >= 12 {
			continue
		}
		seenComm[ps.comm] = true
		// The whole line goes to parseStat as is; the comm and start
		// time are what the target formats into a line of its own.
		st.Add("proc-"+filepath.Base(p)+"-stat", data, ps.startTime)
		st.Add("proc-"+filepath.Base(p)+"-comm", []byte(ps.comm), ps.startTime)
	}
	st.Done()
	if len(seenCG) == 0 || len(seenComm) == 0 {
		t.Fatal("read no /proc files")
	}
}

var hexID = regexp.MustCompile(`[0-9a-f]{16,}`)

func pidOf(p string) int {
	n, _ := strconv.Atoi(filepath.Base(p))
	return n
}
