package daemon_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
)

func rawGet(t *testing.T, socket, path string) (status string, header map[string]string) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: exlessd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	header = map[string]string{}
	for {
		h, err := r.ReadString('\n')
		if err != nil || h == "\r\n" {
			break
		}
		k, v, _ := strings.Cut(strings.TrimSpace(h), ":")
		header[strings.ToLower(k)] = strings.TrimSpace(v)
	}
	return strings.Fields(line)[1], header
}

// A uid over its request budget gets 429 with Retry-After; the client waits
// that long once and gets through.
func TestRateLimitPerUID(t *testing.T) {
	e := newEnvWith(t, rootRule(), daemon.Limits{RequestsPerSecond: 1, Burst: 3})
	var limited, retryAfter string
	for range 6 {
		status, h := rawGet(t, e.socket, "/v1/whoami")
		if status == "429" {
			limited, retryAfter = status, h["retry-after"]
		}
	}
	if limited != "429" || retryAfter == "" {
		t.Fatalf("6 quick requests with a burst of 3: no 429 with Retry-After")
	}
	start := time.Now()
	if _, err := e.client.WhoAmI(context.Background()); err != nil {
		t.Fatalf("the client did not get through after honouring Retry-After: %v", err)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Errorf("the client did not wait for Retry-After")
	}
	if st, err := e.client.Status(context.Background()); err != nil || st.RateLimited == 0 {
		t.Errorf("status rate_limited = %+v, %v", st.RateLimited, err)
	}
}

// Over max_connections new connections are closed at once, not queued; the
// daemon serves again as soon as connections close.
func TestConnectionCap(t *testing.T) {
	e := newEnvWith(t, rootRule(), daemon.Limits{MaxConnections: 4})
	var idle []net.Conn
	for range 4 {
		c, err := net.Dial("unix", e.socket)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	time.Sleep(100 * time.Millisecond) // let the server accept them
	over, err := net.Dial("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = over.Read(make([]byte, 1))
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("a connection over the cap was not closed at once (%v after %s)", err, time.Since(start))
	}
	over.Close()
	for _, c := range idle {
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	st, err := e.client.Status(context.Background())
	if err != nil {
		t.Fatalf("after the idle connections closed: %v", err)
	}
	if st.ConnectionsCutOff == 0 {
		t.Error("status does not count the refused connection")
	}
}

// The rate limit is per attested identity: a unit that floods is refused
// while another unit of the same uid keeps its own budget; all units of a
// uid together still get only uidRateFactor (4) buckets' worth.
func TestRateLimitPerUnit(t *testing.T) {
	requireRoot(t)
	// A refill of one request per 1000 s: every bucket holds its burst.
	e := newEnvWith(t, rootRule(), daemon.Limits{RequestsPerSecond: 0.001, Burst: 3})
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("exless-rate-%d", os.Getpid())
	statuses := func(unit string, n int) map[string]int {
		t.Helper()
		cg := unitCgroup(t, tag+"-"+unit+".service")
		h := startHelper(t, bin, e.socket, "requests", n, &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())})
		got := map[string]int{}
		for range n {
			got[h.line(t)]++
		}
		h.stop(t)
		return got
	}
	if got := statuses("flood", 10); got["200"] != 3 || got["429"] != 7 {
		t.Fatalf("a unit sending 10 requests with a burst of 3: %v, want 3 200s and 7 429s", got)
	}
	if got := statuses("quiet", 3); got["200"] != 3 {
		t.Errorf("another unit of the same uid after the flood: %v, want 3 200s", got)
	}
	// The uid's bucket holds 4 x 3 = 12: flood and quiet took 6.
	if got := statuses("more1", 3); got["200"] != 3 {
		t.Errorf("a third unit: %v, want 3 200s", got)
	}
	if got := statuses("more2", 4); got["200"] != 3 || got["429"] != 1 {
		t.Errorf("a fourth unit: %v, want 3 200s and a 429", got)
	}
	if got := statuses("more3", 3); got["429"] != 3 {
		t.Errorf("a fifth unit once the uid spent 4 bursts: %v, want 3 429s", got)
	}
	if !strings.Contains(e.logs.String(), "unit="+tag+"-flood.service") {
		t.Errorf("the rate-limit warning does not name the flooding unit")
	}
}

// A reply that cannot be written within write_timeout (here: the mint it
// waits for is slower) loses its connection, and the cut is counted and
// named. The token minted meanwhile is not lost: the next request gets it.
func TestWriteTimeoutCutsTheConnection(t *testing.T) {
	e := newEnvWith(t, rootRule(), daemon.Limits{RequestTimeout: 200 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	project := e.ex.Account.Projects[0].ID
	e.ex.SetLatency("POST", "/api/v2/projects/"+project+"/tokens", 1500*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := e.client.Token(ctx, daemon.ScopeClient, project); err == nil {
		t.Fatalf("a reply past write_timeout reached the client (%s)", resp.Token)
	}
	e.ex.SetLatency("POST", "/api/v2/projects/"+project+"/tokens", 0)
	st, err := e.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.CutOffs["write_timeout"] == 0 {
		t.Errorf("status cut off by reason %v, want write_timeout counted", st.CutOffs)
	}
	if !strings.Contains(e.logs.String(), "limits.write_timeout") {
		t.Error("the warning does not name limits.write_timeout")
	}
	if _, err := e.client.Token(ctx, daemon.ScopeClient, project); err != nil {
		t.Fatalf("after the cut: %v", err)
	}
	if n := e.countCalls("POST", "/api/v2/projects/"+project+"/tokens"); n != 1 {
		t.Errorf("%d mints, want 1: the token minted for the cut request is kept", n)
	}
}
