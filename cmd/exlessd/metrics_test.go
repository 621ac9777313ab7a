package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/exless/exless/daemon"
)

// metrics.listen serves GET /metrics and nothing else, on a loopback port
// or a socket, beside the API socket's /v1/metrics.
func TestMetricsListener(t *testing.T) {
	for _, kind := range []string{"tcp", "unix"} {
		t.Run(kind, func(t *testing.T) {
			// The env first: a Vault started under NOTIFY_SOCKET would
			// send its own READY=1.
			e := newTestEnv(t)
			notes := listenNotify(t)
			listen := "127.0.0.1:0"
			if kind == "unix" {
				listen = filepath.Join(e.dir, "m.sock")
			}
			e.writeConfig(myRule() + "\nmetrics {\n  listen = \"" + listen + "\"\n}\n")
			e.start(0)
			notes.waitFor(10*time.Second, "READY=1")
			if _, err := e.client().Token(context.Background(), daemon.ScopeClient, e.ex.Account.Projects[0].ID); err != nil {
				t.Fatal(err)
			}
			var dial func(ctx context.Context, _, _ string) (net.Conn, error)
			if kind == "unix" {
				dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "unix", listen)
				}
			} else {
				m := regexp.MustCompile(`serving metrics for a scraper.*addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(e.logs.String())
				if m == nil {
					t.Fatal("the log does not say where metrics are served")
				}
				addr := m[1]
				dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				}
			}
			hc := &http.Client{Transport: &http.Transport{DialContext: dial}, Timeout: 30 * time.Second}
			defer hc.CloseIdleConnections()
			get := func(path string) (int, []byte) {
				resp, err := hc.Get("http://metrics" + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, body
			}
			code, body := get("/metrics")
			if code != 200 {
				t.Fatalf("GET /metrics = %d %s", code, body)
			}
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if f := fams["exless_mints_total"]; f == nil || f.Metric[0].Counter.GetValue() != 1 {
				t.Errorf("exless_mints_total = %v, want 1", f)
			}
			for _, ti := range e.ex.Tokens() {
				if strings.Contains(string(body), ti.ID) {
					t.Error("a token id appears in the scrape")
				}
			}
			if code, _ := get("/v1/token?scope=user"); code != 404 {
				t.Errorf("the metrics listener answered the token API with %d, want 404", code)
			}
		})
	}
}
