package child

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestStopEscalatesToKill(t *testing.T) {
	out, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// A child that ignores SIGTERM: Stop must end it with SIGKILL.
	p, err := Start("/bin/sh", []string{"-c", `trap "" TERM; echo up; while :; do sleep 1; done`}, nil, "/", out)
	if err != nil {
		t.Fatal(err)
	}
	if p.Exited() || p.PID() <= 0 || p.Args()[0] != "/bin/sh" {
		t.Fatalf("just started: exited %v pid %d args %q", p.Exited(), p.PID(), p.Args())
	}
	for b, _ := os.ReadFile(out.Name()); !strings.Contains(string(b), "up"); b, _ = os.ReadFile(out.Name()) {
		time.Sleep(10 * time.Millisecond) // the trap is set once it speaks
	}
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() || p.Err() == nil || !strings.Contains(p.Err().Error(), "killed") {
		t.Errorf("after Stop: exited %v, err %v; want killed", p.Exited(), p.Err())
	}
}

func TestStopAndKill(t *testing.T) {
	for _, stop := range []func(*Proc){
		func(p *Proc) { _ = p.Stop(5 * time.Second) },
		(*Proc).Kill,
	} {
		p, err := Start("/bin/sleep", []string{"30"}, nil, "/", nil)
		if err != nil {
			t.Fatal(err)
		}
		stop(p)
		select {
		case <-p.Done():
		default:
			t.Error("Done not closed after the child was stopped")
		}
	}
	if _, err := Start("/nonexistent/bin", nil, nil, "/", nil); err == nil || !strings.Contains(err.Error(), "/nonexistent/bin") {
		t.Errorf("start of a missing binary: %v", err)
	}
}
