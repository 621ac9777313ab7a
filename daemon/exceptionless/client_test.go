package exceptionless_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
)

var start = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// setup starts a test server on a settable clock and a client for it.
func setup(t *testing.T, cfg exceptionlesstest.Config) (*exceptionlesstest.Server, *exceptionlesstest.Clock, *exceptionless.Client) {
	t.Helper()
	clk := exceptionlesstest.NewClock(start)
	cfg.Now = clk.Now
	s := exceptionlesstest.NewServer(cfg)
	t.Cleanup(s.Close)
	c, err := exceptionless.New(s.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, clk, c
}

func login(t *testing.T, s *exceptionlesstest.Server, c *exceptionless.Client) exceptionless.Token {
	t.Helper()
	tok, err := c.Login(context.Background(), s.Account.Email, []byte(s.Account.Password))
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	return tok
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://api.exceptionless.io", true},
		{"http://127.0.0.1:8080/", true},
		{"https://example.test/prefix", true},
		{"ftp://example.test", false},
		{"example.test", false},
		{"https://", false},
		{"https://user:s3cretpass@example.test", false},
		{"https://example.test/?access_token=s3cretpass", false},
		{"https://example.test/#frag", false},
		{"://s3cretpass", false},
	} {
		_, err := exceptionless.New(tc.url, nil)
		if (err == nil) != tc.ok {
			t.Errorf("New(%q) error = %v, want ok=%v", tc.url, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), "s3cretpass") {
			t.Errorf("New(%q) error %q repeats the URL's secret", tc.url, err)
		}
	}
}

func TestBaseURLPrefix(t *testing.T) {
	s, _, _ := setup(t, exceptionlesstest.Config{})
	mux := http.NewServeMux()
	mux.Handle("/exceptionless/", http.StripPrefix("/exceptionless", s.Handler))
	hs := httptest.NewServer(mux)
	defer hs.Close()
	c, err := exceptionless.New(hs.URL+"/exceptionless/", nil)
	if err != nil {
		t.Fatal(err)
	}
	login(t, s, c)
}

func TestLogin(t *testing.T) {
	s, _, c := setup(t, exceptionlesstest.Config{})
	ctx := context.Background()
	tok := login(t, s, c)
	info, _ := s.LoginToken(s.Account.Email)
	if tok.Reveal() != info.ID {
		t.Fatal("Login did not return the server's login token")
	}
	if again := login(t, s, c); again != tok {
		t.Fatal("second Login returned another token")
	}

	_, err := c.Login(ctx, s.Account.Email, []byte("wrong-password"))
	var ae *exceptionless.APIError
	if !errors.Is(err, exceptionless.ErrLoginFailed) || !errors.Is(err, exceptionless.ErrUnauthorized) ||
		errors.Is(err, exceptionless.ErrLoginDenied) || !errors.As(err, &ae) || ae.Title != "Login failed." {
		t.Fatalf("wrong password: %v", err)
	}
	for i := 0; i < 4; i++ {
		_, _ = c.Login(ctx, s.Account.Email, []byte("wrong-password"))
	}
	_, err = c.Login(ctx, s.Account.Email, []byte(s.Account.Password))
	if !errors.Is(err, exceptionless.ErrLoginDenied) || errors.Is(err, exceptionless.ErrLoginFailed) {
		t.Fatalf("6th attempt: %v, want ErrLoginDenied", err)
	}
	if !strings.Contains(err.Error(), "401 Login denied.") {
		t.Fatalf("error text %q", err)
	}
}

func TestLoginLegacy(t *testing.T) {
	s, _, c := setup(t, exceptionlesstest.Config{Legacy: true})
	_, err := c.Login(context.Background(), s.Account.Email, []byte("wrong-password"))
	if !errors.Is(err, exceptionless.ErrLoginRejected) || !errors.Is(err, exceptionless.ErrUnauthorized) {
		t.Fatalf("legacy 401: %v, want ErrLoginRejected", err)
	}
}

func TestLoginValidation(t *testing.T) {
	s, _, c := setup(t, exceptionlesstest.Config{})
	_, err := c.Login(context.Background(), "", []byte("abc"))
	var ae *exceptionless.APIError
	if !errors.As(err, &ae) || ae.Status != 422 || !slices.Equal(ae.Fields, []string{"email", "password"}) {
		t.Fatalf("422: %#v", err)
	}
	if strings.Contains(err.Error(), "abc") {
		t.Fatalf("error %q holds the password", err)
	}
	if s.LoginAttempts() != 0 {
		t.Fatal("a 422 counted as a login attempt")
	}
}

func TestLoginEncodesAnyPassword(t *testing.T) {
	pw := "p\"a\\s\ns\x01w😀rd"
	s, _, c := setup(t, exceptionlesstest.Config{Password: pw})
	tok, err := c.Login(context.Background(), s.Account.Email, []byte(pw))
	if err != nil || tok.IsZero() {
		t.Fatalf("Login with special characters: %v", err)
	}
}

func TestMeOrganizationsProjects(t *testing.T) {
	s, _, c := setup(t, exceptionlesstest.Config{})
	ctx := context.Background()
	tok := login(t, s, c)

	u, err := c.Me(ctx, tok)
	if err != nil || u.ID != s.Account.UserID || u.EmailAddress != s.Account.Email ||
		!slices.Equal(u.OrganizationIDs, []string{s.Account.OrganizationID}) || !slices.Contains(u.Roles, "user") {
		t.Fatalf("Me = %+v, %v", u, err)
	}
	orgs, err := c.Organizations(ctx, tok)
	if err != nil || len(orgs) != 1 || orgs[0].Name != "Acme" {
		t.Fatalf("Organizations = %+v, %v", orgs, err)
	}
	ps, err := c.Projects(ctx, tok)
	want := []exceptionless.Project{
		{ID: s.Account.Projects[0].ID, Name: "web", OrganizationID: s.Account.OrganizationID, OrganizationName: "Acme"},
		{ID: s.Account.Projects[1].ID, Name: "api", OrganizationID: s.Account.OrganizationID, OrganizationName: "Acme"},
	}
	if err != nil || !slices.Equal(ps, want) {
		t.Fatalf("Projects = %+v, %v", ps, err)
	}

	s.DeleteToken(tok.Reveal())
	if _, err := c.Me(ctx, tok); !errors.Is(err, exceptionless.ErrUnauthorized) {
		t.Fatalf("Me with deleted token: %v, want ErrUnauthorized", err)
	}
}

func TestProjectsPaging(t *testing.T) {
	s, _, c := setup(t, exceptionlesstest.Config{})
	tok := login(t, s, c)
	// 1102 projects: the server stops sending rel="next" after 1000 items,
	// so only X-Result-Count tells the client to go on.
	for i := 0; i < 1100; i++ {
		s.AddProject(s.Account.OrganizationID, fmt.Sprint("p", i))
	}
	s.ResetCalls()
	ps, err := c.Projects(context.Background(), tok)
	if err != nil || len(ps) != 1102 {
		t.Fatalf("Projects: %d, %v; want 1102", len(ps), err)
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if seen[p.ID] {
			t.Fatalf("project %s listed twice", p.ID)
		}
		seen[p.ID] = true
	}
	calls := s.Calls()
	if len(calls) != 12 || calls[0].Query != "limit=100&page=1" || calls[11].Query != "limit=100&page=12" {
		t.Fatalf("calls %v, want 12 pages of 100", calls)
	}
}

func TestPagingByLinkWithoutCount(t *testing.T) {
	// A server (or proxy) that drops X-Result-Count: Link decides.
	var pages atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pages.Add(1)
		page := r.URL.Query().Get("page")
		if page == "1" {
			w.Header().Add("Link", `<http://elsewhere/?page=2>; rel="next"`)
		}
		fmt.Fprintf(w, `[{"id":"%024s","name":"p%s"}]`, page, page)
	}))
	defer hs.Close()
	c, _ := exceptionless.New(hs.URL, nil)
	ps, err := c.Projects(context.Background(), "tok")
	if err != nil || len(ps) != 2 || pages.Load() != 2 {
		t.Fatalf("Projects = %v, %v after %d pages", ps, err, pages.Load())
	}
}

func TestProjectTokens(t *testing.T) {
	s, clk, c := setup(t, exceptionlesstest.Config{})
	ctx := context.Background()
	tok := login(t, s, c)
	web := s.Account.Projects[0].ID
	exp := start.Add(48 * time.Hour)

	vt, err := c.CreateProjectToken(ctx, tok, web, exceptionless.NewToken{Scopes: []string{"user"}, Notes: "deploy", ExpiresUTC: &exp})
	if err != nil {
		t.Fatal(err)
	}
	if len(vt.ID.Reveal()) != 40 || vt.ProjectID != web || vt.OrganizationID != s.Account.OrganizationID ||
		!slices.Equal(vt.Scopes, []string{"client", "user"}) || vt.Notes != "deploy" ||
		vt.ExpiresUTC == nil || !vt.ExpiresUTC.Equal(exp) || !vt.CreatedUTC.Equal(start) || !vt.Usable(start) {
		t.Fatalf("created %+v", vt)
	}
	clk.Advance(time.Second)
	plain, err := c.CreateProjectToken(ctx, tok, web, exceptionless.NewToken{})
	if err != nil || !slices.Equal(plain.Scopes, []string{"client"}) || plain.ExpiresUTC != nil {
		t.Fatalf("plain token %+v, %v", plain, err)
	}

	list, err := c.ProjectTokens(ctx, tok, web)
	if err != nil || len(list) != 2 || list[0].ID != vt.ID || list[1].ID != plain.ID {
		t.Fatalf("ProjectTokens = %v, %v", list, err)
	}

	cfg, err := c.ProjectConfig(ctx, plain.ID)
	if err != nil || cfg.Version != 1 || cfg.Settings == nil {
		t.Fatalf("ProjectConfig = %+v, %v", cfg, err)
	}
	if err := c.PostEvent(ctx, plain.ID, []byte(`{"type":"log","message":"hi"}`)); err != nil {
		t.Fatal(err)
	}

	got, err := c.SetTokenDisabled(ctx, tok, plain.ID, true)
	if err != nil || !got.IsDisabled || got.Usable(start) {
		t.Fatalf("disable: %+v, %v", got, err)
	}
	if _, err := c.ProjectConfig(ctx, plain.ID); !errors.Is(err, exceptionless.ErrUnauthorized) {
		t.Fatalf("config with disabled token: %v", err)
	}
	if _, err := c.SetTokenDisabled(ctx, tok, plain.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ProjectConfig(ctx, plain.ID); err != nil {
		t.Fatalf("config after enable: %v", err)
	}

	if err := c.DeleteTokens(ctx, tok, vt.ID, plain.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTokens(ctx, tok, vt.ID); !errors.Is(err, exceptionless.ErrNotFound) {
		t.Fatalf("delete again: %v, want ErrNotFound", err)
	}
	if err := c.PostEvent(ctx, plain.ID, []byte(`{}`)); !errors.Is(err, exceptionless.ErrUnauthorized) {
		t.Fatalf("event with deleted token: %v", err)
	}
}

func TestRoleErrors(t *testing.T) {
	s, _, c := setup(t, exceptionlesstest.Config{})
	ctx := context.Background()
	tok := login(t, s, c)
	web := s.Account.Projects[0].ID
	ct, err := c.CreateProjectToken(ctx, tok, web, exceptionless.NewToken{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ProjectTokens(ctx, ct.ID, web); !errors.Is(err, exceptionless.ErrForbidden) {
		t.Errorf("client token listing tokens: %v, want ErrForbidden", err)
	}
	if _, err := c.ProjectConfig(ctx, tok); !errors.Is(err, exceptionless.ErrUnauthorized) {
		t.Errorf("login token on config: %v, want ErrUnauthorized", err)
	}
	if _, err := c.ProjectTokens(ctx, tok, "65e0ac00000000000000ffff"); !errors.Is(err, exceptionless.ErrNotFound) {
		t.Errorf("unknown project: %v, want ErrNotFound", err)
	}
	if err := c.PostEvent(ctx, ct.ID, nil); err == nil || !strings.Contains(err.Error(), "411") {
		t.Errorf("empty event: %v, want 411", err)
	}
	if _, err := c.ProjectTokens(ctx, tok, "../users/me"); err == nil {
		t.Error("a project id with a path in it was sent")
	}
	s.SetRateLimit(1)
	_, _ = c.Me(ctx, tok)
	if _, err := c.Me(ctx, tok); !errors.Is(err, exceptionless.ErrThrottled) {
		t.Errorf("over the rate limit: %v, want ErrThrottled", err)
	}
}

func TestDeletePartial(t *testing.T) {
	s, _, c := setup(t, exceptionlesstest.Config{})
	ctx := context.Background()
	tok := login(t, s, c)
	web := s.Account.Projects[0].ID
	other := s.AddUser(exceptionlesstest.NewUser{Email: "o@example.test", Password: "secret-pw",
		OrganizationIDs: []string{s.Account.OrganizationID}})
	theirs := exceptionless.Token(s.AddAccessToken(exceptionlesstest.NewAccessToken{ProjectID: web, UserID: other}))
	mine, _ := c.CreateProjectToken(ctx, tok, web, exceptionless.NewToken{})

	err := c.DeleteTokens(ctx, tok, theirs)
	var ae *exceptionless.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Title != "Can only delete tokens created by you." {
		t.Fatalf("single refused: %v", err)
	}
	err = c.DeleteTokens(ctx, tok, mine.ID, theirs)
	var pe *exceptionless.PartialDeleteError
	if !errors.As(err, &pe) || pe.Requested != 2 || pe.Deleted != 1 || pe.Failed != 1 || len(pe.FailedIDs) != 1 || pe.FailedIDs[0] != theirs {
		t.Fatalf("mixed: %#v", err)
	}
	if err.Error() != "exceptionless: delete tokens: 1 of 2 refused (1 deleted)" {
		t.Fatalf("text %q", err)
	}
	if _, ok := s.Token(mine.ID.Reveal()); ok {
		t.Fatal("allowed deletion did not stand")
	}
}

func TestContextAndLimits(t *testing.T) {
	s, _, c := setup(t, exceptionlesstest.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Login(ctx, s.Account.Email, []byte(s.Account.Password)); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: %v", err)
	}

	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`"`))
		w.Write([]byte(strings.Repeat("x", 2<<20)))
	}))
	defer big.Close()
	cb, _ := exceptionless.New(big.URL, nil)
	if _, err := cb.Me(context.Background(), "tok"); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized body: %v", err)
	}
}

func TestNonJSONErrorBody(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(502)
		w.Write([]byte("<html>upstream says: internal detail</html>"))
	}))
	defer hs.Close()
	c, _ := exceptionless.New(hs.URL, nil)
	_, err := c.Me(context.Background(), "tok")
	var ae *exceptionless.APIError
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Title != "Bad Gateway" || strings.Contains(err.Error(), "internal detail") {
		t.Fatalf("502: %v", err)
	}
}

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2016-01-11T20:05:59.7185672", time.Date(2016, 1, 11, 20, 5, 59, 718567200, time.UTC)},
		{"2016-01-11T20:05:59.7185672Z", time.Date(2016, 1, 11, 20, 5, 59, 718567200, time.UTC)},
		{"2016-01-11T20:05:59Z", time.Date(2016, 1, 11, 20, 5, 59, 0, time.UTC)},
		{"2016-01-11T20:05:59", time.Date(2016, 1, 11, 20, 5, 59, 0, time.UTC)},
		{"2016-01-11T21:05:59+01:00", time.Date(2016, 1, 11, 20, 5, 59, 0, time.UTC)},
	} {
		got, err := exceptionless.ParseTime(tc.in)
		if err != nil || !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := exceptionless.ParseTime("yesterday"); err == nil {
		t.Error("ParseTime accepted nonsense")
	}
}

func TestChangePassword(t *testing.T) {
	s, _, c := setup(t, exceptionlesstest.Config{})
	ctx := context.Background()
	old := login(t, s, c)
	key, err := c.CreateProjectToken(ctx, old, s.Account.Projects[0].ID, exceptionless.NewToken{})
	if err != nil {
		t.Fatal(err)
	}
	bound := s.AddAccessToken(exceptionlesstest.NewAccessToken{ProjectID: s.Account.Projects[0].ID, UserID: s.Account.UserID})
	// Two failed logins, which the change resets.
	for range 2 {
		_, _ = c.Login(ctx, s.Account.Email, []byte("wrong-password"))
	}

	current := []byte(s.Account.Password)
	next := []byte("n3w-pässword\"with\\quotes")
	for _, tc := range []struct {
		name          string
		current, next []byte
		field         string
	}{
		{"wrong current", []byte("not-the-password"), next, "current_password"},
		{"same", current, current, "password"},
		{"too short", current, []byte("short"), "password"},
	} {
		_, err := c.ChangePassword(ctx, old, tc.current, tc.next)
		var ae *exceptionless.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || !slices.Equal(ae.Fields, []string{tc.field}) {
			t.Fatalf("%s: %v, want 422 naming %s", tc.name, err, tc.field)
		}
		for _, p := range [][]byte{tc.current, tc.next} {
			if strings.Contains(err.Error(), string(p)) {
				t.Fatalf("%s: the error repeats a password", tc.name)
			}
		}
	}
	if s.PasswordChanges() != 0 || !s.PasswordIs(s.Account.Email, s.Account.Password) {
		t.Fatal("a refused change changed the password")
	}

	tok, err := c.ChangePassword(ctx, old, current, next)
	if err != nil {
		t.Fatalf("ChangePassword: %v", err)
	}
	if tok == old || !s.PasswordIs(s.Account.Email, string(next)) || s.PasswordChanges() != 1 {
		t.Fatal("the change did not take effect")
	}
	if _, err := c.Me(ctx, old); !errors.Is(err, exceptionless.ErrUnauthorized) {
		t.Fatalf("old login token after the change: %v, want 401", err)
	}
	if _, err := c.Me(ctx, tok); err != nil {
		t.Fatalf("new token: %v", err)
	}
	if _, ok := s.Token(bound); ok {
		t.Fatal("a user-bound key survived the change")
	}
	if _, err := c.ProjectConfig(ctx, key.ID); err != nil {
		t.Fatalf("project key after the change: %v", err)
	}
	// The counter was reset: four failures and a success fit in the window.
	for range 4 {
		_, _ = c.Login(ctx, s.Account.Email, []byte("wrong-password"))
	}
	if again, err := c.Login(ctx, s.Account.Email, next); err != nil || again != tok {
		t.Fatalf("login with the new password: %v (same token: %v)", err, again == tok)
	}
	if _, err := c.ChangePassword(ctx, key.ID, next, []byte("another-password")); !errors.Is(err, exceptionless.ErrUnauthorized) && !isStatus(err, http.StatusForbidden) {
		t.Fatalf("change with a project key: %v, want 401 or 403", err)
	}
}

func isStatus(err error, status int) bool {
	var ae *exceptionless.APIError
	return errors.As(err, &ae) && ae.Status == status
}
