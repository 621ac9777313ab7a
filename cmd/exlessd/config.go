package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/exless/exless/daemon"
)

// configuredAttr is the top-level attribute that the packaged example config
// sets to false. exlessd reads it before handing the file to daemon.ParseConfig
// (which does not know it): with configured = false the daemon starts in the
// "not configured" mode instead of failing, so that a freshly installed
// package does not crash-loop into start-limit-hit while it points at
// example hosts.
const configuredAttr = "configured"

// credentialFields are the config attributes that name secret files. A bare
// name there is a systemd credential ID, which daemon.ParseConfig resolves
// in $CREDENTIALS_DIRECTORY when systemd passes credentials; `config
// validate` reports them as such.
var credentialFields = [][2]string{
	{"exceptionless", "password_file"},
	{"vault", "token_file"},
}

// loadedConfig is a config file as exlessd reads it.
type loadedConfig struct {
	daemon.Config
	// Configured is false when the file says configured = false. Config
	// then holds only what parsed (the socket settings), not validated.
	Configured bool
	// Credentials maps each credentialFields entry that is a bare name
	// (a systemd credential ID) to that name, for `config validate`.
	Credentials map[string]string
}

// configError is a config file that cannot be used. It makes exlessd exit
// with EX_CONFIG (78), which the unit lists in RestartPreventExitStatus=:
// restarting cannot fix a bad file.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// loadConfig reads the config file: the configured marker, then
// daemon.ParseConfig and Validate.
func loadConfig(path string) (loadedConfig, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return loadedConfig{}, &configError{fmt.Errorf("read config: %w (pass --config FILE or create %s)", err, daemon.DefaultConfigPath)}
	}
	lc, err := parseConfig(path, src)
	if err != nil {
		return lc, &configError{err}
	}
	return lc, nil
}

func parseConfig(path string, src []byte) (loadedConfig, error) {
	lc := loadedConfig{Configured: true, Credentials: map[string]string{}}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		// Let daemon.ParseConfig word the syntax error.
		_, err := daemon.ParseConfig(path, src)
		if err == nil {
			err = diags
		}
		return lc, err
	}
	body := f.Body.(*hclsyntax.Body)
	if a, ok := body.Attributes[configuredAttr]; ok {
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() || v.Type() != cty.Bool || v.IsNull() {
			return lc, fmt.Errorf("%s:%d: %s: must be true or false", path, a.SrcRange.Start.Line, configuredAttr)
		}
		lc.Configured = v.True()
		// Blank the attribute out, keeping every line where it was so that
		// daemon.ParseConfig's errors still point at the right line.
		src = blank(src, a.SrcRange)
	}
	for _, cf := range credentialFields {
		if name, ok := bareName(body, cf[0], cf[1]); ok {
			lc.Credentials[cf[0]+"."+cf[1]] = name
		}
	}

	cfg, err := daemon.ParseConfig(path, src)
	if !lc.Configured {
		// Only the socket settings matter here; a file that does not even
		// parse falls back to the defaults (the socket unit passes the
		// socket anyway).
		if err != nil {
			cfg = daemon.DefaultConfig()
		}
		lc.Config = cfg
		return lc, nil
	}
	if err != nil {
		return lc, err
	}
	if err := cfg.Validate(); err != nil {
		return lc, err
	}
	lc.Config = cfg
	return lc, nil
}

// bareName returns the literal value of block.attr when it is a bare file
// name (no directory part): the form that names a systemd credential.
func bareName(body *hclsyntax.Body, block, attr string) (string, bool) {
	for _, b := range body.Blocks {
		if b.Type != block {
			continue
		}
		a, ok := b.Body.Attributes[attr]
		if !ok {
			continue
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() || v.IsNull() || v.Type() != cty.String {
			continue
		}
		s := v.AsString()
		if s != "" && s != "." && s != ".." && !strings.Contains(s, "/") {
			return s, true
		}
	}
	return "", false
}

// blank replaces the bytes of r with spaces, keeping newlines.
func blank(src []byte, r hcl.Range) []byte {
	out := bytes.Clone(src)
	for i := r.Start.Byte; i < r.End.Byte && i < len(out); i++ {
		if out[i] != '\n' {
			out[i] = ' '
		}
	}
	return out
}
