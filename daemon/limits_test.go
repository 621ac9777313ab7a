package daemon_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
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
