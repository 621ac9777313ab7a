package exceptionlesstest

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/exless/exless/internal/testrun"
)

// result is a response read in full.
type result struct {
	status int
	header http.Header
	body   []byte
}

// call sends one request. hdr is a list of key, value pairs; a body with no
// Content-Type in hdr is sent as application/json.
func call(t *testing.T, s *Server, method, path, body string, hdr ...string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

func basic(user, pass string) []string {
	return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

func loginBody(email, password string) string {
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	return string(b)
}

// login posts a login from ip (X-Forwarded-For) and returns the result.
func login(t *testing.T, s *Server, email, password, ip string) result {
	t.Helper()
	return call(t, s, "POST", "/api/v2/auth/login", loginBody(email, password), "X-Forwarded-For", ip)
}

// mustLogin logs the seeded account in and returns the token.
func mustLogin(t *testing.T, s *Server) string {
	t.Helper()
	r := login(t, s, s.Account.Email, s.Account.Password, "192.0.2.1")
	if r.status != 200 {
		t.Fatalf("login: status %d %s", r.status, r.body)
	}
	var out struct{ Token string }
	r.decode(t, &out)
	if len(out.Token) != 40 {
		t.Fatalf("login token has %d characters, want 40", len(out.Token))
	}
	return out.Token
}

func (r result) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

type problemBody struct {
	Type     string              `json:"type"`
	Title    string              `json:"title"`
	Status   int                 `json:"status"`
	Instance string              `json:"instance"`
	TraceID  string              `json:"traceId"`
	Errors   map[string][]string `json:"errors"`
}

// wantProblem checks a problem+json answer's status and, if not empty, title.
func (r result) wantProblem(t *testing.T, status int, title string) problemBody {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p problemBody
	r.decode(t, &p)
	if p.Status != status || p.Type == "" || p.TraceID == "" || p.Instance == "" {
		t.Fatalf("incomplete problem %s", r.body)
	}
	if title != "" && p.Title != title {
		t.Fatalf("title %q, want %q", p.Title, title)
	}
	return p
}

func (r result) wantStatus(t *testing.T, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (body %s)", r.status, status, r.body)
	}
}

// newClockServer starts a server on a settable clock at 10:00 UTC.
func newClockServer(t *testing.T, cfg Config) (*Server, *Clock) {
	t.Helper()
	clk := NewClock(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	cfg.Now = clk.Now
	s := NewServer(cfg)
	t.Cleanup(s.Close)
	return s, clk
}

// createToken makes a project token with the login token and returns its id.
func createToken(t *testing.T, s *Server, loginTok, projectID, body string) string {
	t.Helper()
	r := call(t, s, "POST", "/api/v2/projects/"+projectID+"/tokens", body, bearer(loginTok)...)
	r.wantStatus(t, 201)
	var v struct{ ID string }
	r.decode(t, &v)
	return v.ID
}

// TestSecretsRegistered: the seeded password, added users' passwords and
// every token issued are listed in the run directory for the end-of-run
// scan.
func TestSecretsRegistered(t *testing.T) {
	t.Setenv(testrun.EnvDir, t.TempDir())
	s := NewServer(Config{})
	defer s.Close()
	s.AddUser(NewUser{Email: "dev@example.test", Password: "dev-password-1"})
	s.SetPassword("dev@example.test", "dev-password-2")
	r := call(t, s, http.MethodPost, "/api/v2/auth/login", loginBody(s.Account.Email, s.Account.Password))
	var login struct{ Token string }
	if err := json.Unmarshal(r.body, &login); err != nil || login.Token == "" {
		t.Fatalf("login: %d %v", r.status, err)
	}
	access := s.AddAccessToken(NewAccessToken{ProjectID: s.Account.Projects[0].ID})
	got, err := testrun.Registered(testrun.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string]string{"seeded password": s.Account.Password, "added password": "dev-password-1",
		"set password": "dev-password-2", "login token": login.Token, "access token": access} {
		if !got[secret] {
			t.Errorf("the %s is not registered", name)
		}
	}
}
