package vaultstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/vaultstore"
	"github.com/exless/exless/vaultstore/vaulttest"
)

// TestTLSClientCertificate: a Vault listener that requires a client
// certificate, with its own CA: the store works with CAFile (or CACert)
// and the client certificate, alone or behind a dead address, and fails
// with a TLS error without them.
func TestTLSClientCertificate(t *testing.T) {
	n := vaulttest.StartPersistentTLS(t)
	if !strings.HasPrefix(n.Addr, "https://") {
		t.Fatalf("Addr = %s, want https", n.Addr)
	}
	caPEM, err := os.ReadFile(n.TLS.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	base := vaultstore.Config{
		Address: n.Addr, Token: n.Token(), Path: testPath(t), Timeout: 5 * time.Second,
		ClientCertFile: n.TLS.ClientCertFile, ClientKeyFile: n.TLS.ClientKeyFile,
	}
	withFile, withBytes, failover, noCert, noCA := base, base, base, base, base
	withFile.CAFile = n.TLS.CAFile
	withBytes.CACert = caPEM
	failover.CAFile, failover.Address, failover.Addresses = n.TLS.CAFile, "", []string{"https://127.0.0.1:1", n.Addr}
	noCert.CAFile, noCert.ClientCertFile, noCert.ClientKeyFile = n.TLS.CAFile, "", ""

	version := 0
	for _, tc := range []struct {
		name string
		cfg  vaultstore.Config
		want string // error text; empty: works
	}{
		{"ca file", withFile, ""},
		{"ca bytes", withBytes, ""},
		{"failover", failover, ""},
		{"no client certificate", noCert, "tls: certificate required"},
		{"unknown ca", noCA, "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := vaultstore.New(t.Context(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			v, err := s.Save(ctx, daemon.UserKey, record(tc.name), version)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Save over TLS: %v", err)
				}
				version = v
				if err := s.Ping(ctx); err != nil {
					t.Errorf("Ping over TLS: %v", err)
				}
				return
			}
			var ve *vaultstore.Error
			if !errors.As(err, &ve) || ve.StatusCode != 0 {
				t.Fatalf("Save = %v, want a transport error", err)
			}
			// A TLS 1.3 client learns of a refused certificate only after
			// the handshake, and Go's HTTP/2 transport may report a later
			// attempt as "client conn could not be established": the
			// alert's text is likely, not certain.
			if !strings.Contains(err.Error(), tc.want) {
				t.Logf("(error does not quote %q)", tc.want)
			}
			t.Logf("Save: %v", err)
			noSecrets(t, "error", err.Error(), n.Token(), recToken)
		})
	}
	if version != 3 {
		t.Errorf("%d saves went through, want 3", version)
	}
}

// TestConfigPrintsNoSecrets: the printed Config shows the new fields and
// never the token or the CA bytes.
func TestConfigPrintsNoSecrets(t *testing.T) {
	cfg := vaultstore.Config{
		Token: "hvs.inline-secret", Addresses: []string{"https://a:8200", "https://b:8200"},
		AppRole: &vaultstore.AppRoleConfig{RoleIDFile: "role-id", SecretIDFile: "secret-id"},
		CACert:  []byte("-----BEGIN CERTIFICATE-----\nMIIB\n"), Namespace: "team",
	}
	for _, got := range []string{fmtV(cfg), fmtGo(cfg)} {
		noSecrets(t, "printed config", got, "hvs.inline-secret", "MIIB")
		for _, want := range []string{"https://b:8200", "SecretIDFile:\"secret-id\"", "Namespace:\"team\"", "Token:true"} {
			if !strings.Contains(got, want) {
				t.Errorf("printed config %q lacks %q", got, want)
			}
		}
	}
}

func fmtV(c vaultstore.Config) string  { return fmt.Sprintf("%+v", c) }
func fmtGo(c vaultstore.Config) string { return fmt.Sprintf("%#v", c) }
