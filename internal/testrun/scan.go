package testrun

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Hit is one place a secret was found. It never holds the secret.
type Hit struct {
	File        string // relative to the run directory
	Line        int    // 1-based
	Fingerprint string // see Fingerprint
	Form        string // "raw" or "json" (as a JSON string would escape it)
}

func (h Hit) String() string {
	return fmt.Sprintf("%s:%d: secret %s (%s)", h.File, h.Line, h.Fingerprint, h.Form)
}

// Report is the outcome of a scan.
type Report struct {
	Secrets int // distinct secrets searched for
	Logs    int // files searched
	Hits    []Hit
}

// Fingerprint names a secret in output without revealing it: the first 12
// hex digits of its SHA-256.
func Fingerprint(secret []byte) string {
	sum := sha256.Sum256(secret)
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// Scan reads the secrets registered in dir and searches every other file
// under dir for each, raw and JSON-escaped. It fails if dir holds no
// secrets or no logs, so a run that saved nothing cannot pass.
func Scan(dir string) (Report, error) {
	var r Report
	secrets, err := readSecrets(filepath.Join(dir, SecretsFile))
	if err != nil {
		return r, err
	}
	if len(secrets) == 0 {
		return r, fmt.Errorf("%s lists no secrets: did the tests run with %s set?", filepath.Join(dir, SecretsFile), EnvDir)
	}
	r.Secrets = len(secrets)
	m := newMatcher(secrets)

	var files []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && path != filepath.Join(dir, SecretsFile) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	if len(files) == 0 {
		return r, fmt.Errorf("%s holds no logs: did the tests run with %s set?", dir, EnvDir)
	}
	sort.Strings(files)
	r.Logs = len(files)
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return r, err
		}
		rel, _ := filepath.Rel(dir, path)
		for _, h := range m.find(data) {
			h.File = rel
			r.Hits = append(r.Hits, h)
		}
	}
	return r, nil
}

func readSecrets(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seen := make(map[string]bool)
	var out [][]byte
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		s, err := hex.DecodeString(string(line))
		if err != nil {
			// The line number only: the line may be most of a secret.
			return nil, fmt.Errorf("%s:%d: not hex", path, n)
		}
		if len(s) < MinLen || seen[string(s)] {
			continue
		}
		seen[string(s)] = true
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

type pattern struct {
	text   []byte
	secret []byte
	form   string
}

// matcher finds many patterns in one pass: patterns are indexed by their
// first MinLen bytes, so each position of a log costs one map lookup
// however many secrets there are (a run registers thousands of tokens).
type matcher struct {
	byPrefix map[string][]pattern
}

func newMatcher(secrets [][]byte) *matcher {
	m := &matcher{byPrefix: make(map[string][]pattern)}
	add := func(p pattern) {
		k := string(p.text[:MinLen])
		m.byPrefix[k] = append(m.byPrefix[k], p)
	}
	for _, s := range secrets {
		add(pattern{text: s, secret: s, form: "raw"})
		if j := jsonEscaped(s); !bytes.Equal(j, s) && len(j) >= MinLen {
			add(pattern{text: j, secret: s, form: "json"})
		}
	}
	return m
}

// jsonEscaped is s as it appears inside a JSON string.
func jsonEscaped(s []byte) []byte {
	b, err := json.Marshal(string(s))
	if err != nil {
		return s
	}
	return b[1 : len(b)-1]
}

// find returns one hit per pattern and line.
func (m *matcher) find(data []byte) []Hit {
	var hits []Hit
	type key struct {
		line int
		p    *pattern
	}
	seen := make(map[key]bool)
	line, lineStart := 1, 0
	for i := 0; i+MinLen <= len(data); i++ {
		for ; lineStart < i; lineStart++ {
			if data[lineStart] == '\n' {
				line++
			}
		}
		ps, ok := m.byPrefix[string(data[i:i+MinLen])]
		if !ok {
			continue
		}
		for j := range ps {
			p := &ps[j]
			if bytes.HasPrefix(data[i:], p.text) && !seen[key{line, p}] {
				seen[key{line, p}] = true
				hits = append(hits, Hit{Line: line, Fingerprint: Fingerprint(p.secret), Form: p.form})
			}
		}
	}
	return hits
}

// Registered returns the secrets registered in dir, for tests of the
// helpers that register them.
func Registered(dir string) (map[string]bool, error) {
	list, err := readSecrets(filepath.Join(dir, SecretsFile))
	if err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[string(s)] = true
	}
	return m, nil
}
