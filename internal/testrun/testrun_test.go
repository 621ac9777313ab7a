package testrun

import (
	"bytes"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNoRunDir(t *testing.T) {
	t.Setenv(EnvDir, "")
	Secret("a-secret-nobody-keeps")
	if w := Log(t, "x"); w != io.Discard {
		t.Errorf("Log without a run directory = %T, want io.Discard", w)
	}
	b := Buffer(t, "x")
	b.Write([]byte("kept in memory"))
	if b.String() != "kept in memory" {
		t.Errorf("Buffer = %q", b.String())
	}
}

func TestSecretsFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvDir, dir)
	odd := "tab\tnul\x00newline\n\xff-end"
	Secret("first-secret-value")
	Secret("first-secret-value") // once only
	Secret("short")              // below MinLen
	Secret(odd)
	data, err := os.ReadFile(filepath.Join(dir, SecretsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString([]byte("first-secret-value")) + "\n" + hex.EncodeToString([]byte(odd)) + "\n"
	if string(data) != want {
		t.Errorf("secrets file:\n%s\nwant:\n%s", data, want)
	}
	fi, err := os.Stat(filepath.Join(dir, SecretsFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets file mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := readSecrets(filepath.Join(dir, SecretsFile))
	if err != nil || len(got) != 2 || string(got[1]) != odd {
		t.Errorf("readSecrets: %d secrets, %v", len(got), err)
	}
}

func TestLogSavedAndClosed(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvDir, dir)
	var w io.Writer
	var b interface{ String() string }
	t.Run("sub/test", func(t *testing.T) {
		w = Log(t, "daemon")
		w.Write([]byte("line one\n"))
		buf := Buffer(t, "buffer")
		buf.Write([]byte("buffered\n"))
		b = buf
		src := filepath.Join(t.TempDir(), "own.log")
		SaveFile(t, "copied", src)
		os.WriteFile(src, []byte("written by a process\n"), 0o600)
		Save(t, "stderr", "said at once\n")
	})
	// After the subtest's cleanup: dropped, but no error for the writer.
	if n, err := w.Write([]byte("late\n")); n != 5 || err != nil {
		t.Errorf("late Write = %d, %v", n, err)
	}
	if b.String() != "buffered\n" {
		t.Errorf("buffer = %q", b.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, LogDir, "*.log"))
	var all []string
	for _, f := range files {
		data, _ := os.ReadFile(f)
		all = append(all, filepath.Base(f)+"="+string(data))
	}
	joined := strings.Join(all, "|")
	for _, want := range []string{"line one\n", "buffered\n", "written by a process\n", "said at once\n", "sub_test.daemon."} {
		if !strings.Contains(joined, want) {
			t.Errorf("saved logs lack %q: %s", want, joined)
		}
	}
	if strings.Contains(joined, "late") {
		t.Error("a write after cleanup was saved")
	}
	if len(files) != 4 {
		t.Errorf("%d log files, want 4", len(files))
	}
}

// plant makes a run directory with the given secrets and logs.
func plant(t *testing.T, secrets []string, logs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	var list bytes.Buffer
	for _, s := range secrets {
		list.WriteString(hex.EncodeToString([]byte(s)) + "\n")
	}
	if secrets != nil {
		if err := os.WriteFile(filepath.Join(dir, SecretsFile), list.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range logs {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestScanFindsPlantedSecrets(t *testing.T) {
	quoted := `pass"word\with` + "\x01ctl"
	dir := plant(t, []string{"tok-1234567890abcdef", quoted, "never-logged-secret"}, map[string]string{
		"logs/a.log":  "start\nok\nlevel=INFO token=tok-1234567890abcdef done\n",
		"logs/b.log":  `{"msg":"login","password":"pass\"word\\with\u0001ctl"}` + "\n",
		"go-test.log": "ok  \tgithub.com/exless/exless/daemon\t1.2s\ntok-1234567890abcdef tok-1234567890abcdef",
	})
	r, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Secrets != 3 || r.Logs != 3 {
		t.Errorf("scanned %d secrets across %d logs, want 3 and 3", r.Secrets, r.Logs)
	}
	var got []string
	for _, h := range r.Hits {
		got = append(got, h.String())
	}
	fp1, fp2 := Fingerprint([]byte("tok-1234567890abcdef")), Fingerprint([]byte(quoted))
	want := []string{
		"go-test.log:2: secret " + fp1 + " (raw)", // twice on a line: one hit
		"logs/a.log:3: secret " + fp1 + " (raw)",
		"logs/b.log:1: secret " + fp2 + " (json)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("hits:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestScanClean(t *testing.T) {
	dir := plant(t, []string{"tok-1234567890abcdef"}, map[string]string{"logs/a.log": "tok-123456789 nothing to see\n"})
	r, err := Scan(dir)
	if err != nil || len(r.Hits) != 0 || r.Logs != 1 {
		t.Errorf("Scan = %+v, %v", r, err)
	}
}

func TestScanRefusesEmptyRuns(t *testing.T) {
	for name, dir := range map[string]string{
		"nothing":      plant(t, nil, nil),
		"no secrets":   plant(t, []string{}, map[string]string{"logs/a.log": "x\n"}),
		"no logs":      plant(t, []string{"tok-1234567890abcdef"}, nil),
		"short only":   plant(t, []string{"short"}, map[string]string{"logs/a.log": "x\n"}),
		"not hex line": plant(t, nil, map[string]string{SecretsFile: "zz-not-hex\n", "logs/a.log": "x\n"}),
	} {
		if _, err := Scan(dir); err == nil {
			t.Errorf("%s: Scan passed", name)
		}
	}
}
