// Package vaultstore keeps exless token records in HashiCorp Vault's KV
// version 2 secrets engine. It is the only package that imports
// github.com/hashicorp/vault/api.
//
// It owns the Vault side of daemon.TokenStore: the client (address, TLS and
// proxies from the usual VAULT_* environment), the Vault token it
// authenticates with, the layout of a record as KV data under
// <mount>/data/<path>/<key>, and the translation of Vault's answers into
// daemon.ErrNotFound and daemon.ErrConflict.
//
// Every write is a check-and-set against the version last read, so several
// daemons on several hosts can share one path. Errors name the key and the
// operation, never a token: neither the record's nor Vault's.
package vaultstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/exless/exless/daemon"
)

// Defaults for Config fields left empty.
const (
	DefaultMount = "secret"
	DefaultPath  = "exless"
)

// Config says where the records live and how to authenticate.
type Config struct {
	// Address of the Vault server, e.g. "https://vault.example:8200".
	// Empty: VAULT_ADDR, else the api default https://127.0.0.1:8200.
	Address string
	// Token is a Vault token given inline. Prefer TokenFile. It never
	// appears in printed or JSON forms of the Config.
	Token string `json:"-"`
	// TokenFile holds the Vault token, e.g. a Vault Agent sink or a systemd
	// credential. Used when Token is empty; VAULT_TOKEN comes last.
	TokenFile string
	// Mount is the KV v2 mount; default "secret".
	Mount string
	// Path is the prefix of the records under the mount; default "exless".
	Path string
	// Timeout bounds each Vault request. Zero keeps the api default
	// (VAULT_CLIENT_TIMEOUT, else 60 s).
	Timeout time.Duration
}

// GoString shows whether Token is set, never its value.
func (c Config) GoString() string {
	return fmt.Sprintf("vaultstore.Config{Address:%q, Token:%t, TokenFile:%q, Mount:%q, Path:%q, Timeout:%s}",
		c.Address, c.Token != "", c.TokenFile, c.Mount, c.Path, c.Timeout)
}

// Format prints the GoString form for every verb: the default struct
// formatting (%v, %+v, %d, …) would print the token.
func (c Config) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.GoString()) }

// Store reads and writes records in Vault. It is safe for concurrent use.
type Store struct {
	client *vault.Client
	kv     *vault.KVv2
	mount  string
	path   string
}

// New builds a Store from cfg. It does not contact Vault (the daemon starts,
// degraded, while Vault is down); call Ping to check reachability and the
// token.
func New(ctx context.Context, cfg Config) (*Store, error) {
	_ = ctx // reserved for auth methods that log in (AppRole)
	mount := strings.Trim(cfg.Mount, "/")
	if mount == "" {
		mount = DefaultMount
	}
	path := strings.Trim(cfg.Path, "/")
	if path == "" {
		path = DefaultPath
	}
	if err := checkPath(mount); err != nil {
		return nil, fmt.Errorf("vault mount %q: %w", cfg.Mount, err)
	}
	if err := checkPath(path); err != nil {
		return nil, fmt.Errorf("vault path %q: %w", cfg.Path, err)
	}

	token, err := resolveToken(cfg)
	if err != nil {
		return nil, err
	}

	// DefaultConfig reads VAULT_ADDR, VAULT_CACERT, VAULT_CLIENT_TIMEOUT,
	// … and keeps Go's proxy settings. Its retries (failed connections, 5xx)
	// are safe for writes because every write is a check-and-set: a write that
	// landed before a retry makes the retry fail with a conflict, not a double
	// write.
	vc := vault.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault client settings from VAULT_* environment: %w", vc.Error)
	}
	if cfg.Address != "" {
		vc.Address = cfg.Address
	}
	if cfg.Timeout > 0 {
		vc.Timeout = cfg.Timeout
	}
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", scrub(err.Error(), token))
	}
	client.SetToken(token)
	return &Store{client: client, kv: client.KVv2(mount), mount: mount, path: path}, nil
}

// resolveToken picks the Vault token: Config.Token, then TokenFile, then
// VAULT_TOKEN.
func resolveToken(cfg Config) (string, error) {
	if t := strings.TrimSpace(cfg.Token); t != "" {
		return t, nil
	}
	if cfg.TokenFile != "" {
		f, err := os.Open(cfg.TokenFile)
		if err != nil {
			return "", fmt.Errorf("read vault token file: %w", err)
		}
		defer f.Close()
		// A token is short; the limit keeps a wrong path (a log, a device)
		// from being read whole.
		b, err := io.ReadAll(io.LimitReader(f, 64<<10))
		if err != nil {
			return "", fmt.Errorf("read vault token file %s: %w", cfg.TokenFile, err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("vault token file %s is empty", cfg.TokenFile)
		}
		return t, nil
	}
	if t := strings.TrimSpace(os.Getenv(vault.EnvVaultToken)); t != "" {
		return t, nil
	}
	return "", errors.New("no vault token: set vault.token_file or VAULT_TOKEN")
}

// Load returns the record under key and its KV version. With no record it
// returns daemon.ErrNotFound and the version the next Save must name: 0 if
// the key never existed, the deleted version if the latest was deleted.
// Vault answers a missing mount like a missing key; Ping tells them apart.
func (s *Store) Load(ctx context.Context, key string) (daemon.Record, int, error) {
	if err := checkPath(key); err != nil {
		return daemon.Record{}, 0, fmt.Errorf("read vault record %q: bad key: %w", key, err)
	}
	sec, err := s.kv.Get(ctx, s.path+"/"+key)
	if errors.Is(err, vault.ErrSecretNotFound) {
		return daemon.Record{}, 0, fmt.Errorf("read vault record %q: %w", key, daemon.ErrNotFound)
	}
	if err != nil {
		return daemon.Record{}, 0, fmt.Errorf("read vault record %q: %w", key, s.vaultErr(err))
	}
	if sec.VersionMetadata == nil || sec.VersionMetadata.Version <= 0 {
		return daemon.Record{}, 0, fmt.Errorf("read vault record %q: no version metadata: is mount %q KV version 2?", key, s.mount)
	}
	version := sec.VersionMetadata.Version
	if sec.Data == nil {
		// KV v2 answers a deleted or destroyed latest version with its
		// metadata and nil data, not an error. The version is kept: a
		// check-and-set against 0 would now fail.
		return daemon.Record{}, version, fmt.Errorf("read vault record %q: version %d deleted: %w", key, version, daemon.ErrNotFound)
	}
	rec, err := decodeRecord(key, sec.Data)
	if err != nil {
		// The version comes along so that an operator tool may deliberately
		// replace a broken record; the daemon must not.
		return daemon.Record{}, version, err
	}
	return rec, version, nil
}

// Save writes rec under key if the stored version is still version (0: only
// if no version exists, deleted or not) and returns the new version. A lost
// race returns daemon.ErrConflict.
func (s *Store) Save(ctx context.Context, key string, rec daemon.Record, version int) (int, error) {
	if err := checkPath(key); err != nil {
		return 0, fmt.Errorf("write vault record %q: bad key: %w", key, err)
	}
	if version < 0 {
		return 0, fmt.Errorf("write vault record %q: negative version %d", key, version)
	}
	data, err := encodeRecord(key, rec)
	if err != nil {
		return 0, err
	}
	sec, err := s.kv.Put(ctx, s.path+"/"+key, data, vault.WithCheckAndSet(version))
	if err != nil {
		if isCASMismatch(err) {
			return 0, fmt.Errorf("write vault record %q at version %d: %w", key, version, daemon.ErrConflict)
		}
		if errors.Is(err, vault.ErrSecretNotFound) {
			// The api reports a write that returned no body this way; KV v2
			// always returns the new version's metadata, KV v1 does not.
			return 0, fmt.Errorf("write vault record %q: vault returned no version: does mount %q exist, and is it KV version 2?", key, s.mount)
		}
		return 0, fmt.Errorf("write vault record %q: %w", key, s.vaultErr(err, rec.Token.Reveal()))
	}
	if sec.VersionMetadata == nil || sec.VersionMetadata.Version <= 0 {
		return 0, fmt.Errorf("write vault record %q: vault returned no version: is mount %q KV version 2?", key, s.mount)
	}
	return sec.VersionMetadata.Version, nil
}

// Ping checks that Vault answers, accepts the token (a token lookup-self,
// which the default policy allows) and that the mount is KV version 2. For
// status reporting, and worth calling before the first Load: a missing mount
// reads as an absent record (Vault's 404 is all the client sees).
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		return fmt.Errorf("check vault token: %w", s.vaultErr(err))
	}
	// The endpoint the Vault CLI uses to tell KV versions apart; any token
	// with a capability on the path may read it.
	sec, err := s.client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+s.mount+"/"+s.path)
	if err != nil {
		return fmt.Errorf("check vault mount %q: %w", s.mount, s.vaultErr(err))
	}
	if sec == nil || sec.Data == nil {
		return fmt.Errorf("check vault mount %q: no such mount", s.mount)
	}
	typ, _ := sec.Data["type"].(string)
	opts, _ := sec.Data["options"].(map[string]any)
	version, _ := opts["version"].(string)
	if typ != "kv" || version != "2" {
		return fmt.Errorf("check vault mount %q: it is %q version %q, want a KV version 2 mount", s.mount, typ, version)
	}
	return nil
}

// casMismatch is the text KV v2 answers a failed check-and-set with (HTTP
// 400), both for cas=0 on an existing key and for a stale version.
const casMismatch = "check-and-set parameter did not match the current version"

func isCASMismatch(err error) bool {
	var re *vault.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 400 {
		return false
	}
	for _, e := range re.Errors {
		if strings.Contains(e, casMismatch) {
			return true
		}
	}
	return false
}

// Error is a failed Vault request, reduced to a one-line message. The api's
// own errors are multi-line, repeat the full URL and, for a response that is
// not JSON (a proxy's error page), carry the whole body.
type Error struct {
	// StatusCode is Vault's HTTP status, 0 when no response arrived.
	StatusCode int
	msg        string
	err        error // transport cause; nil for Vault responses
}

func (e *Error) Error() string { return e.msg }

// Unwrap gives the transport cause (so that errors.Is finds
// context.DeadlineExceeded), never the api's response error with its body.
func (e *Error) Unwrap() error { return e.err }

// vaultErr turns an api error into an *Error, masking the store's Vault
// token and any extra secrets should Vault ever echo one back.
func (s *Store) vaultErr(err error, secrets ...string) error {
	secrets = append(secrets, s.client.Token())
	var re *vault.ResponseError
	if errors.As(err, &re) {
		var msg string
		if re.RawError {
			msg = fmt.Sprintf("vault responded %d (not a Vault JSON error; a proxy in the way?)", re.StatusCode)
		} else {
			msg = fmt.Sprintf("vault responded %d: %s", re.StatusCode, oneLine(strings.Join(re.Errors, "; ")))
		}
		switch re.StatusCode {
		case 403:
			msg += " (check the vault token and its policy)"
		case 404:
			msg += fmt.Sprintf(" (is %q a KV version 2 mount?)", s.mount)
		}
		return &Error{StatusCode: re.StatusCode, msg: scrub(msg, secrets...).Error()}
	}
	// No answer from Vault (refused, timed out, TLS): say where we looked.
	// Go's HTTP client already strips passwords from URLs in its errors.
	msg := fmt.Sprintf("%s (vault at %s)", oneLine(err.Error()), s.client.Address())
	var ue *url.Error
	if errors.As(err, &ue) {
		return &Error{msg: scrub(oneLine(ue.Error()), secrets...).Error(), err: ue.Err}
	}
	return &Error{msg: scrub(msg, secrets...).Error(), err: errors.Unwrap(err)}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const limit = 300
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}

// scrub returns msg as an error with every secret replaced.
func scrub(msg string, secrets ...string) error {
	for _, sec := range secrets {
		if sec != "" {
			msg = strings.ReplaceAll(msg, sec, "[REDACTED]")
		}
	}
	return errors.New(msg)
}

// checkPath accepts slash-separated names without empty, "." or ".."
// segments, so a key can never climb out of the configured path.
func checkPath(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			return errors.New("empty segment")
		case ".", "..":
			return fmt.Errorf("segment %q", seg)
		}
		if strings.ContainsAny(seg, "?#%\\") || strings.ContainsFunc(seg, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("segment %q has characters Vault paths do not take", seg)
		}
	}
	return nil
}
