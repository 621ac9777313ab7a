package daemon

import (
	"strings"
	"testing"
)

func TestMetricsListenConfig(t *testing.T) {
	for _, tc := range []struct {
		listen, wantErr string
	}{
		{"", ""},
		{"127.0.0.1:9464", ""},
		{"[::1]:9464", ""},
		{"localhost:9464", ""},
		{"/run/exless/metrics.sock", ""},
		{"0.0.0.0:9464", "only loopback"},
		{"192.0.2.1:9464", "only loopback"},
		{"example.com:9464", "only loopback"},
		{"127.0.0.1", "loopback host:port"},
		{"127.0.0.1:http", "port must be a number"},
		{"metrics.sock", "loopback host:port"},
		{"/" + strings.Repeat("x", 120), "at most 107"},
	} {
		src := contractConfig
		if tc.listen != "" {
			src += "metrics {\n  listen = \"" + tc.listen + "\"\n}\n"
		}
		cfg, err := ParseConfig("/etc/exless/exlessd.hcl", []byte(src))
		if err != nil {
			t.Fatalf("%q: parse: %v", tc.listen, err)
		}
		if cfg.Metrics.Listen != tc.listen {
			t.Errorf("%q: parsed as %q", tc.listen, cfg.Metrics.Listen)
		}
		err = cfg.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.listen, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "metrics.listen")):
			t.Errorf("%q: error %v, want one naming metrics.listen and %q", tc.listen, err, tc.wantErr)
		}
	}
}
