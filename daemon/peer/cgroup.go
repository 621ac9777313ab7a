package peer

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Cgroup is what a process's /proc/<pid>/cgroup says about its systemd unit.
type Cgroup struct {
	// Path is the cgroup path systemd tracks the process by, as the kernel
	// printed it (relative to the reader's cgroup namespace): the cgroup v2
	// line ("0::"), or on legacy and hybrid hosts where that is the root,
	// the "name=systemd" line. Empty when the file has neither.
	Path string

	// Unit is the unit the process belongs to, in the form policy globs
	// match (see ParseCgroup); empty when the path names no unit.
	Unit string

	// UserUnit reports whether the process runs under a per-user service
	// manager (below user@UID.service). Anyone can name a unit in their
	// own manager, so such a unit must never satisfy a system unit rule.
	UserUnit bool

	// UserManagerUID is the UID of that user manager; set when UserUnit.
	UserManagerUID uint32
}

// ParseCgroup reads the contents of a /proc/<pid>/cgroup file, in either the
// unified layout ("0::/system.slice/deploy.service") or the legacy and hybrid
// ones ("1:name=systemd:/system.slice/deploy.service" among controller
// lines), and names the process's systemd unit the way sd_pid_get_unit and
// sd_pid_get_user_unit do:
//
//   - A system unit is the first path component after any leading slices,
//     with systemd's cgroup escaping (one leading "_") removed, when that is
//     a valid unit name other than a slice: "deploy.service",
//     "getty@tty1.service", "session-3.scope", "init.scope". Cgroups below
//     the unit (a service that delegates its subtree) are ignored, so
//     "/system.slice/foo.service/worker" is "foo.service", and processes of
//     a container are attributed to the container's unit.
//   - A unit under a user manager is "user@UID.service/" followed by the
//     path below the manager up to and including the first unit that is not
//     a slice, slices kept: "user@1000.service/app.slice/x.service",
//     "user@1000.service/init.scope" (the manager itself). With UserUnit set
//     and UserManagerUID the UID. When nothing below the manager names a
//     unit, Unit is just "user@UID.service", still with UserUnit set.
//   - Unit is empty for the root cgroup, a process directly in a slice,
//     paths no systemd made ("/docker/abc", "/lxc/x"), and paths outside
//     the reader's cgroup namespace ("/../x").
//
// It returns an error for anything the kernel does not write: lines that
// are not "ID:controllers:/path", empty lines, a hierarchy or the systemd
// controller listed twice. A cgroup name may contain a newline, so a line
// that looks fine can still be forged by whoever named the cgroup; Attest
// catches that by comparing the file's hierarchies with the daemon's own.
func ParseCgroup(data []byte) (Cgroup, error) {
	lines, err := cgroupLines(data)
	if err != nil {
		return Cgroup{}, err
	}
	return cgroupOf(lines), nil
}

// cgroupOf is ParseCgroup on lines cgroupLines accepted.
func cgroupOf(lines []cgroupLine) Cgroup {
	var (
		v2, v1     string
		hasV2, hv1 bool
	)
	for _, l := range lines {
		switch {
		case l.id == 0:
			v2, hasV2 = l.path, true
		case l.systemd:
			v1, hv1 = l.path, true
		}
	}
	var cg Cgroup
	switch {
	case hasV2 && v2 != "/":
		// Unified, or hybrid (systemd v233+ tracks processes in the v2
		// hierarchy and mirrors them into name=systemd).
		cg.Path = v2
	case hv1:
		// Legacy: only name=systemd says where systemd put the process.
		cg.Path = v1
	case hasV2:
		cg.Path = v2
	default:
		return Cgroup{}
	}
	cg.Unit, cg.UserUnit, cg.UserManagerUID = unitOfPath(cg.Path)
	return cg
}

type cgroupLine struct {
	id          uint64
	controllers string
	systemd     bool // the controllers include name=systemd
	path        string
}

func cgroupLines(data []byte) ([]cgroupLine, error) {
	if len(data) == 0 {
		return nil, errors.New("cgroup file is empty")
	}
	if data[len(data)-1] != '\n' {
		return nil, errors.New("cgroup file does not end with a newline")
	}
	raw := bytes.Split(data[:len(data)-1], []byte{'\n'})
	out := make([]cgroupLine, 0, len(raw))
	systemd := false
	for i, b := range raw {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("cgroup line %d: %s", i+1, fmt.Sprintf(format, args...))
		}
		idStr, rest, ok := bytes.Cut(b, []byte{':'})
		if !ok {
			return nil, bad("want ID:controllers:path")
		}
		ctl, path, ok := bytes.Cut(rest, []byte{':'})
		if !ok {
			return nil, bad("want ID:controllers:path")
		}
		id, err := parseDecimal(string(idStr), 32)
		if err != nil {
			return nil, bad("hierarchy id: %v", err)
		}
		if (id == 0) != (len(ctl) == 0) {
			// Only the v2 hierarchy (id 0) has no controller list.
			return nil, bad("hierarchy %d with controllers %q", id, ctl)
		}
		if len(path) == 0 || path[0] != '/' {
			return nil, bad("path is not absolute")
		}
		// A handful of lines: a scan costs less than a map.
		for _, o := range out {
			if o.id == id {
				return nil, bad("hierarchy %d listed twice", id)
			}
		}
		l := cgroupLine{id: id, controllers: string(ctl), path: string(path)}
		for c := range strings.SplitSeq(l.controllers, ",") {
			if c == "name=systemd" {
				l.systemd = true
			}
		}
		if l.systemd {
			if systemd {
				return nil, bad("name=systemd listed twice")
			}
			systemd = true
		}
		out = append(out, l)
	}
	return out, nil
}

// cgroupLayout returns the hierarchy part ("ID:controllers") of every line,
// which is the same for every process on the host: hierarchies are global,
// only the paths differ. A peer whose file has a different layout from the
// daemon's own has a cgroup name with a newline in it, forging lines (the
// kernel prints names unescaped); Attest refuses it.
func cgroupLayout(data []byte) (string, error) {
	lines, err := cgroupLines(data)
	if err != nil {
		return "", err
	}
	return string(appendLayout(nil, lines)), nil
}

// appendLayout appends the layout of lines (see cgroupLayout) to b.
func appendLayout(b []byte, lines []cgroupLine) []byte {
	for _, l := range lines {
		b = strconv.AppendUint(b, l.id, 10)
		b = append(b, ':')
		b = append(b, l.controllers...)
		b = append(b, '\n')
	}
	return b
}

// unitOfPath names the unit of a cgroup path; see ParseCgroup.
func unitOfPath(path string) (unit string, user bool, managerUID uint32) {
	comps := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for _, c := range comps {
		// The kernel prints ".." for a cgroup outside our cgroup
		// namespace: that is nothing we can name.
		if c == "" || c == "." || c == ".." {
			return "", false, 0
		}
	}
	i := skipSlices(comps, 0)
	if i == len(comps) {
		return "", false, 0
	}
	if uid, ok := userManager(comps[i]); ok {
		mgr := comps[i]
		j := skipSlices(comps, i+1)
		if j == len(comps) || !isUnit(comps[j]) {
			return mgr, true, uid
		}
		parts := []string{mgr}
		for _, c := range comps[i+1 : j+1] {
			parts = append(parts, unescape(c))
		}
		return strings.Join(parts, "/"), true, uid
	}
	if isUnit(comps[i]) {
		return unescape(comps[i]), false, 0
	}
	return "", false, 0
}

// isUnit reports whether the cgroup name c is a unit that can hold
// processes: a valid unit name, and not a slice (an instance-named slice,
// which skipSlices does not skip, names no unit either, as in systemd).
func isUnit(c string) bool {
	u := unescape(c)
	return validUnitName(u) && !strings.HasSuffix(u, ".slice")
}

func skipSlices(comps []string, i int) int {
	for i < len(comps) && isSlice(unescape(comps[i])) {
		i++
	}
	return i
}

// unescape undoes systemd's cgroup escaping (cg_escape), which prefixes a
// "_" to names that could clash with the kernel's own files.
func unescape(s string) string { return strings.TrimPrefix(s, "_") }

// userManager reports whether c is user@UID.service, a per-user manager,
// and returns UID. Like systemd it needs a decimal UID that is not -1 or
// 65535; anything else is an ordinary system unit name.
func userManager(c string) (uint32, bool) {
	s, ok := strings.CutPrefix(c, "user@")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".service")
	if !ok {
		return 0, false
	}
	uid, err := parseDecimal(s, 32)
	if err != nil || uid == 65535 || uid == 1<<32-1 {
		return 0, false
	}
	return uint32(uid), true
}

func isSlice(s string) bool {
	return strings.HasSuffix(s, ".slice") && validUnitName(s) && !strings.Contains(s, "@")
}

// unitTypes are systemd's unit types; a name without one of these suffixes
// is not a unit.
var unitTypes = map[string]bool{
	"service": true, "socket": true, "target": true, "device": true,
	"mount": true, "automount": true, "swap": true, "timer": true,
	"path": true, "slice": true, "scope": true,
}

// validUnitName reports whether s is a plain or instance unit name
// ("foo.service", "foo@bar.service"), as systemd's unit_name_is_valid with
// UNIT_NAME_PLAIN|UNIT_NAME_INSTANCE; templates ("foo@.service") are not.
func validUnitName(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	dot := strings.LastIndexByte(s, '.')
	if dot <= 0 || !unitTypes[s[dot+1:]] {
		return false
	}
	name := s[:dot]
	prefix, instance, isInstance := strings.Cut(name, "@")
	if prefix == "" || !validUnitChars(prefix, false) {
		return false
	}
	if isInstance && (instance == "" || !validUnitChars(instance, true)) {
		return false
	}
	return true
}

func validUnitChars(s string, at bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == ':' || c == '-' || c == '_' || c == '.' || c == '\\':
		case c == '@' && at:
		default:
			return false
		}
	}
	return true
}

// parseDecimal parses a plain decimal number: digits only, no sign, no
// leading zeros, as the kernel writes them.
func parseDecimal(s string, bits int) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	return strconv.ParseUint(s, 10, bits)
}
