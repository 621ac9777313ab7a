package exceptionlesstest

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAuthForms(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	me := "/api/v2/users/me"
	for _, tc := range []struct {
		name   string
		path   string
		hdr    []string
		status int
	}{
		{"bearer", me, bearer(lt), 200},
		{"bearer lower case", me, []string{"Authorization", "bearer " + lt}, 200},
		{"token scheme", me, []string{"Authorization", "TOKEN " + lt}, 200},
		{"basic client:token", me, basic("client", lt), 200},
		{"basic token:x-oauth-basic", me, basic(lt, "x-oauth-basic"), 200},
		{"basic token: (empty password)", me, basic(lt, ""), 401},
		{"basic email:password", me, basic(s.Account.Email, s.Account.Password), 200},
		{"basic wrong password", me, basic(s.Account.Email, "wrong-password"), 401},
		{"query access_token", me + "?access_token=" + lt, nil, 200},
		{"query api_key", me + "?api_key=" + lt, nil, 200},
		{"query apikey", me + "?apikey=" + lt, nil, 200},
		{"query ignored under bearer", me + "?access_token=" + lt, bearer("x"), 401},
		{"query used under other scheme", me + "?access_token=" + lt, []string{"Authorization", "Digest x"}, 200},
		{"unknown token", me, bearer(strings.Repeat("a", 40)), 401},
		{"64-char bearer is OAuth", me, bearer(strings.Repeat("a", 64)), 401},
		{"none", me, nil, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, s, "GET", tc.path, "", tc.hdr...)
			r.wantStatus(t, tc.status)
			if tc.status == 401 {
				r.wantProblem(t, 401, "")
				if h := r.header.Get("WWW-Authenticate"); h != `Bearer resource_metadata="`+s.URL+`/.well-known/oauth-protected-resource/api/v2"` {
					t.Fatalf("WWW-Authenticate %q", h)
				}
			}
		})
	}
	// Basic email:password does not touch the login throttle.
	for i := 0; i < 10; i++ {
		call(t, s, "GET", me, "", basic(s.Account.Email, "wrong-password")...)
	}
	if n := s.LoginAttempts(); n != 1 {
		t.Fatalf("LoginAttempts = %d, want 1 (Basic skips the throttle)", n)
	}
	mustLogin(t, s)
}

func TestTokenValidation(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web := s.Account.Projects[0].ID
	cfg := func(tok string) int { return call(t, s, "GET", "/api/v2/projects/config", "", bearer(tok)...).status }

	disabled := createToken(t, s, lt, web, "")
	s.SetTokenDisabled(disabled, true)
	expired := createToken(t, s, lt, web, "")
	s.ExpireToken(expired)
	deleted := createToken(t, s, lt, web, "")
	s.DeleteToken(deleted)
	suspended := createToken(t, s, lt, web, "")
	for name, tok := range map[string]string{"disabled": disabled, "expired": expired, "deleted": deleted} {
		if got := cfg(tok); got != 401 {
			t.Errorf("%s token: status %d, want 401", name, got)
		}
	}
	s.SuspendOrganization(s.Account.OrganizationID, true)
	if got := cfg(suspended); got != 401 {
		t.Errorf("suspended token: status %d, want 401", got)
	}
	s.SuspendOrganization(s.Account.OrganizationID, false)
	if got := cfg(suspended); got != 200 {
		t.Errorf("resumed token: status %d, want 200", got)
	}
	// A login token whose user is gone fails.
	s.DeleteUser(s.Account.Email)
	call(t, s, "GET", "/api/v2/users/me", "", bearer(lt)...).wantProblem(t, 401, "")
}

// TestRoleTable checks the caller-by-endpoint table of the API reference.
func TestRoleTable(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web := s.Account.Projects[0].ID
	client := createToken(t, s, lt, web, "")
	userKey := createToken(t, s, lt, web, `{"scopes":["user"]}`)
	userKeyNoProject := s.AddAccessToken(NewAccessToken{OrganizationID: s.Account.OrganizationID, Scopes: []string{"client", "user"}})
	basicAuth := basic(s.Account.Email, s.Account.Password)
	event := func(hdr []string) []string { return append(hdr, "Content-Type", "application/json") }

	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
	}{
		{"login token tokens API", "GET", "/api/v2/projects/" + web + "/tokens", "", bearer(lt), 200},
		{"login token me", "GET", "/api/v2/users/me", "", bearer(lt), 200},
		{"login token projects", "GET", "/api/v2/projects", "", bearer(lt), 200},
		{"login token config", "GET", "/api/v2/projects/config", "", bearer(lt), 401},
		{"login token events", "POST", "/api/v2/events", `{"type":"log"}`, event(bearer(lt)), 400},
		{"basic tokens API", "GET", "/api/v2/projects/" + web + "/tokens", "", basicAuth, 200},
		{"basic config", "GET", "/api/v2/projects/config", "", basicAuth, 401},
		{"client tokens API", "GET", "/api/v2/projects/" + web + "/tokens", "", bearer(client), 403},
		{"client me", "GET", "/api/v2/users/me", "", bearer(client), 403},
		{"client organizations", "GET", "/api/v2/organizations", "", bearer(client), 403},
		{"client projects", "GET", "/api/v2/projects", "", bearer(client), 403},
		{"client config", "GET", "/api/v2/projects/config", "", bearer(client), 200},
		{"client events", "POST", "/api/v2/events", `{"type":"log"}`, event(bearer(client)), 202},
		{"user key tokens API", "GET", "/api/v2/projects/" + web + "/tokens", "", bearer(userKey), 403},
		{"user key me", "GET", "/api/v2/users/me", "", bearer(userKey), 401},
		{"user key organizations", "GET", "/api/v2/organizations", "", bearer(userKey), 200},
		{"user key projects", "GET", "/api/v2/projects", "", bearer(userKey), 200},
		{"user key config", "GET", "/api/v2/projects/config", "", bearer(userKey), 200},
		{"user key without project config", "GET", "/api/v2/projects/config", "", bearer(userKeyNoProject), 401},
		{"user key events", "POST", "/api/v2/events", `{"type":"log"}`, event(bearer(userKey)), 202},
		{"user key logout", "GET", "/api/v2/auth/logout", "", bearer(userKey), 403},
		{"client logout", "GET", "/api/v2/auth/logout", "", bearer(client), 403},
		{"basic logout", "GET", "/api/v2/auth/logout", "", basicAuth, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call(t, s, tc.method, tc.path, tc.body, tc.hdr...).wantStatus(t, tc.status)
		})
	}
}

func TestLogout(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	call(t, s, "POST", "/api/v2/auth/logout", "", bearer(lt)...).wantProblem(t, 404, "")
	r := call(t, s, "GET", "/api/v2/auth/logout", "", bearer(lt)...)
	r.wantStatus(t, 200)
	if len(r.body) != 0 {
		t.Fatalf("logout body %q, want empty", r.body)
	}
	// The shared token is gone for everyone.
	call(t, s, "GET", "/api/v2/users/me", "", bearer(lt)...).wantProblem(t, 401, "")
	if again := mustLogin(t, s); again == lt {
		t.Fatal("login after logout returned the deleted token")
	}
	call(t, s, "GET", "/api/v2/auth/logout", "", basic(s.Account.Email, s.Account.Password)...).
		wantProblem(t, 403, "Logout not supported")
}

func TestMe(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	r := call(t, s, "GET", "/api/v2/users/me", "", bearer(lt)...)
	r.wantStatus(t, 200)
	var u struct {
		ID              string   `json:"id"`
		EmailAddress    string   `json:"email_address"`
		FullName        string   `json:"full_name"`
		OrganizationIDs []string `json:"organization_ids"`
		Roles           []string `json:"roles"`
		OAuthAccounts   []any    `json:"o_auth_accounts"`
		HasLocalAccount bool     `json:"has_local_account"`
	}
	r.decode(t, &u)
	if u.ID != s.Account.UserID || u.EmailAddress != DefaultEmail || u.FullName != s.Account.FullName ||
		!slices.Equal(u.OrganizationIDs, []string{s.Account.OrganizationID}) || u.OAuthAccounts == nil || !u.HasLocalAccount {
		t.Fatalf("me = %s", r.body)
	}
}

func TestOrganizations(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	r := call(t, s, "GET", "/api/v2/organizations?limit=1", "", bearer(lt)...)
	r.wantStatus(t, 200)
	var orgs []struct {
		ID           string `json:"id"`
		Name         string `json:"name"`
		ProjectCount int    `json:"project_count"`
	}
	r.decode(t, &orgs)
	if len(orgs) != 1 || orgs[0].ID != s.Account.OrganizationID || orgs[0].Name != "Acme" || orgs[0].ProjectCount != 2 {
		t.Fatalf("organizations = %s", r.body)
	}
	if r.header.Get("X-Result-Count") != "" || r.header.Get("Link") != "" {
		t.Fatal("organizations carry paging headers")
	}
}

func TestProjects(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	s.AddProject(s.AddOrganization("Not mine"), "web")
	r := call(t, s, "GET", "/api/v2/projects", "", bearer(lt)...)
	var ps []struct {
		ID               string `json:"id"`
		Name             string `json:"name"`
		OrganizationID   string `json:"organization_id"`
		OrganizationName string `json:"organization_name"`
	}
	r.decode(t, &ps)
	if len(ps) != 2 || ps[0].ID != s.Account.Projects[0].ID || ps[0].Name != "web" || ps[1].Name != "api" ||
		ps[0].OrganizationName != "Acme" || ps[0].OrganizationID != s.Account.OrganizationID {
		t.Fatalf("projects = %s", r.body)
	}
	// A user without organizations gets [] and a count of 0.
	s.AddUser(NewUser{Email: "lonely@example.test", Password: "secret-pw"})
	r = call(t, s, "GET", "/api/v2/projects", "", basic("lonely@example.test", "secret-pw")...)
	if string(r.body) != "[]" || r.header.Get("X-Result-Count") != "0" {
		t.Fatalf("no organizations: %s count %q", r.body, r.header.Get("X-Result-Count"))
	}
}

func TestProjectConfig(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web := s.Account.Projects[0].ID
	ct := createToken(t, s, lt, web, "")
	s.SetProjectSetting(web, "IncludePrivateInformation", "false")

	r := call(t, s, "GET", "/api/v2/projects/config", "", bearer(ct)...)
	r.wantStatus(t, 200)
	if got := r.header.Get("Content-Type"); got != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	var c struct {
		Version  int               `json:"version"`
		Settings map[string]string `json:"settings"`
	}
	r.decode(t, &c)
	if c.Version != 2 || c.Settings["IncludePrivateInformation"] != "false" {
		t.Fatalf("config %s", r.body)
	}
	r = call(t, s, "GET", "/api/v2/projects/config?v=2", "", bearer(ct)...)
	r.wantStatus(t, 304)
	call(t, s, "GET", "/api/v2/projects/config?v=1", "", bearer(ct)...).wantStatus(t, 200)
}

func TestPostEvents(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web := s.Account.Projects[0].ID
	ct := createToken(t, s, lt, web, "")
	auth := bearer(ct)

	r := call(t, s, "POST", "/api/v2/events", `{"type":"log","message":"hi"}`, auth...)
	r.wantStatus(t, 202)
	if len(r.body) != 0 || r.header.Get("X-Exceptionless-ConfigVersion") != "1" {
		t.Fatalf("body %q, config version %q", r.body, r.header.Get("X-Exceptionless-ConfigVersion"))
	}
	call(t, s, "POST", "/api/v2/events", "line one\nline two", append(auth, "Content-Type", "text/plain")...).wantStatus(t, 202)
	if n := s.EventPosts(web); n != 2 {
		t.Fatalf("EventPosts = %d, want 2", n)
	}
	call(t, s, "POST", "/api/v2/events", "", auth...).wantProblem(t, 411, "")
	call(t, s, "POST", "/api/v2/events", strings.Repeat("x", 200_001), auth...).wantProblem(t, 413, "")
	call(t, s, "POST", "/api/v2/events", "<e/>", append(auth, "Content-Type", "application/xml")...).wantProblem(t, 415, "")
	call(t, s, "POST", "/api/v2/events", `{}`).wantProblem(t, 401, "")
}

func TestRateLimit(t *testing.T) {
	s, clk := newClockServer(t, Config{RateLimit: 2})
	lt := mustLogin(t, s) // anonymous: counted in the IP bucket, not the user's
	me := func() result { return call(t, s, "GET", "/api/v2/users/me", "", bearer(lt)...) }

	r := me()
	if r.header.Get("X-RateLimit-Limit") != "2" || r.header.Get("X-RateLimit-Remaining") != "1" {
		t.Fatalf("first: limit %q remaining %q, want 2 and 1", r.header.Get("X-RateLimit-Limit"), r.header.Get("X-RateLimit-Remaining"))
	}
	me().wantStatus(t, 200)
	r = me()
	r.wantProblem(t, 429, "")
	if r.header.Get("Retry-After") != "" || r.header.Get("X-RateLimit-Limit") != "" {
		t.Fatal("429 carries rate headers")
	}

	// All access tokens of one organization share a bucket; config is never counted.
	web := s.Account.Projects[0].ID
	a := s.AddAccessToken(NewAccessToken{ProjectID: web})
	b := s.AddAccessToken(NewAccessToken{ProjectID: web})
	ev := func(tok string) int {
		return call(t, s, "POST", "/api/v2/events", `{}`, bearer(tok)...).status
	}
	for i := 0; i < 5; i++ {
		call(t, s, "GET", "/api/v2/projects/config", "", bearer(a)...).wantStatus(t, 200)
	}
	if ev(a) != 202 || ev(b) != 202 || ev(a) != 429 || ev(b) != 429 {
		t.Fatal("organization bucket not shared or not limited")
	}

	// The window is wall-clock: it ends at the quarter hour.
	clk.Set(time.Date(2026, 3, 2, 10, 15, 0, 0, time.UTC))
	me().wantStatus(t, 200)
	if ev(b) != 202 {
		t.Fatal("organization bucket did not reset at the quarter hour")
	}

	s.SetRateLimit(0)
	for i := 0; i < 5; i++ {
		if r := me(); r.status != 200 || r.header.Get("X-RateLimit-Limit") != "" {
			t.Fatal("throttle still on after SetRateLimit(0)")
		}
	}
}

func TestCallsAreRecordedRedacted(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web := s.Account.Projects[0].ID
	ct := createToken(t, s, lt, web, "")
	s.ResetCalls()

	call(t, s, "GET", "/api/v2/tokens/"+ct, "", bearer(lt)...)
	call(t, s, "PATCH", "/api/v2/tokens/"+ct, `{"notes":"x"}`, bearer(lt)...)
	call(t, s, "GET", "/api/v2/users/me?access_token="+lt+"&x=1", "")
	call(t, s, "GET", "/api/v2/users/me?API_KEY="+lt, "")
	call(t, s, "GET", "/api/v2/nothing/"+lt, "")
	call(t, s, "DELETE", "/api/v2/tokens/"+ct+","+strings.Repeat("q", 40), "", bearer(lt)...)

	calls := s.Calls()
	if len(calls) != 6 {
		t.Fatalf("%d calls recorded, want 6", len(calls))
	}
	for _, c := range calls {
		text := c.Method + " " + c.Path + "?" + c.Query
		if strings.Contains(text, lt) || strings.Contains(text, ct) {
			t.Errorf("call %q reveals a token", text)
		}
	}
	want := []Call{
		{"GET", "/api/v2/tokens/[REDACTED]", "", 200, "bearer"},
		{"PATCH", "/api/v2/tokens/[REDACTED]", "", 200, "bearer"},
		{"GET", "/api/v2/users/me", "access_token=[REDACTED]&x=1", 200, "query"},
		{"GET", "/api/v2/users/me", "API_KEY=[REDACTED]", 200, "query"},
		{"GET", "/api/v2/nothing/[REDACTED]", "", 404, ""},
		{"DELETE", "/api/v2/tokens/[REDACTED]", "", 202, "bearer"},
	}
	if !slices.Equal(calls, want) {
		t.Fatalf("calls\n%v\nwant\n%v", calls, want)
	}
}

func TestFailNext(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	s.FailNext("POST", "/api/v2/auth/login", http.StatusServiceUnavailable)
	s.FailNext("", "/api/v2/auth", http.StatusInternalServerError)
	login(t, s, s.Account.Email, s.Account.Password, "192.0.2.1").wantProblem(t, 503, "Service Unavailable")
	login(t, s, s.Account.Email, s.Account.Password, "192.0.2.1").wantProblem(t, 500, "")
	mustLogin(t, s)
	if n := s.LoginAttempts(); n != 1 {
		t.Fatalf("LoginAttempts = %d, want 1 (injected failures never reach the endpoint)", n)
	}
}

func TestRouting(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	for _, path := range []string{
		"/api/v2/tokens/short",
		"/api/v2/tokens/" + strings.Repeat("a", 41),
		"/api/v2/projects/" + strings.Repeat("a", 23) + "/tokens",
		"/api/v2/projects/" + strings.Repeat("a", 37) + "/tokens",
		"/api/v1/projects",
		"/",
	} {
		t.Run(path, func(t *testing.T) {
			call(t, s, "GET", path, "", bearer(lt)...).wantProblem(t, 404, "")
		})
	}
	// Route literals are case-insensitive, as in ASP.NET.
	call(t, s, "GET", "/api/v2/Users/ME", "", bearer(lt)...).wantStatus(t, 200)
	r := call(t, s, "GET", "/api/v2/tokens/"+strings.Repeat("a", 40), "", bearer(lt)...)
	p := r.wantProblem(t, 404, "")
	if p.Instance != "GET /api/v2/tokens/"+strings.Repeat("a", 40) {
		t.Fatalf("instance %q, want METHOD and path", p.Instance)
	}
}

func TestNoSeedAndCustomAccount(t *testing.T) {
	s := NewServer(Config{NoSeed: true})
	defer s.Close()
	if s.Account.Email != "" {
		t.Fatal("NoSeed server has an account")
	}
	s2 := NewServer(Config{Email: " Me@Example.Test", Password: "hunter22"})
	defer s2.Close()
	if s2.Account.Email != "me@example.test" || s2.Account.Password != "hunter22" {
		t.Fatalf("account %+v", s2.Account)
	}
	s3 := NewServer(Config{})
	defer s3.Close()
	if len(s3.Account.Password) < 16 || s3.Account.Password == NewServer(Config{}).Account.Password {
		t.Fatal("seeded passwords are not random")
	}
}

func TestSetLatencyDelaysAfterTheEffect(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	s.SetLatency("POST", "/api/v2/auth/login", 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	body := strings.NewReader(`{"email":"` + s.Account.Email + `","password":"` + s.Account.Password + `"}`)
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/api/v2/auth/login", body)
	req.Header.Set("Content-Type", "application/json")
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("the request was answered before the injected latency")
	}
	if _, ok := s.LoginToken(s.Account.Email); !ok {
		t.Error("the login did not take effect before the delay")
	}
	s.SetLatency("POST", "/api/v2/auth/login", 0)
	if len(s.latencies) != 0 {
		t.Error("SetLatency(0) did not remove the rule")
	}
}
