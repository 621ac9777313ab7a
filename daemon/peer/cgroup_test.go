package peer

import (
	"fmt"
	"strings"
	"testing"
)

// Recorded /proc/<pid>/cgroup contents. hybridFmt is a systemd host in
// hybrid mode (v1 controllers, name=systemd, and v2 at .../unified); the
// same path appears on every line.
const hybridFmt = `12:rdma:/
11:pids:%[1]s
10:memory:%[1]s
9:cpu,cpuacct:%[1]s
8:blkio:%[1]s
7:devices:%[1]s
6:net_cls,net_prio:/
5:freezer:/
4:perf_event:/
3:hugetlb:/
2:cpuset:/
1:name=systemd:%[1]s
0::%[1]s
`

// legacyFmt is a systemd host in legacy mode: no v2 line at all.
const legacyFmt = `11:pids:%[1]s
10:memory:%[1]s
9:cpu,cpuacct:%[1]s
2:cpuset:/
1:name=systemd:%[1]s
`

func TestParseCgroup(t *testing.T) {
	const u1000 = "/user.slice/user-1000.slice/user@1000.service"
	for _, tc := range []struct {
		name, data string
		want       Cgroup
	}{
		{"system service", "0::/system.slice/deploy.service\n",
			Cgroup{Path: "/system.slice/deploy.service", Unit: "deploy.service"}},
		{"nested slices", "0::/system.slice/system-getty.slice/getty@tty1.service\n",
			Cgroup{Path: "/system.slice/system-getty.slice/getty@tty1.service", Unit: "getty@tty1.service"}},
		{"custom slice tree", "0::/ops.slice/ops-deploy.slice/release.service\n",
			Cgroup{Path: "/ops.slice/ops-deploy.slice/release.service", Unit: "release.service"}},
		{"login session scope", "0::/user.slice/user-1000.slice/session-3.scope\n",
			Cgroup{Path: "/user.slice/user-1000.slice/session-3.scope", Unit: "session-3.scope"}},
		{"init scope", "0::/init.scope\n", Cgroup{Path: "/init.scope", Unit: "init.scope"}},
		{"root", "0::/\n", Cgroup{Path: "/"}},
		{"directly in a slice", "0::/system.slice\n", Cgroup{Path: "/system.slice"}},
		{"below a delegating service", "0::/system.slice/foo.service/worker/x.service\n",
			Cgroup{Path: "/system.slice/foo.service/worker/x.service", Unit: "foo.service"}},
		{"escaped unit name", "0::/system.slice/_cpu.service\n",
			Cgroup{Path: "/system.slice/_cpu.service", Unit: "cpu.service"}},
		{"colon in unit name", "0::/system.slice/a:b.service\n",
			Cgroup{Path: "/system.slice/a:b.service", Unit: "a:b.service"}},
		{"template is no unit", "0::/system.slice/foo@.service\n", Cgroup{Path: "/system.slice/foo@.service"}},
		{"not a unit name", "0::/system.slice/foo\n", Cgroup{Path: "/system.slice/foo"}},
		{"instance slice is no unit", "0::/system.slice/foo@bar.slice/x.service\n", Cgroup{Path: "/system.slice/foo@bar.slice/x.service"}},
		{"unknown unit type", "0::/system.slice/foo.exe\n", Cgroup{Path: "/system.slice/foo.exe"}},

		{"user unit", "0::" + u1000 + "/app.slice/x.service\n",
			Cgroup{Path: u1000 + "/app.slice/x.service", Unit: "user@1000.service/app.slice/x.service", UserUnit: true, UserManagerUID: 1000}},
		{"user unit nested user slices", "0::" + u1000 + "/app.slice/app-gnome.slice/y.scope\n",
			Cgroup{Path: u1000 + "/app.slice/app-gnome.slice/y.scope", Unit: "user@1000.service/app.slice/app-gnome.slice/y.scope", UserUnit: true, UserManagerUID: 1000}},
		{"user unit without slice", "0::" + u1000 + "/x.service\n",
			Cgroup{Path: u1000 + "/x.service", Unit: "user@1000.service/x.service", UserUnit: true, UserManagerUID: 1000}},
		{"user manager itself", "0::" + u1000 + "/init.scope\n",
			Cgroup{Path: u1000 + "/init.scope", Unit: "user@1000.service/init.scope", UserUnit: true, UserManagerUID: 1000}},
		{"below a delegating user unit", "0::" + u1000 + "/app.slice/podman.service/c/deploy.service\n",
			Cgroup{Path: u1000 + "/app.slice/podman.service/c/deploy.service", Unit: "user@1000.service/app.slice/podman.service", UserUnit: true, UserManagerUID: 1000}},
		{"user cgroup naming no unit", "0::" + u1000 + "/mine\n",
			Cgroup{Path: u1000 + "/mine", Unit: "user@1000.service", UserUnit: true, UserManagerUID: 1000}},
		{"directly in user manager", "0::" + u1000 + "\n",
			Cgroup{Path: u1000, Unit: "user@1000.service", UserUnit: true, UserManagerUID: 1000}},
		{"user named like a system unit", "0::" + u1000 + "/deploy.service\n",
			Cgroup{Path: u1000 + "/deploy.service", Unit: "user@1000.service/deploy.service", UserUnit: true, UserManagerUID: 1000}},
		{"root's user manager", "0::/user.slice/user-0.slice/user@0.service/app.slice/x.service\n",
			Cgroup{Path: "/user.slice/user-0.slice/user@0.service/app.slice/x.service", Unit: "user@0.service/app.slice/x.service", UserUnit: true}},
		{"user manager uid 65535 is no uid", "0::/user.slice/user@65535.service/x.service\n",
			Cgroup{Path: "/user.slice/user@65535.service/x.service", Unit: "user@65535.service"}},
		{"user manager uid not a number", "0::/user.slice/user@bob.service/x.service\n",
			Cgroup{Path: "/user.slice/user@bob.service/x.service", Unit: "user@bob.service"}},

		{"nspawn container", "0::/machine.slice/systemd-nspawn@web.service/payload/system.slice/deploy.service\n",
			Cgroup{Path: "/machine.slice/systemd-nspawn@web.service/payload/system.slice/deploy.service", Unit: "systemd-nspawn@web.service"}},
		{"docker systemd driver", "0::/system.slice/docker-0123abcd.scope\n",
			Cgroup{Path: "/system.slice/docker-0123abcd.scope", Unit: "docker-0123abcd.scope"}},
		{"kubernetes pod", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12_34.slice/cri-containerd-ab12.scope\n",
			Cgroup{Path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12_34.slice/cri-containerd-ab12.scope", Unit: "cri-containerd-ab12.scope"}},
		{"docker cgroupfs driver", "0::/docker/0123abcd\n", Cgroup{Path: "/docker/0123abcd"}},
		{"outside our cgroup namespace", "0::/../../system.slice/deploy.service\n", Cgroup{Path: "/../../system.slice/deploy.service"}},
		{"removed cgroup", "0::/system.slice/x.service (deleted)\n", Cgroup{Path: "/system.slice/x.service (deleted)"}},

		{"hybrid", fmt.Sprintf(hybridFmt, "/system.slice/deploy.service"),
			Cgroup{Path: "/system.slice/deploy.service", Unit: "deploy.service"}},
		{"hybrid user unit", fmt.Sprintf(hybridFmt, u1000+"/app.slice/x.service"),
			Cgroup{Path: u1000 + "/app.slice/x.service", Unit: "user@1000.service/app.slice/x.service", UserUnit: true, UserManagerUID: 1000}},
		{"hybrid root", fmt.Sprintf(hybridFmt, "/"), Cgroup{Path: "/"}},
		{"legacy", fmt.Sprintf(legacyFmt, "/system.slice/deploy.service"),
			Cgroup{Path: "/system.slice/deploy.service", Unit: "deploy.service"}},
		{"legacy session", fmt.Sprintf(legacyFmt, "/user.slice/user-1000.slice/session-3.scope"),
			Cgroup{Path: "/user.slice/user-1000.slice/session-3.scope", Unit: "session-3.scope"}},
		{"hybrid, v2 at root, name=systemd placed", "1:name=systemd:/system.slice/x.service\n0::/\n",
			Cgroup{Path: "/system.slice/x.service", Unit: "x.service"}},
		{"v2 wins over name=systemd", "1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n",
			Cgroup{Path: "/system.slice/b.service", Unit: "b.service"}},
		{"name=systemd among others", "1:cpu,name=systemd:/system.slice/x.service\n",
			Cgroup{Path: "/system.slice/x.service", Unit: "x.service"}},
		{"no systemd hierarchy", "4:memory:/system.slice/x.service\n", Cgroup{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCgroup([]byte(tc.data))
			if err != nil {
				t.Fatalf("ParseCgroup(%q): %v", tc.data, err)
			}
			if got != tc.want {
				t.Errorf("ParseCgroup(%q)\n got %+v\nwant %+v", tc.data, got, tc.want)
			}
		})
	}
}

func TestParseCgroupRejectsGarbage(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"empty", ""},
		{"no final newline", "0::/"},
		{"not a cgroup line", "hello\n"},
		{"one colon", "0:/\n"},
		{"relative path", "0::system.slice/x.service\n"},
		{"empty path", "0::\n"},
		{"bad hierarchy id", "x::/\n"},
		{"negative hierarchy id", "-1:cpu:/\n"},
		{"padded hierarchy id", "01:cpu:/\n"},
		{"v2 with controllers", "0:cpu:/\n"},
		{"v1 without controllers", "3::/\n"},
		{"empty line", "0::/\n\n"},
		{"only a newline", "\n"},
		{"hierarchy twice", "0::/a.service\n0::/b.service\n"},
		// A cgroup named "x\n0::/system.slice/deploy.service" forges a
		// second v2 line.
		{"forged v2 line", "0::/user.slice/x\n0::/system.slice/deploy.service\n"},
		{"name=systemd twice", "1:name=systemd:/a.service\n2:name=systemd:/b.service\n"},
		{"binary", "\x00\xff\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := ParseCgroup([]byte(tc.data)); err == nil {
				t.Errorf("ParseCgroup(%q) = %+v, want an error", tc.data, got)
			}
		})
	}
}

func TestCgroupLayoutCatchesForgedLines(t *testing.T) {
	own := fmt.Sprintf(legacyFmt, "/user.slice/user-1000.slice/session-2.scope")
	// On a legacy host there is no v2 line to collide with: a peer able
	// to name a cgroup "x\n0::/system.slice/deploy.service" adds one, and
	// the v2 line would win. ParseCgroup alone cannot tell; the layout,
	// compared with the daemon's own, can.
	forged := "11:pids:/user.slice/user-1000.slice/user@1000.service\n" +
		"10:memory:/user.slice/user-1000.slice/user@1000.service\n" +
		"9:cpu,cpuacct:/user.slice/user-1000.slice/user@1000.service\n" +
		"2:cpuset:/\n" +
		"1:name=systemd:/user.slice/user-1000.slice/user@1000.service/x\n0::/system.slice/deploy.service\n"
	if cg, err := ParseCgroup([]byte(forged)); err != nil || cg.Unit != "deploy.service" {
		t.Fatalf("premise: ParseCgroup(forged) = %+v, %v; want it fooled", cg, err)
	}
	a, err := cgroupLayout([]byte(own))
	if err != nil {
		t.Fatal(err)
	}
	b, err := cgroupLayout([]byte(forged))
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("layout of forged file = layout of genuine one (%q)", a)
	}
	c, err := cgroupLayout([]byte(fmt.Sprintf(legacyFmt, "/system.slice/other.service")))
	if err != nil {
		t.Fatal(err)
	}
	if a != c {
		t.Errorf("layouts of two genuine files differ: %q vs %q", a, c)
	}
}

func TestValidUnitName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"deploy.service", true},
		{"getty@tty1.service", true},
		{"a@b@c.service", true},
		{"session-3.scope", true},
		{"system-getty.slice", true},
		{`sys-devices-x\x2dy.device`, true},
		{"foo@.service", false},
		{"@x.service", false},
		{".service", false},
		{"foo", false},
		{"foo.", false},
		{"foo.exe", false},
		{"foo bar.service", false},
		{"foo/bar.service", false},
		{strings.Repeat("a", 248) + ".service", false},
		{strings.Repeat("a", 247) + ".service", true},
	} {
		if got := validUnitName(tc.name); got != tc.want {
			t.Errorf("validUnitName(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzParseCgroup checks ParseCgroup never panics and that what it accepts
// keeps the promises policy globs rely on.
func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("0::/system.slice/deploy.service\n"))
	f.Add([]byte(fmt.Sprintf(hybridFmt, "/user.slice/user-1000.slice/user@1000.service/app.slice/x.service")))
	f.Fuzz(func(t *testing.T, data []byte) {
		cg, err := ParseCgroup(data)
		if err != nil {
			return
		}
		if _, err := cgroupLayout(data); err != nil {
			t.Fatalf("ParseCgroup accepted %q but cgroupLayout refused it: %v", data, err)
		}
		if cg.Path != "" && !strings.Contains(string(data), ":"+cg.Path+"\n") {
			t.Fatalf("Path %q is not a line's path in %q", cg.Path, data)
		}
		switch {
		case cg.Unit == "":
			if cg.UserUnit {
				t.Fatalf("UserUnit without Unit for %q", data)
			}
		case cg.UserUnit:
			mgr := fmt.Sprintf("user@%d.service", cg.UserManagerUID)
			if cg.Unit != mgr && !strings.HasPrefix(cg.Unit, mgr+"/") {
				t.Fatalf("user Unit %q does not start with %s for %q", cg.Unit, mgr, data)
			}
			if !strings.Contains(cg.Path, "/"+mgr) {
				t.Fatalf("user Unit %q but Path %q has no %s", cg.Unit, cg.Path, mgr)
			}
		default:
			if !validUnitName(cg.Unit) || strings.Contains(cg.Unit, "/") || strings.HasSuffix(cg.Unit, ".slice") {
				t.Fatalf("system Unit %q is not a plain unit name (from %q)", cg.Unit, data)
			}
			if strings.Contains(cg.Path+"/", "/../") {
				t.Fatalf("Unit %q from a path outside the namespace %q", cg.Unit, cg.Path)
			}
		}
	})
}
