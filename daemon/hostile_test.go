package daemon_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
)

// Hostile clients: each test attacks the daemon while an allowed peer keeps
// fetching tokens, and checks that the peer is served throughout, that the
// attacker is cut off, and that the cut-off is counted and logged once.

// hostileLimits are short enough for tests to wait out.
var hostileLimits = daemon.Limits{
	HeaderTimeout: time.Second, RequestTimeout: 2 * time.Second,
	WriteTimeout: 10 * time.Second, IdleTimeout: time.Second,
	MaxHeaderBytes: 1024, MaxBodyBytes: 512,
}

// servedBound is how long an allowed fetch may take while an attack runs:
// generous, since it shows the peer is not starved, not that it is fast.
const servedBound = 5 * time.Second

// keepFetching fetches the user token until stop closes; a fetch that is
// refused (every slot taken) is retried, and each must succeed within
// servedBound. It returns how many succeeded, once stop is closed.
func keepFetching(t *testing.T, e *env, stop <-chan struct{}) func() int {
	t.Helper()
	var (
		mu     sync.Mutex
		n      int
		failed error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			var err error
			for {
				ctx, cancel := context.WithTimeout(context.Background(), servedBound)
				_, err = e.client.Token(ctx, daemon.ScopeUser, "")
				cancel()
				if err == nil || time.Since(start) > servedBound {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			mu.Lock()
			if err != nil || time.Since(start) > servedBound {
				failed = fmt.Errorf("an allowed fetch was not served within %s: %v", servedBound, err)
				mu.Unlock()
				return
			}
			n++
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() int {
		t.Helper()
		<-done
		if failed != nil {
			t.Error(failed)
		}
		if n == 0 {
			t.Error("the allowed peer fetched nothing during the attack")
		}
		return n
	}
}

// cutOffs reads the daemon's cut-off count for reason.
func (e *env) cutOffs(reason string) uint64 {
	e.t.Helper()
	st, err := e.client.Status(context.Background())
	if err != nil {
		e.t.Fatalf("status: %v", err)
	}
	return st.CutOffs[reason]
}

// cutOffLogLines counts the cut-off warnings logged for reason.
func (e *env) cutOffLogLines(reason string) int {
	n := 0
	for line := range strings.SplitSeq(e.logs.String(), "\n") {
		if strings.Contains(line, "cutting off connections") && strings.Contains(line, "reason="+reason+" ") {
			n++
		}
	}
	return n
}

// wantCutOff checks that reason was counted at least min times and logged
// exactly once (the log is limited to a line a minute per reason).
func (e *env) wantCutOff(reason string, min uint64) {
	e.t.Helper()
	if n := e.cutOffs(reason); n < min {
		e.t.Errorf("status counts %d connections cut off for %s, want at least %d", n, reason, min)
	}
	if n := e.cutOffLogLines(reason); n != 1 {
		e.t.Errorf("%d log lines for cut-offs for %s, want 1", n, reason)
	}
}

// trickleUntilCut reports whether the daemon closes c within d, while it
// writes a byte of trickle (repeated) every 100 ms.
func trickleUntilCut(c net.Conn, trickle string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for i := 0; time.Now().Before(deadline); i++ {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte{trickle[i%len(trickle)]}); err != nil {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func dialT(t *testing.T, socket string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Slowloris: headers one byte at a time never finish; the daemon cuts the
// connection at header_timeout.
func TestHostileSlowHeaders(t *testing.T) {
	e := newEnvWith(t, rootRule(), hostileLimits)
	stop := make(chan struct{})
	served := keepFetching(t, e, stop)
	var wg sync.WaitGroup
	const attackers = 5
	cut := make(chan bool, attackers)
	for range attackers {
		c := dialT(t, e.socket)
		wg.Go(func() {
			cut <- trickleUntilCut(c, "GET /v1/whoami HTTP/1.1\r\nHost: exlessd\r\nX-Pad: "+strings.Repeat("a", 1000), 20*time.Second)
		})
	}
	wg.Wait()
	close(stop)
	served()
	for range attackers {
		if !<-cut {
			t.Fatal("a slowloris connection was not cut while it trickled for 20s")
		}
	}
	e.wantCutOff("header_timeout", attackers)
}

// A kept-alive connection that sends nothing after its request is closed
// at idle_timeout.
func TestHostileIdleKeepAlive(t *testing.T) {
	e := newEnvWith(t, rootRule(), hostileLimits)
	c := dialT(t, e.socket)
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "GET /v1/whoami HTTP/1.1\r\nHost: exlessd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if _, err := r.ReadByte(); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("an idle kept-alive connection was not closed")
	}
	e.wantCutOff("idle_timeout", 1)
}

// A body trickled one byte at a time, declared or chunked, is cut at
// request_timeout.
func TestHostileSlowBody(t *testing.T) {
	e := newEnvWith(t, rootRule(), hostileLimits)
	stop := make(chan struct{})
	served := keepFetching(t, e, stop)
	heads := []string{
		"POST /v1/reload HTTP/1.1\r\nHost: exlessd\r\nContent-Length: 400\r\n\r\n",
		"POST /v1/reload HTTP/1.1\r\nHost: exlessd\r\nTransfer-Encoding: chunked\r\n\r\n",
	}
	trickles := []string{"a", "1\r\na\r\n"}
	for i, head := range heads {
		c := dialT(t, e.socket)
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		// The reply comes while the body still trickles; read it aside.
		status := make(chan string, 1)
		go func() {
			line, _ := bufio.NewReader(c).ReadString('\n')
			status <- line
		}()
		if !trickleUntilCut(c, trickles[i], 20*time.Second) {
			t.Fatalf("%q: a body trickled for 20s was not cut", head)
		}
		if s := <-status; !strings.HasPrefix(s, "HTTP/1.1 408 ") {
			t.Errorf("%q: reply %q, want 408", head, s)
		}
	}
	close(stop)
	served()
	e.wantCutOff("request_timeout", 2)
}

// Headers over max_header_bytes get 431 and the connection closed; a body
// over max_body_bytes gets 413 and the connection closed, whether it is
// declared too large or turns out so.
func TestHostileOversized(t *testing.T) {
	e := newEnvWith(t, rootRule(), hostileLimits)
	stop := make(chan struct{})
	served := keepFetching(t, e, stop)
	cases := []struct{ req, want string }{
		{"GET /v1/whoami HTTP/1.1\r\nHost: exlessd\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", "431"},
		{"POST /v1/reload HTTP/1.1\r\nHost: exlessd\r\nContent-Length: 100000000\r\n\r\n", "413"},
		{"POST /v1/reload HTTP/1.1\r\nHost: exlessd\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"400\r\n" + strings.Repeat("a", 1024) + "\r\n0\r\n\r\n", "413"},
	}
	for _, tc := range cases {
		c := dialT(t, e.socket)
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		// The daemon may answer before it read everything.
		go func() { _, _ = io.WriteString(c, tc.req) }()
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if f := strings.Fields(line); err != nil || len(f) < 2 || f[1] != tc.want {
			t.Errorf("%.60q: reply %q (%v), want %s", tc.req, line, err, tc.want)
			continue
		}
		// Closed with the request unread, the socket may reset instead of
		// ending cleanly; only the deadline means it stayed open.
		if _, err := io.Copy(io.Discard, r); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%.60q: connection not closed after %s", tc.req, tc.want)
		}
	}
	close(stop)
	served()
	e.wantCutOff("header_too_large", 1)
	e.wantCutOff("body_too_large", 2)
}

// Thousands of idle connections from two other uids, more than
// max_connections: each uid gets max_connections_per_uid, the rest are
// refused at once, the ones held are cut at header_timeout, and the allowed
// peer is served throughout (at worst after header_timeout, while the two
// uids together hold every slot).
func TestHostileIdleConnections(t *testing.T) {
	requireRoot(t)
	limits := hostileLimits
	limits.MaxConnections, limits.MaxConnectionsPerUID = 100, 50
	e := newEnvWith(t, rootRule(), limits)
	e.openSocket()
	bin := helperBin(t)
	stop := make(chan struct{})
	served := keepFetching(t, e, stop)
	const perHelper = 1500
	var helpers []*helperProc
	for _, uid := range []uint32{4242, 4243} {
		attr := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		helpers = append(helpers, startHelper(t, bin, e.socket, "idle", perHelper, attr))
	}
	for _, h := range helpers {
		if got := h.line(t); got != strconv.Itoa(perHelper) {
			t.Fatalf("a helper opened %s connections, want %d", got, perHelper)
		}
	}
	// Every connection the helpers opened is refused or, held idle, cut
	// at header_timeout: each helper sees all of its own closed.
	for _, h := range helpers {
		if got := h.lineWithin(t, 30*time.Second); got != "closed" {
			t.Fatalf("helper said %q, want closed", got)
		}
	}
	close(stop)
	served()
	held := e.cutOffs("header_timeout")
	if held == 0 || held > 2*perHelper {
		t.Errorf("%d idle connections cut at header_timeout", held)
	}
	if refused := e.cutOffs("per_uid_connections") + e.cutOffs("max_connections"); refused+held < 2*perHelper {
		t.Errorf("%d refused and %d cut at header_timeout: fewer than the %d idle connections", refused, held, 2*perHelper)
	}
	e.wantCutOff("per_uid_connections", 1)
	e.wantCutOff("header_timeout", 1)
}

// A flood of connect-and-close from many goroutines of another uid: the
// daemon keeps serving, and afterwards holds no more goroutines or file
// descriptors than before, nor logged more than a line per reason.
func TestHostileConnectFlood(t *testing.T) {
	requireRoot(t)
	e := newEnvWith(t, rootRule(), hostileLimits)
	e.openSocket()
	bin := helperBin(t)
	if _, err := e.client.Token(context.Background(), daemon.ScopeUser, ""); err != nil {
		t.Fatal(err)
	}
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)

	stop := make(chan struct{})
	served := keepFetching(t, e, stop)
	const flood = 5000
	attr := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242}}
	h := startHelper(t, bin, e.socket, "churn", flood, attr)
	if got, _ := strconv.Atoi(h.line(t)); got < flood/2 {
		t.Errorf("only %d of %d flood connections connected", got, flood)
	}
	h.stop(t)
	close(stop)
	served()

	// The daemon closes what is left of the flood as it reads EOF.
	const margin = 20
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if runtime.NumGoroutine() <= goroutines+margin && openFDs(t) <= fds+margin {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if g, f := runtime.NumGoroutine(), openFDs(t); g > goroutines+margin || f > fds+margin {
		t.Errorf("after the flood: %d goroutines (%d before), %d fds (%d before)", g, goroutines, f, fds)
	}
	if _, err := e.client.Token(context.Background(), daemon.ScopeUser, ""); err != nil {
		t.Errorf("after the flood: %v", err)
	}
	st, err := e.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for reason, n := range st.CutOffs {
		if lines := e.cutOffLogLines(reason); lines > 1 {
			t.Errorf("%d connections cut off for %s logged %d lines, want at most 1", n, reason, lines)
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
