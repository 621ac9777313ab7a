package vaultstore

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// failover is the HTTP transport of a Store, with one Vault address or
// several.
// It sits under the api client, so every request the client makes (KV reads
// and writes, token lookups, the LifetimeWatcher's renewals, AppRole logins,
// the api's own retries and redirects) fails over alike: a request aimed at
// a configured address goes to the node that answered last, and on to the
// next when a node cannot be reached or answers that it cannot serve
// (sealed, standby without an active node, a proxy's 502/504).
//
// Replaying a write on another node is safe because every record write is a
// check-and-set: a write that landed on a node that then died makes the
// replay fail with a conflict, never a second write.
type failover struct {
	next    http.RoundTripper
	targets []*url.URL // scheme, host and path prefix of each address
	good    atomic.Int32
	// last is the latest round in which no node answered, nil once one
	// did: when the api's retries then run out of time, the error says
	// why rather than only "context deadline exceeded".
	last atomic.Pointer[noNodeError]
}

func newFailover(next http.RoundTripper, addrs []string) (*failover, error) {
	f := &failover{next: next}
	for _, a := range addrs {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			// The parse error would repeat the address, which may carry a
			// password in its user part: name the position only.
			return nil, fmt.Errorf("vault address %q: want http(s)://host[:port][/prefix]", redactURL(a))
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		f.targets = append(f.targets, u)
	}
	return f, nil
}

// redactURL drops a user part, should an address carry one.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	if i := strings.Index(s, "@"); i >= 0 {
		return "…" + s[i:]
	}
	return s
}

// active returns the address that answered last.
func (f *failover) active() string { return f.targets[f.good.Load()].String() }

// match returns the index of the address req is aimed at.
func (f *failover) match(u *url.URL) (int, bool) {
	for i, t := range f.targets {
		if u.Scheme == t.Scheme && u.Host == t.Host && (t.Path == "" || u.Path == t.Path || strings.HasPrefix(u.Path, t.Path+"/")) {
			return i, true
		}
	}
	return 0, false
}

// failoverStatus reports whether a response says "ask another node": 503 is
// a sealed node, or a standby that knows no active node (during a leader
// election); 502 and 504 come from a proxy in front of a dead node. Every
// other answer is Vault's own and final, 429 (rate limit quotas are
// cluster-wide) included.
func failoverStatus(code int) bool {
	return code == http.StatusServiceUnavailable || code == http.StatusBadGateway || code == http.StatusGatewayTimeout
}

// maxBody bounds what a request body may be to be replayable; records and
// logins are a few hundred bytes.
const maxBody = 1 << 20

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	first, ok := f.match(req.URL)
	if !ok {
		// Not one of ours (a redirect to a node outside the list): as is.
		return f.next.RoundTrip(req)
	}
	from := f.targets[first]
	if first == 0 {
		// The api client aims every request at the first address; start
		// where the last answer came from. A redirect names its node.
		first = int(f.good.Load())
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		if len(b) > maxBody {
			return nil, errors.New("request body too large to replay on another vault node")
		}
		body = b
	}

	var (
		errs  []error
		kept  *http.Response // the last "ask another node" answer
		tried = make([]bool, len(f.targets))
		queue []int // nodes to try, in order
	)
	for n := range f.targets {
		queue = append(queue, (first+n)%len(f.targets))
	}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		if tried[i] {
			continue
		}
		tried[i] = true
		r := req.Clone(req.Context())
		r.URL = retarget(req.URL, from, f.targets[i])
		r.Host = ""
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			r.ContentLength = int64(len(body))
		}
		resp, err := f.next.RoundTrip(r)
		if ctxErr := req.Context().Err(); ctxErr != nil {
			if err == nil {
				return resp, nil
			}
			return nil, err
		}
		if err != nil {
			errs = append(errs, &nodeError{addr: f.targets[i].String(), err: err})
			continue
		}
		switch {
		case isRedirect(resp.StatusCode):
			// A standby that cannot forward points at the active node.
			// If that is one of ours, ask it ourselves (next, and only
			// once): when it is the node that just died, the other nodes
			// get their turn instead of the api following the redirect
			// into a refused connection.
			loc, lerr := resp.Location()
			j, ours := 0, false
			if lerr == nil {
				j, ours = f.match(loc)
			}
			if !ours {
				f.last.Store(nil)
				return resp, nil // a node outside the list: the api follows it
			}
			drain(resp)
			errs = append(errs, &nodeError{addr: f.targets[i].String(), err: fmt.Errorf("standby, redirects to %s", f.targets[j])})
			queue = append([]int{j}, queue...)
			continue
		case failoverStatus(resp.StatusCode):
		case resp.StatusCode == http.StatusInternalServerError:
			// During an election a standby answers 500 "local node not
			// active but active cluster node not found"; any other 500
			// is Vault's answer to the request.
			b := keep(resp)
			if !bytes.Contains(b, []byte("active cluster node not found")) {
				f.answered(i)
				return resp, nil
			}
		default:
			f.answered(i)
			return resp, nil
		}
		// Keep the answer (small: a JSON error) to return should no node
		// do better; reading it frees the connection.
		errs = append(errs, &nodeError{addr: f.targets[i].String(), err: statusError(resp.StatusCode, keep(resp))})
		kept = resp
	}
	e := &noNodeError{errs: errs}
	f.last.Store(e)
	if kept != nil {
		return kept, nil
	}
	// The transport's own error where it is the only one, or where every
	// node failed certificate verification: the retrying client above
	// looks at its type to give up at once on a TLS verification failure.
	var cv *tls.CertificateVerificationError
	if len(errs) == 1 || (len(errs) > 0 && allAs(errs, &cv)) {
		return nil, errors.Unwrap(errs[0])
	}
	return nil, e
}

// allAs reports whether every error in errs is a *T.
func allAs[T error](errs []error, target *T) bool {
	for _, err := range errs {
		if !errors.As(err, target) {
			return false
		}
	}
	return true
}

// answered records that node i gave an answer of its own.
func (f *failover) answered(i int) {
	f.good.Store(int32(i))
	f.last.Store(nil)
}

// statusError describes a node's "ask another node" answer.
func statusError(code int, body []byte) error {
	var v struct{ Errors []string }
	if json.Unmarshal(body, &v) == nil && len(v.Errors) > 0 {
		return fmt.Errorf("responded %d: %s", code, strings.Join(v.Errors, "; "))
	}
	return fmt.Errorf("responded %d", code)
}

func isRedirect(code int) bool {
	return code == http.StatusTemporaryRedirect || code == http.StatusFound || code == http.StatusMovedPermanently
}

// keep reads resp's body (a small JSON error) into memory, so that the
// connection is free and the body can be read again, and returns it.
func keep(resp *http.Response) []byte {
	if c, ok := resp.Body.(keptBody); ok {
		return c.b
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = keptBody{bytes.NewReader(b), b}
	return b
}

type keptBody struct {
	*bytes.Reader
	b []byte
}

func (keptBody) Close() error { return nil }

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// retarget moves u from one address to another, keeping the request path
// below the address's own prefix.
func retarget(u, from, to *url.URL) *url.URL {
	v := *u
	v.Scheme, v.Host = to.Scheme, to.Host
	rest := strings.TrimPrefix(u.Path, from.Path)
	v.Path = to.Path + rest
	v.RawPath = ""
	return &v
}

// nodeError is one node's transport failure.
type nodeError struct {
	addr string
	err  error
}

func (e *nodeError) Error() string { return e.addr + ": " + e.err.Error() }
func (e *nodeError) Unwrap() error { return e.err }

// noNodeError says that no configured node answered. It unwraps to each
// node's error, so errors.Is finds a deadline or a refused connection.
type noNodeError struct{ errs []error }

func (e *noNodeError) Error() string {
	parts := make([]string, len(e.errs))
	for i, err := range e.errs {
		parts[i] = err.Error()
	}
	if len(parts) == 1 {
		return "vault did not answer: " + parts[0]
	}
	return "no vault node answered: " + strings.Join(parts, "; ")
}

func (e *noNodeError) Unwrap() []error { return e.errs }
