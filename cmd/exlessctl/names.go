package main

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/exless/exless/daemon/policy"
)

// nssNames looks user and group names up through NSS by asking getent(1).
// exlessctl is built without cgo: a static binary starts several
// milliseconds sooner, and it is started once per token. Without cgo,
// os/user reads only /etc/passwd and /etc/group, so users and groups from
// LDAP or SSSD, which exlessd (built with cgo) knows, would be unknown to
// explain's --user, --group and offline rules. Where getent is missing it
// falls back to os/user. It implements policy.Resolver.
type nssNames struct{}

func (nssNames) LookupUser(name string) (uint32, error)  { return lookupID("passwd", name) }
func (nssNames) LookupGroup(name string) (uint32, error) { return lookupID("group", name) }

var errUnknownName = errors.New("unknown name")

func lookupID(db, name string) (uint32, error) {
	getent, err := exec.LookPath("getent")
	if err != nil {
		if db == "passwd" {
			return policy.SystemResolver{}.LookupUser(name)
		}
		return policy.SystemResolver{}.LookupGroup(name)
	}
	if name == "" || strings.ContainsAny(name, ":\n") {
		return 0, errUnknownName
	}
	out, err := exec.Command(getent, db, "--", name).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 {
		return 0, errUnknownName // getent's "not found"
	}
	if err != nil {
		return 0, fmt.Errorf("getent %s: %w", db, err)
	}
	// name:password:id:...; getent also finds entries by number, which a
	// name must not be taken for.
	line, _, _ := bytes.Cut(out, []byte{'\n'})
	f := strings.Split(string(line), ":")
	if len(f) < 3 || f[0] != name {
		return 0, errUnknownName
	}
	id, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("getent %s %s: id %q", db, name, f[2])
	}
	return uint32(id), nil
}
