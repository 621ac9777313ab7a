package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/exless/exless/daemon/policy"
	"github.com/exless/exless/vaultstore"
)

// validate is `exlessd config validate`: everything exlessd would check at
// start, without starting. It prints one line per check and returns an
// error when the config cannot be used. It never prints a secret.
func validate(ctx context.Context, w io.Writer, path, credDir string, online bool) error {
	lc, err := loadConfig(path)
	if err != nil {
		return err
	}
	if !lc.Configured {
		return fmt.Errorf("%s says %s = false: edit it for this site, then delete that line", path, configuredAttr)
	}
	fmt.Fprintf(w, "%s: syntax and values ok\n", path)
	_, warnings, err := policy.Compile(lc.Rules, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, warn := range warnings {
		fmt.Fprintf(w, "warning: policy: %s\n", warn)
	}
	fmt.Fprintf(w, "policy: %d rules compile\n", len(lc.Rules))
	if lc.SocketGroup != "" {
		if _, err := lookupGroup(lc.SocketGroup); err != nil {
			return fmt.Errorf("socket_group %q: %w", lc.SocketGroup, err)
		}
	}

	var problems []error
	for _, f := range []struct{ field, path string }{
		{"exceptionless.password_file", lc.Exceptionless.PasswordFile},
		{"vault.token_file", lc.Vault.TokenFile},
	} {
		if f.path == "" {
			continue
		}
		if name, ok := lc.Credentials[f.field]; ok && credDir == "" {
			// Outside the unit there is no credentials directory to look in.
			fmt.Fprintf(w, "%s: systemd credential %q, read from $CREDENTIALS_DIRECTORY when exlessd runs (see LoadCredential= in exlessd.service)\n", f.field, name)
			continue
		}
		if err := readableNonEmpty(f.path); err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", f.field, err))
			continue
		}
		fmt.Fprintf(w, "%s: %s is readable\n", f.field, f.path)
	}
	if k := lc.Exceptionless.PasswordVaultKey; k != "" {
		fmt.Fprintf(w, "exceptionless.password_vault_key: the password is read from vault key %q (under vault.path)\n", k)
	}
	if online {
		if err := checkVault(ctx, lc); err != nil {
			problems = append(problems, err)
		} else {
			fmt.Fprintf(w, "vault: reachable, token accepted, %s is a KV v2 mount\n", lc.Vault.Mount)
		}
	}
	return errors.Join(problems...)
}

// readableNonEmpty opens path and reads one byte; the content is never
// printed or kept.
func readableNonEmpty(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	if n, _ := f.Read(b[:]); n == 0 {
		return fmt.Errorf("%s is empty", path)
	}
	return nil
}

func checkVault(ctx context.Context, lc loadedConfig) error {
	store, err := vaultstore.New(ctx, vaultConfig(lc.Vault))
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := store.Ping(ctx); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	return nil
}
