package exceptionlesstest

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// Config configures a test server. The zero value is a Development-mode
// server (no API rate limit) of the current version, on the real clock,
// with the default account seeded.
type Config struct {
	// Now is the server's clock; nil means time.Now. Login throttle windows
	// end at the clock's UTC quarter hours, so a test can cross one by
	// moving the clock (see Clock).
	Now func() time.Time
	// Legacy makes every login 401 carry the one generic title
	// ("Unauthorized") that servers up to v8.6.2 send, instead of
	// "Login failed." and "Login denied.".
	Legacy bool
	// RateLimit turns on the API throttle with this many requests per
	// 15-minute window and bucket, as in Production (3500 there). Zero
	// leaves it off, as in Development. See Handler.SetRateLimit.
	RateLimit int
	// Email and Password set the seeded account's credentials. An empty
	// Email means DefaultEmail; an empty Password means a random one.
	Email    string
	Password string
	// NoSeed starts with no users, organizations or projects.
	NoSeed bool
}

// DefaultEmail is the seeded account's email unless Config.Email is set.
const DefaultEmail = "ops@example.test"

// Account describes the seeded account: one user in one organization
// ("Acme") with two projects ("web" and "api"), in that order.
type Account struct {
	UserID           string
	Email            string
	Password         string
	FullName         string
	OrganizationID   string
	OrganizationName string
	Projects         []Project
}

// Project names a seeded project.
type Project struct {
	ID   string
	Name string
}

// Server is a Handler listening on a local port, like httptest.Server.
type Server struct {
	*Handler
	// URL is the base URL, "http://127.0.0.1:port", with no trailing slash.
	URL string
	hs  *httptest.Server
}

// NewServer starts a server. The caller must Close it.
func NewServer(cfg Config) *Server {
	h := NewHandler(cfg)
	hs := httptest.NewServer(h)
	return &Server{Handler: h, URL: hs.URL, hs: hs}
}

// Close shuts the server down, closing open connections.
func (s *Server) Close() { s.hs.Close() }

// Client returns an HTTP client configured for the server.
func (s *Server) Client() *http.Client { return s.hs.Client() }

// Clock is a settable clock for Config.Now. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock that stands at t until moved.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Call is one request as the server saw it. Token ids and query credentials
// are replaced by [REDACTED], so calls can be printed in test failures.
type Call struct {
	Method string
	Path   string // the path, token ids redacted
	Query  string // the raw query, credential values redacted
	Status int    // the status the server answered
	// Auth names the credential form presented: "bearer", "token",
	// "basic", "query" or "" for none.
	Auth string
}
