package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/exless/exless/daemon/policy"
)

// DefaultSocket is where exlessd listens unless configured otherwise.
const DefaultSocket = "/run/exless/exlessd.sock"

// Client talks to exlessd over its Unix socket. exlessctl is built on it.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:      1,
		DisableKeepAlives: true,
	}
	return &Client{Socket: socket, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// AccessDeniedError is a refusal: by the daemon's policy (HTTP 403), or by
// the kernel because the socket's permissions keep the caller out.
type AccessDeniedError struct {
	Message string
	Socket  bool // refused by the socket's file permissions, not the policy
}

func (e *AccessDeniedError) Error() string { return e.Message }

// UnreachableError means the daemon could not be reached at all.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot connect to exlessd at %s (is exlessd.service running? check `systemctl status exlessd` or pass --socket): %v", e.Socket, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// APIError is any other error reply from the daemon.
type APIError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration // from Retry-After on a 429
}

func (e *APIError) Error() string { return e.Message }

// Unavailable reports whether the daemon cannot serve because Exceptionless
// or Vault is unavailable.
func (e *APIError) Unavailable() bool { return e.Status == http.StatusServiceUnavailable }

// Token asks for a token of the given scope (and project, for ScopeClient).
func (c *Client) Token(ctx context.Context, scope, project string) (TokenResponse, error) {
	q := url.Values{"scope": {scope}}
	if project != "" {
		q.Set("project", project)
	}
	var out TokenResponse
	err := c.get(ctx, "/v1/token?"+q.Encode(), &out)
	return out, err
}

// WhoAmI reports what the daemon sees of this process and what it may do.
func (c *Client) WhoAmI(ctx context.Context) (WhoAmI, error) {
	var out WhoAmI
	err := c.get(ctx, "/v1/whoami", &out)
	return out, err
}

// Status reports the daemon's state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	err := c.get(ctx, "/v1/status", &out)
	return out, err
}

// Rotate asks the daemon to rotate a project's client token. grace < 0 uses
// the daemon's default; 0 revokes the old token at once.
func (c *Client) Rotate(ctx context.Context, project string, grace time.Duration) (RotateResponse, error) {
	q := url.Values{"scope": {ScopeClient}, "project": {project}}
	if grace >= 0 {
		q.Set("grace", grace.String())
	}
	var out RotateResponse
	err := c.do(ctx, http.MethodPost, "/v1/rotate?"+q.Encode(), &out)
	return out, err
}

// RotatePassword asks the daemon to change the Exceptionless account
// password (kept in Vault), which also replaces the user token.
func (c *Client) RotatePassword(ctx context.Context) (PasswordRotateResponse, error) {
	var out PasswordRotateResponse
	err := c.do(ctx, http.MethodPost, "/v1/rotate?scope=user&password=true", &out)
	return out, err
}

// Reload asks the daemon to re-read its configuration. A rejected
// configuration comes back as an *APIError with status 400 naming the
// problem; the old configuration then stays in force.
func (c *Client) Reload(ctx context.Context) error {
	var out map[string]string
	return c.do(ctx, http.MethodPost, "/v1/reload", &out)
}

// Explain asks the daemon how its policy judges an identity and request
// given as query values (see ParseExplainIdentity; plus action, scope,
// project).
func (c *Client) Explain(ctx context.Context, q url.Values) (policy.Explanation, error) {
	var out policy.Explanation
	err := c.get(ctx, "/v1/policy/explain?"+q.Encode(), &out)
	return out, err
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, out)
}

// maxRetryAfter caps how long the client waits on a 429 before its one retry.
const maxRetryAfter = 10 * time.Second

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	err := c.once(ctx, method, path, out)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusTooManyRequests && apiErr.RetryAfter > 0 && apiErr.RetryAfter <= maxRetryAfter {
		// Honour Retry-After once: a burst of scripts gets through, a
		// loop does not hammer the daemon.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(apiErr.RetryAfter):
		}
		err = c.once(ctx, method, path, out)
	}
	return err
}

func (c *Client) once(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://exlessd"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			return &AccessDeniedError{Socket: true, Message: fmt.Sprintf(
				"permission denied on %s: this user may not connect; add it to the socket's group (see socket_group in exlessd.hcl) and log in again", c.Socket)}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &UnreachableError{Socket: c.Socket, Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	// Status lists every held token; 10,000 of them take over 1 MB.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("read reply from exlessd: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("decode reply from exlessd: %w", err)
		}
		return nil
	}
	var e ErrorResponse
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		e = ErrorResponse{Error: fmt.Sprintf("exlessd answered %s", resp.Status), Code: CodeInternal}
	}
	if resp.StatusCode == http.StatusForbidden {
		return &AccessDeniedError{Message: e.Error}
	}
	apiErr := &APIError{Status: resp.StatusCode, Code: e.Code, Message: e.Error}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		apiErr.RetryAfter = time.Duration(secs) * time.Second
	}
	return apiErr
}

// unwrapURLError drops the *url.Error layer, whose text repeats the
// pseudo-URL and adds nothing for a Unix socket.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
