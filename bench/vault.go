package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	vault "github.com/hashicorp/vault/api"
)

// This file is the only one in bench/ that imports the Vault API client,
// for the direct-read baseline: what a script would do without exless.

// vaultReadPolicy is the policy of the token used for direct reads and for
// `vault kv get`: read-only, on the benchmark's records. A script would hold
// such a token, not a root token, and ACL checks are part of the read.
const vaultReadPolicy = "exless-bench-read"

// vaultReadToken creates a read-only token for mount/prefix/* with the root
// token and returns it.
func vaultReadToken(ctx context.Context, addr, root, mount, prefix string) (string, error) {
	c, err := newVaultClient(addr, root, 1)
	if err != nil {
		return "", err
	}
	rules := fmt.Sprintf("path %q {\n  capabilities = [\"read\"]\n}\n", mount+"/data/"+prefix+"/*")
	if err := c.Sys().PutPolicyWithContext(ctx, vaultReadPolicy, rules); err != nil {
		return "", fmt.Errorf("vault: write policy: %w", err)
	}
	sec, err := c.Auth().Token().CreateWithContext(ctx, &vault.TokenCreateRequest{
		Policies: []string{vaultReadPolicy}, NoParent: true, TTL: "24h", DisplayName: "exless-bench",
	})
	if err != nil {
		return "", fmt.Errorf("vault: create read token: %w", err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return "", errors.New("vault: create read token: no token in the reply")
	}
	return sec.Auth.ClientToken, nil
}

// newVaultClient returns a Vault API client for addr with token, keeping up
// to conc idle connections so that conc workers each reuse one (the default
// pool keeps GOMAXPROCS+1 and would redial under load).
func newVaultClient(addr, token string, conc int) (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault client config: %w", cfg.Error)
	}
	cfg.Address = addr
	if tr, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		tr.MaxIdleConns = max(conc, tr.MaxIdleConns)
		tr.MaxIdleConnsPerHost = max(conc, tr.MaxIdleConnsPerHost)
		tr.Proxy = nil
	}
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.SetToken(token)
	return c, nil
}

// VaultKVRead returns a Request that reads mount/path as a KV v2 secret with
// the Vault API client, and checks it carries a token.
func VaultKVRead(addr, token, mount, path string, conc int) (Request, error) {
	c, err := newVaultClient(addr, token, conc)
	if err != nil {
		return nil, err
	}
	kv := c.KVv2(mount)
	return func(ctx context.Context) error {
		sec, err := kv.Get(ctx, path)
		if err != nil {
			// Vault's errors name the path and status, never the token.
			return err
		}
		if s, _ := sec.Data["token"].(string); s == "" {
			return errEmptyToken
		}
		return nil
	}, nil
}
