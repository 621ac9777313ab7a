package main

import (
	"os/exec"
	"testing"
)

func TestNSSNames(t *testing.T) {
	if _, err := exec.LookPath("getent"); err != nil {
		t.Skip("no getent here")
	}
	var n nssNames
	if id, err := n.LookupUser("root"); err != nil || id != 0 {
		t.Errorf("LookupUser(root) = %d, %v; want 0", id, err)
	}
	if id, err := n.LookupGroup("root"); err != nil || id != 0 {
		t.Errorf("LookupGroup(root) = %d, %v; want 0", id, err)
	}
	// "0" is root's uid, not a name; "-x" is not an option.
	for _, name := range []string{"0", "-x", "no-such-user-exless", "", "a:b"} {
		if id, err := n.LookupUser(name); err == nil {
			t.Errorf("LookupUser(%q) = %d, want an error", name, id)
		}
	}
}
