package exceptionless

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
	"github.com/exless/exless/internal/fuzzcorpus"
)

// TestWriteFuzzCorpus writes the seed corpus of FuzzResponses when run with
// -write-corpus (see internal/fuzzcorpus): the answers the Exceptionless
// test server gives to every call of this client, successes and failures,
// with paging headers. Token values in them become fuzzToken, so that the
// target's check that no error reveals the token has one to look for.
func TestWriteFuzzCorpus(t *testing.T) {
	if !fuzzcorpus.Writing() {
		t.Skip("writes testdata/fuzz only with -write-corpus")
	}
	h := exceptionlesstest.NewHandler(exceptionlesstest.Config{})
	type answer struct {
		label                    string
		status                   int
		ctype, body, link, count string
	}
	var (
		mu      sync.Mutex
		answers []answer
		label   string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		mu.Lock()
		answers = append(answers, answer{label, rec.Code, rec.Header().Get("Content-Type"), rec.Body.String(),
			rec.Header().Get("Link"), rec.Header().Get("X-Result-Count")})
		mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	defer srv.Close()
	c, err := New(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	acct := h.Account
	web := acct.Projects[0].ID
	// Enough projects for a second page.
	for i := range pageLimit + 5 {
		h.AddProject(acct.OrganizationID, fmt.Sprintf("svc-%03d", i))
	}

	step := func(l string) { mu.Lock(); label = l; mu.Unlock() }
	step("login-bad-password")
	_, _ = c.Login(ctx, acct.Email, []byte("not-the-password"))
	step("login-invalid-email")
	_, _ = c.Login(ctx, "not an email", []byte("x"))
	step("login")
	tok, err := c.Login(ctx, acct.Email, []byte(acct.Password))
	if err != nil {
		t.Fatal(err)
	}
	step("me")
	_, _ = c.Me(ctx, tok)
	step("me-bad-token")
	_, _ = c.Me(ctx, Token(strings.Repeat("x", 40)))
	step("organizations")
	_, _ = c.Organizations(ctx, tok)
	step("projects")
	_, _ = c.Projects(ctx, tok)
	step("create-token")
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	vt, err := c.CreateProjectToken(ctx, tok, web, NewToken{Scopes: []string{"client"}, Notes: "exless", ExpiresUTC: &exp})
	if err != nil {
		t.Fatal(err)
	}
	step("create-token-unknown-project")
	_, _ = c.CreateProjectToken(ctx, tok, "000000000000000000000000", NewToken{})
	step("project-tokens")
	_, _ = c.ProjectTokens(ctx, tok, web)
	step("disable-token")
	_, _ = c.SetTokenDisabled(ctx, tok, vt.ID, true)
	step("project-config")
	_, _ = c.ProjectConfig(ctx, vt.ID)
	step("delete-tokens")
	_ = c.DeleteTokens(ctx, tok, vt.ID, Token(strings.Repeat("y", 40)))
	step("delete-tokens-again")
	_ = c.DeleteTokens(ctx, tok, vt.ID)

	// Every token the server holds or held, as it may appear in a body.
	secrets := []string{tok.Reveal(), vt.ID.Reveal()}
	for _, ti := range h.Tokens() {
		secrets = append(secrets, ti.ID)
	}
	corp := fuzzcorpus.New(t, "FuzzResponses")
	for _, a := range answers {
		body, link := a.body, strings.ReplaceAll(a.link, srv.URL, "https://api.exceptionless.test")
		for _, s := range secrets {
			body = strings.ReplaceAll(body, s, fuzzToken.Reveal())
			link = strings.ReplaceAll(link, s, fuzzToken.Reveal())
		}
		corp.Add(fmt.Sprintf("%s-%d", a.label, a.status), uint16(a.status), a.ctype, body, link, a.count)
	}
	corp.Done()
}
