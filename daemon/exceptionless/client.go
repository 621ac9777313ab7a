package exceptionless

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	// maxResponseBytes caps every response body read into memory.
	maxResponseBytes = 1 << 20
	// pageLimit is the page size used when listing; the server's maximum
	// for tokens is 100.
	pageLimit = 100
	// maxPages stops a listing against a server that never says "done".
	maxPages = 1000
)

// Client calls the Exceptionless API. It is safe for concurrent use.
type Client struct {
	base *url.URL
	hc   *http.Client
}

// New returns a client for the server at baseURL (for example
// "https://api.exceptionless.io"), which must be an absolute http or https
// URL without credentials, query or fragment. A nil hc gets a client with
// bounded dial, TLS, header and overall timeouts. The client never follows
// redirects: the API does not send them, and following one could carry the
// bearer token somewhere else.
func New(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		// url.Parse repeats its input, which might hold credentials.
		return nil, errors.New("exceptionless: base URL does not parse")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("exceptionless: base URL scheme must be http or https")
	case u.Host == "":
		return nil, errors.New("exceptionless: base URL has no host")
	case u.User != nil:
		return nil, errors.New("exceptionless: base URL must not carry credentials")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, errors.New("exceptionless: base URL must not have a query or fragment")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	if hc == nil {
		hc = defaultHTTPClient()
	}
	c := *hc // a copy, so the caller's client keeps its redirect policy
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{base: u, hc: &c}, nil
}

func defaultHTTPClient() *http.Client {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: t, Timeout: 60 * time.Second}
}

// request is one API call. It holds secrets only for the duration of the
// call; errors built from it keep nothing but scrubbed text.
type request struct {
	method string
	path   string // under the base URL; ids in it are validated
	query  url.Values
	tok    Token
	body   []byte // JSON; nil for no body
	ctype  string // body content type; JSON if empty
	scrub  scrubber
}

// reply is a fully read response.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (c *Client) do(ctx context.Context, r *request) (reply, error) {
	if !r.tok.IsZero() {
		r.scrub.secrets = append(r.scrub.secrets, r.tok.Reveal())
	}
	u := *c.base
	u.Path = c.base.Path + r.path
	u.RawQuery = r.query.Encode()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return reply{}, r.transportErr(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "exless")
	if r.body != nil {
		ct := r.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if !r.tok.IsZero() {
		req.Header.Set("Authorization", "Bearer "+r.tok.Reveal())
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, r.transportErr(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return reply{}, r.transportErr(fmt.Errorf("read response: %w", err))
	}
	if len(b) > maxResponseBytes {
		return reply{}, r.errorf("response body exceeds %d bytes", maxResponseBytes)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// transportErr wraps a failure that produced no answer. The *url.Error layer
// is dropped because its text and URL field hold the full URL.
func (r *request) transportErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := fmt.Sprintf("exceptionless: %s %s: %s", r.method, redactPath(r.path), r.scrub.scrub(err.Error()))
	return &transportError{msg: msg, err: err}
}

// errorf makes an error about an answer the client cannot use.
func (r *request) errorf(format string, args ...any) error {
	return fmt.Errorf("exceptionless: %s %s: %s", r.method, redactPath(r.path), r.scrub.scrub(fmt.Sprintf(format, args...)))
}

// expect returns nil if rep has one of the wanted statuses, else the
// *APIError describing it.
func (r *request) expect(rep reply, want ...int) error {
	if slices.Contains(want, rep.status) {
		return nil
	}
	return r.apiError(rep)
}

func (r *request) apiError(rep reply) *APIError {
	e := &APIError{Status: rep.status, Method: r.method, Path: redactPath(r.path)}
	if isJSON(rep.header) {
		var p struct {
			Title  string                     `json:"title"`
			Errors map[string]json.RawMessage `json:"errors"`
		}
		if json.Unmarshal(rep.body, &p) == nil {
			e.Title = r.scrub.scrub(cleanTitle(p.Title))
			for k := range p.Errors {
				if f := cleanField(k); f != "" {
					e.Fields = append(e.Fields, f)
				}
			}
			sort.Strings(e.Fields)
		}
	}
	if e.Title == "" {
		e.Title = statusText(rep.status)
	}
	return e
}

// decode unmarshals a JSON answer into v.
func (r *request) decode(rep reply, v any) error {
	if err := json.Unmarshal(rep.body, v); err != nil {
		return r.errorf("decode response: %v", err)
	}
	return nil
}

func isJSON(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// getAll fetches every page of a paged list. It builds each page URL itself
// rather than following Link headers, which echo access_token and could
// point anywhere. The server stops sending rel="next" at 1000 items even
// when more exist, so X-Result-Count decides when it is present.
func getAll[T any](ctx context.Context, c *Client, tok Token, path string) ([]T, error) {
	all := []T{}
	for page := 1; page <= maxPages; page++ {
		r := &request{method: http.MethodGet, path: path, tok: tok, query: url.Values{
			"page":  {strconv.Itoa(page)},
			"limit": {strconv.Itoa(pageLimit)},
		}}
		rep, err := c.do(ctx, r)
		if err != nil {
			return nil, err
		}
		if err := r.expect(rep, http.StatusOK); err != nil {
			return nil, err
		}
		var items []T
		if err := r.decode(rep, &items); err != nil {
			return nil, err
		}
		all = append(all, items...)
		if len(items) == 0 {
			return all, nil
		}
		if total, err := strconv.Atoi(rep.header.Get("X-Result-Count")); err == nil {
			if len(all) >= total {
				return all, nil
			}
		} else if !hasNextLink(rep.header) {
			return all, nil
		}
	}
	return nil, fmt.Errorf("exceptionless: GET %s: more than %d pages", redactPath(path), maxPages)
}

// hasNextLink reports whether a Link header value carries rel="next". The
// server sends one value per link, but proxies may join them with commas.
func hasNextLink(h http.Header) bool {
	for _, v := range h.Values("Link") {
		for part := range strings.SplitSeq(v, ",") {
			for param := range strings.SplitSeq(part, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(param), "=")
				if ok && strings.EqualFold(k, "rel") && strings.Trim(val, `"`) == "next" {
					return true
				}
			}
		}
	}
	return false
}

// validID reports whether s is safe to put in a path segment: 1–64 ASCII
// letters and digits, plus '-' when dash is set (the token route allows it).
func validID(s string, dash bool) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && !(dash && s[i] == '-') {
			return false
		}
	}
	return true
}
