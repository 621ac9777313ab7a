package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
)

// NewUpstream builds the Exceptionless API client a config describes,
// trusting the system's CAs plus ca_file when given.
func NewUpstream(cfg ExceptionlessConfig) (*exceptionless.Client, error) {
	if cfg.CAFile == "" {
		return exceptionless.New(cfg.URL, nil)
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("exceptionless.ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("exceptionless.ca_file %s holds no PEM certificate", cfg.CAFile)
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}
	hc := &http.Client{
		Transport: tr,
		Timeout:   60 * time.Second,
		// Never follow redirects: one would carry the Authorization header
		// (and so the token) somewhere the config does not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return exceptionless.New(cfg.URL, hc)
}
