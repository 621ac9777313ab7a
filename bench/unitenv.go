package bench

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// unitFile is exlessd's systemd unit, relative to the module root.
const unitFile = "systemd/exlessd.service"

// unitEnv returns the variables exlessd's unit sets with Environment=
// (such as GOMEMLIMIT), so that the harness runs exlessd as systemd would.
// The unit is looked for from the working directory upwards (the harness
// runs from the module, its test from bench/).
func unitEnv() ([]string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	for {
		f, err := os.Open(filepath.Join(dir, unitFile))
		if err == nil {
			defer f.Close()
			return parseUnitEnv(f)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, errors.New(unitFile + " not found above the working directory")
		}
		dir = parent
	}
}

// parseUnitEnv reads the Environment= lines of a unit file: whitespace-
// separated assignments, each possibly in double quotes. (The unit sets
// plain ones; systemd's full quoting rules are not needed.)
func parseUnitEnv(f *os.File) ([]string, error) {
	var env []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Environment=")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(v) {
			kv = strings.Trim(kv, `"`)
			if strings.Contains(kv, "=") {
				env = append(env, kv)
			}
		}
	}
	return env, sc.Err()
}
