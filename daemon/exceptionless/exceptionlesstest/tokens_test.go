package exceptionlesstest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

type viewTokenJSON struct {
	ID               string   `json:"id"`
	OrganizationID   string   `json:"organization_id"`
	ProjectID        string   `json:"project_id"`
	UserID           string   `json:"user_id"`
	DefaultProjectID string   `json:"default_project_id"`
	Scopes           []string `json:"scopes"`
	ExpiresUTC       string   `json:"expires_utc"`
	Notes            *string  `json:"notes"`
	IsDisabled       bool     `json:"is_disabled"`
	IsSuspended      bool     `json:"is_suspended"`
	CreatedUTC       string   `json:"created_utc"`
	UpdatedUTC       string   `json:"updated_utc"`
}

func TestCreateProjectToken(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web, api := s.Account.Projects[0].ID, s.Account.Projects[1].ID

	r := call(t, s, "POST", "/api/v2/projects/"+web+"/tokens", `{"notes":"deploy","project_id":"`+api+`"}`, bearer(lt)...)
	r.wantStatus(t, 201)
	var v viewTokenJSON
	r.decode(t, &v)
	if len(v.ID) != 40 || strings.Trim(v.ID, alnum) != "" {
		t.Fatalf("id %q is not 40 alphanumerics", v.ID)
	}
	if v.ProjectID != web || v.OrganizationID != s.Account.OrganizationID {
		t.Errorf("project %q org %q, want the route's project %q and its org", v.ProjectID, v.OrganizationID, web)
	}
	if !slices.Equal(v.Scopes, []string{"client"}) || v.Notes == nil || *v.Notes != "deploy" || v.UserID != "" {
		t.Errorf("token %+v: want scopes [client], notes deploy, no user_id", v)
	}
	if v.CreatedUTC != "2026-03-02T10:00:00.0000000" {
		t.Errorf("created_utc %q, want the stored no-zone 7-digit form", v.CreatedUTC)
	}
	if loc := r.header.Get("Location"); loc != s.URL+"/api/v2/tokens/"+v.ID {
		t.Errorf("Location %q, want absolute URL of the token", loc)
	}
	// Nulls are left out, empty arrays kept.
	var raw map[string]any
	r.decode(t, &raw)
	for _, k := range []string{"expires_utc", "user_id", "default_project_id"} {
		if _, ok := raw[k]; ok {
			t.Errorf("null field %q present in %s", k, r.body)
		}
	}

	// The body may be empty, with no content type at all.
	r = call(t, s, "POST", "/api/v2/projects/"+web+"/tokens", "", bearer(lt)...)
	r.wantStatus(t, 201)

	// The client token works on the client endpoints.
	call(t, s, "GET", "/api/v2/projects/config", "", bearer(v.ID)...).wantStatus(t, 200)
}

func TestCreateProjectTokenScopes(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web := s.Account.Projects[0].ID
	for _, tc := range []struct {
		body   string
		status int
		scopes []string
	}{
		{`{}`, 201, []string{"client"}},
		{`{"scopes":[]}`, 201, []string{"client"}},
		{`{"scopes":null}`, 201, []string{"client"}},
		{`{"scopes":["user"]}`, 201, []string{"client", "user"}},
		{`{"scopes":["CLIENT"]}`, 201, []string{"client"}},
		{`{"scopes":["source-maps:write"]}`, 201, []string{"source-maps:write"}},
		{`{"scopes":["admin"]}`, 422, nil},
		{`{"scopes":["global"]}`, 422, nil},
		{`{"scopes":["client","bogus"]}`, 422, nil},
	} {
		t.Run(tc.body, func(t *testing.T) {
			r := call(t, s, "POST", "/api/v2/projects/"+web+"/tokens", tc.body, bearer(lt)...)
			if tc.status == 422 {
				p := r.wantProblem(t, 422, "One or more validation errors occurred.")
				if len(p.Errors["scopes"]) == 0 || p.Errors["scopes"][0] != "Invalid token scope requested." {
					t.Fatalf("errors %v, want scopes", p.Errors)
				}
				return
			}
			r.wantStatus(t, tc.status)
			var v viewTokenJSON
			r.decode(t, &v)
			if !slices.Equal(v.Scopes, tc.scopes) {
				t.Fatalf("scopes %v, want %v", v.Scopes, tc.scopes)
			}
		})
	}
}

func TestCreateProjectTokenFailures(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web := s.Account.Projects[0].ID
	client := createToken(t, s, lt, web, "")
	userKey := createToken(t, s, lt, web, `{"scopes":["user"]}`)
	otherOrg := s.AddOrganization("Other")
	foreign := s.AddProject(otherOrg, "theirs")

	path := "/api/v2/projects/" + web + "/tokens"
	for _, tc := range []struct {
		name   string
		path   string
		body   string
		hdr    []string
		status int
		title  string
	}{
		{"no auth", path, `{}`, nil, 401, ""},
		{"client key", path, `{}`, bearer(client), 403, ""},
		{"user-scope key", path, `{}`, bearer(userKey), 403, ""},
		{"unknown project", "/api/v2/projects/" + strings.Repeat("a", 24) + "/tokens", `{}`, bearer(lt), 404, "Project not found."},
		{"foreign project", "/api/v2/projects/" + foreign + "/tokens", `{}`, bearer(lt), 404, "Project not found."},
		{"bad project id", "/api/v2/projects/web/tokens", `{}`, bearer(lt), 404, ""},
		{"org id length", path, `{"organization_id":"abc"}`, bearer(lt), 422, ""},
		{"bad json", path, `{"notes":`, bearer(lt), 400, ""},
		{"wrong type", path, `{"notes":5}`, bearer(lt), 400, ""},
		{"text body", path, `notes`, append(bearer(lt), "Content-Type", "text/plain"), 415, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call(t, s, "POST", tc.path, tc.body, tc.hdr...).wantProblem(t, tc.status, tc.title)
		})
	}
}

func TestCreateProjectTokenExpiry(t *testing.T) {
	s, clk := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web := s.Account.Projects[0].ID

	r := call(t, s, "POST", "/api/v2/projects/"+web+"/tokens", `{"expires_utc":"2026-03-02T11:00:00Z"}`, bearer(lt)...)
	r.wantStatus(t, 201)
	var v viewTokenJSON
	r.decode(t, &v)
	if v.ExpiresUTC != "2026-03-02T11:00:00Z" {
		t.Fatalf("expires_utc %q, want it echoed", v.ExpiresUTC)
	}
	call(t, s, "GET", "/api/v2/projects/config", "", bearer(v.ID)...).wantStatus(t, 200)
	clk.Set(time.Date(2026, 3, 2, 11, 0, 1, 0, time.UTC))
	call(t, s, "GET", "/api/v2/projects/config", "", bearer(v.ID)...).wantProblem(t, 401, "")

	// A date in the past is accepted and gives a token dead on arrival.
	dead := createToken(t, s, lt, web, `{"expires_utc":"2020-01-01T00:00:00"}`)
	call(t, s, "GET", "/api/v2/projects/config", "", bearer(dead)...).wantProblem(t, 401, "")
}

func TestProjectTokensList(t *testing.T) {
	s, clk := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web, api := s.Account.Projects[0].ID, s.Account.Projects[1].ID
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, createToken(t, s, lt, web, ""))
		clk.Advance(time.Second)
	}
	createToken(t, s, lt, api, "")
	s.SetTokenDisabled(ids[1], true)
	s.ExpireToken(ids[2])
	orgToken := s.AddAccessToken(NewAccessToken{OrganizationID: s.Account.OrganizationID, DefaultProjectID: web})

	r := call(t, s, "GET", "/api/v2/projects/"+web+"/tokens", "", bearer(lt)...)
	r.wantStatus(t, 200)
	var list []viewTokenJSON
	r.decode(t, &list)
	var got []string
	for _, v := range list {
		got = append(got, v.ID)
	}
	want := append(slices.Clone(ids), orgToken)
	if !slices.Equal(got, want) {
		t.Fatalf("list order %v, want oldest first incl. disabled, expired, org default: %v", got, want)
	}
	if r.header.Get("X-Result-Count") != "4" {
		t.Fatalf("X-Result-Count %q, want 4", r.header.Get("X-Result-Count"))
	}
	if slices.Contains(got, lt) {
		t.Fatal("the login token is listed")
	}

	client := ids[0]
	call(t, s, "GET", "/api/v2/projects/"+web+"/tokens", "", bearer(client)...).wantProblem(t, 403, "")
	other := s.AddProject(s.AddOrganization("Other"), "x")
	call(t, s, "GET", "/api/v2/projects/"+other+"/tokens", "", bearer(lt)...).wantProblem(t, 404, "Project not found.")
}

func TestProjectTokensPagingCap(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web := s.Account.Projects[0].ID
	for i := 0; i < 105; i++ {
		s.AddAccessToken(NewAccessToken{ProjectID: web})
	}
	r := call(t, s, "GET", "/api/v2/projects/"+web+"/tokens?limit=500", "", bearer(lt)...)
	var list []viewTokenJSON
	r.decode(t, &list)
	if len(list) != 100 {
		t.Fatalf("got %d tokens with limit=500, want the maximum 100", len(list))
	}
}

func TestGetToken(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	id := createToken(t, s, lt, s.Account.Projects[0].ID, `{"notes":"n"}`)
	r := call(t, s, "GET", "/api/v2/tokens/"+id, "", bearer(lt)...)
	r.wantStatus(t, 200)
	var v viewTokenJSON
	r.decode(t, &v)
	if v.ID != id {
		t.Fatal("wrong token returned")
	}
	otherOrgToken := s.AddAccessToken(NewAccessToken{ProjectID: s.AddProject(s.AddOrganization("O"), "p")})
	for name, path := range map[string]string{
		"unknown":     "/api/v2/tokens/" + strings.Repeat("x", 40),
		"zeros":       "/api/v2/tokens/" + strings.Repeat("0", 24),
		"login token": "/api/v2/tokens/" + lt,
		"other org":   "/api/v2/tokens/" + otherOrgToken,
		"too short":   "/api/v2/tokens/abc",
	} {
		t.Run(name, func(t *testing.T) {
			call(t, s, "GET", path, "", bearer(lt)...).wantProblem(t, 404, "")
		})
	}
	call(t, s, "GET", "/api/v2/tokens/"+id, "", bearer(id)...).wantProblem(t, 403, "")
}

func TestPatchToken(t *testing.T) {
	s, clk := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	id := createToken(t, s, lt, s.Account.Projects[0].ID, `{"notes":"keep"}`)
	path := "/api/v2/tokens/" + id
	clk.Advance(time.Minute)

	r := call(t, s, "PATCH", path, `{"is_disabled":true,"scopes":["user"]}`, bearer(lt)...)
	r.wantStatus(t, 200)
	var v viewTokenJSON
	r.decode(t, &v)
	if !v.IsDisabled || *v.Notes != "keep" || !slices.Equal(v.Scopes, []string{"client"}) {
		t.Fatalf("after disable: %+v; want disabled, notes and scopes unchanged", v)
	}
	if v.UpdatedUTC == v.CreatedUTC {
		t.Error("updated_utc not moved")
	}
	call(t, s, "GET", "/api/v2/projects/config", "", bearer(id)...).wantProblem(t, 401, "")

	call(t, s, "PUT", path, `{"is_disabled":false}`, bearer(lt)...).wantStatus(t, 200)
	call(t, s, "GET", "/api/v2/projects/config", "", bearer(id)...).wantStatus(t, 200)

	r = call(t, s, "PATCH", path, `{"notes":"changed"}`, bearer(lt)...)
	r.decode(t, &v)
	if *v.Notes != "changed" || v.IsDisabled {
		t.Fatalf("notes patch: %+v", v)
	}
	// {} changes nothing; camelCase is ignored silently.
	r = call(t, s, "PATCH", path, `{"isDisabled":true}`, bearer(lt)...)
	r.wantStatus(t, 200)
	r.decode(t, &v)
	if v.IsDisabled {
		t.Fatal("camelCase isDisabled was applied")
	}
	call(t, s, "PATCH", path, `{}`, bearer(lt)...).wantStatus(t, 200)

	call(t, s, "PATCH", path, "", bearer(lt)...).wantProblem(t, 400, "")
	call(t, s, "PATCH", "/api/v2/tokens/"+strings.Repeat("x", 40), `{}`, bearer(lt)...).wantProblem(t, 404, "")
	call(t, s, "PATCH", path, `{"is_disabled":true}`, bearer(id)...).wantProblem(t, 403, "")
}

func TestDeleteTokens(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web := s.Account.Projects[0].ID
	a, b := createToken(t, s, lt, web, ""), createToken(t, s, lt, web, "")

	// A client key may not delete, not even itself.
	call(t, s, "DELETE", "/api/v2/tokens/"+a, "", bearer(a)...).wantProblem(t, 403, "")

	r := call(t, s, "DELETE", "/api/v2/tokens/"+a+","+b+","+strings.Repeat("z", 40), "", bearer(lt)...)
	r.wantStatus(t, 202)
	if string(r.body) != `{"workers":[]}` {
		t.Fatalf("body %s, want {\"workers\":[]}", r.body)
	}
	call(t, s, "GET", "/api/v2/projects/config", "", bearer(a)...).wantProblem(t, 401, "")
	call(t, s, "DELETE", "/api/v2/tokens/"+a, "", bearer(lt)...).wantProblem(t, 404, "No tokens found.")
	call(t, s, "DELETE", "/api/v2/tokens/"+a+",bad!", "", bearer(lt)...).wantProblem(t, 404, "")
}

func TestDeleteTokensMixed(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	web := s.Account.Projects[0].ID
	other := s.AddUser(NewUser{Email: "other@example.test", Password: "secret-pw", OrganizationIDs: []string{s.Account.OrganizationID}})
	theirs := s.AddAccessToken(NewAccessToken{ProjectID: web, UserID: other})
	mine := createToken(t, s, lt, web, "")

	call(t, s, "DELETE", "/api/v2/tokens/"+theirs, "", bearer(lt)...).
		wantProblem(t, 400, "Can only delete tokens created by you.")

	r := call(t, s, "DELETE", "/api/v2/tokens/"+mine+","+theirs, "", bearer(lt)...)
	r.wantStatus(t, 400)
	var out struct {
		Workers []string `json:"workers"`
		Success []string `json:"success"`
		Failure []struct {
			Allowed    bool   `json:"allowed"`
			ID         string `json:"id"`
			StatusCode int    `json:"status_code"`
			Message    string `json:"message"`
		} `json:"failure"`
	}
	r.decode(t, &out)
	if out.Workers == nil || !slices.Equal(out.Success, []string{mine}) || len(out.Failure) != 1 ||
		out.Failure[0].ID != theirs || out.Failure[0].StatusCode != 400 || out.Failure[0].Allowed {
		t.Fatalf("mixed result %s", r.body)
	}
	// The allowed deletion stands.
	if _, ok := s.Token(mine); ok {
		t.Fatal("the allowed token was not deleted")
	}
	if _, ok := s.Token(theirs); !ok {
		t.Fatal("the refused token was deleted")
	}
}

func TestLinkHeadersAndPaging(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	for i := 0; i < 25; i++ {
		s.AddProject(s.Account.OrganizationID, fmt.Sprintf("p%02d", i))
	}
	// 27 projects in all; page 2 of 10 has both links, which echo the query.
	r := call(t, s, "GET", "/api/v2/projects?limit=10&page=2&access_token="+lt, "")
	r.wantStatus(t, 200)
	if got := r.header.Get("X-Result-Count"); got != "27" {
		t.Fatalf("X-Result-Count %q, want 27", got)
	}
	links := r.header.Values("Link")
	if len(links) != 2 {
		t.Fatalf("Link values %q, want two separate values", links)
	}
	wantLink := func(link, rel string, page int) {
		t.Helper()
		u, relPart, _ := strings.Cut(link, ">; ")
		if relPart != `rel="`+rel+`"` {
			t.Fatalf("link %q: want rel=%q", link, rel)
		}
		pu, err := url.Parse(strings.TrimPrefix(u, "<"))
		if err != nil || pu.Query().Get("page") != fmt.Sprint(page) || pu.Query().Get("access_token") != lt ||
			pu.Query().Get("limit") != "10" || !strings.HasPrefix(u, "<"+s.URL+"/api/v2/projects?") {
			t.Fatalf("link %q: want page=%d with limit and access_token echoed", link, page)
		}
	}
	wantLink(links[0], "previous", 1)
	wantLink(links[1], "next", 3)
	var list []map[string]any
	r.decode(t, &list)
	if len(list) != 10 {
		t.Fatalf("%d items, want 10", len(list))
	}

	// Last page: no next. page<1 means 1 and limit<1 means 10.
	r = call(t, s, "GET", "/api/v2/projects?limit=10&page=3", "", bearer(lt)...)
	r.decode(t, &list)
	if len(list) != 7 || len(r.header.Values("Link")) != 1 {
		t.Fatalf("page 3: %d items, links %q", len(list), r.header.Values("Link"))
	}
	r = call(t, s, "GET", "/api/v2/projects?limit=0&page=-4", "", bearer(lt)...)
	r.decode(t, &list)
	if len(list) != 10 || len(r.header.Values("Link")) != 1 {
		t.Fatalf("defaults: %d items, links %q", len(list), r.header.Values("Link"))
	}
	call(t, s, "GET", "/api/v2/projects?page=x", "", bearer(lt)...).wantProblem(t, 400, "")

	// No next link once (page+1)*limit reaches 1000, although more exist.
	for i := 0; i < 1000; i++ {
		s.AddProject(s.Account.OrganizationID, "bulk")
	}
	r = call(t, s, "GET", "/api/v2/projects?limit=500&page=1", "", bearer(lt)...)
	r.decode(t, &list)
	if len(list) != 500 || len(r.header.Values("Link")) != 0 || r.header.Get("X-Result-Count") != "1027" {
		t.Fatalf("cap: %d items, links %q, count %s", len(list), r.header.Values("Link"), r.header.Get("X-Result-Count"))
	}
	r = call(t, s, "GET", "/api/v2/projects?limit=5000", "", bearer(lt)...)
	r.decode(t, &list)
	if len(list) != 1000 {
		t.Fatalf("limit=5000 gave %d, want the maximum 1000", len(list))
	}
}

func TestViewTokenJSONShape(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	lt := mustLogin(t, s)
	r := call(t, s, "POST", "/api/v2/projects/"+s.Account.Projects[0].ID+"/tokens", "", bearer(lt)...)
	var m map[string]json.RawMessage
	r.decode(t, &m)
	for _, k := range []string{"id", "organization_id", "project_id", "scopes", "is_disabled", "is_suspended", "created_utc", "updated_utc"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing from %s", k, r.body)
		}
	}
	if _, ok := m["notes"]; ok {
		t.Errorf("null notes present in %s", r.body)
	}
}
