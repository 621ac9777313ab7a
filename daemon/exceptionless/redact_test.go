package exceptionless_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
)

// secrets is what must never show up in an error.
type secrets struct {
	userTok, clientTok exceptionless.Token
	otherTok           exceptionless.Token   // bound to another user: refused on delete
	deadIDs            []exceptionless.Token // valid-looking ids the server does not know
	password           string
}

func (s secrets) list() []string {
	out := []string{s.userTok.Reveal(), s.clientTok.Reveal(), s.otherTok.Reveal(), s.password}
	for _, id := range s.deadIDs {
		out = append(out, id.Reveal())
	}
	return out
}

// everyMethod calls every Client method in ways that fail and returns the
// errors by name.
func everyMethod(ctx context.Context, c *exceptionless.Client, email string, sec secrets, projectID string) map[string]error {
	errs := map[string]error{}
	add := func(name string, err error) { errs[name] = err }
	_, err := c.Login(ctx, email, []byte(sec.password+"x"))
	add("Login wrong password", err)
	_, err = c.Login(ctx, email, []byte("short"))
	add("Login 422", err)
	_, err = c.Me(ctx, sec.clientTok)
	add("Me", err)
	_, err = c.Organizations(ctx, sec.clientTok)
	add("Organizations", err)
	_, err = c.Projects(ctx, sec.clientTok)
	add("Projects", err)
	_, err = c.CreateProjectToken(ctx, sec.clientTok, projectID, exceptionless.NewToken{})
	add("CreateProjectToken", err)
	_, err = c.ProjectTokens(ctx, sec.clientTok, projectID)
	add("ProjectTokens", err)
	add("DeleteTokens unknown", c.DeleteTokens(ctx, sec.userTok, sec.deadIDs...))
	add("DeleteTokens forbidden", c.DeleteTokens(ctx, sec.clientTok, sec.clientTok))
	add("DeleteTokens mixed", c.DeleteTokens(ctx, sec.userTok, append([]exceptionless.Token{sec.clientTok, sec.otherTok}, sec.deadIDs...)...))
	_, err = c.SetTokenDisabled(ctx, sec.userTok, sec.deadIDs[0], true)
	add("SetTokenDisabled unknown", err)
	_, err = c.SetTokenDisabled(ctx, sec.clientTok, sec.clientTok, true)
	add("SetTokenDisabled forbidden", err)
	_, err = c.ProjectConfig(ctx, sec.userTok)
	add("ProjectConfig", err)
	add("PostEvent", c.PostEvent(ctx, sec.userTok, []byte(`{}`)))
	return errs
}

// checkErrors fails if any error is nil (when wantAll) or reveals a secret
// through Error, fmt verbs or the fields of an *APIError.
func checkErrors(t *testing.T, errs map[string]error, sec secrets, wantAll bool) {
	t.Helper()
	for name, err := range errs {
		if err == nil {
			if wantAll {
				t.Errorf("%s: no error", name)
			}
			continue
		}
		texts := []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), fmt.Sprintf("%s", err)}
		for e := err; e != nil; e = errors.Unwrap(e) {
			texts = append(texts, e.Error(), fmt.Sprintf("%#v", e))
		}
		var ae *exceptionless.APIError
		if errors.As(err, &ae) {
			texts = append(texts, ae.Title, ae.Path, strings.Join(ae.Fields, ","))
		}
		for _, text := range texts {
			for _, s := range sec.list() {
				if strings.Contains(text, s) {
					t.Errorf("%s: error reveals a secret: %s", name, text)
				}
			}
		}
	}
}

func newSecrets(t *testing.T, s *exceptionlesstest.Server, c *exceptionless.Client) secrets {
	t.Helper()
	ctx := context.Background()
	ut := login(t, s, c)
	vt, err := c.CreateProjectToken(ctx, ut, s.Account.Projects[0].ID, exceptionless.NewToken{})
	if err != nil {
		t.Fatal(err)
	}
	other := s.AddUser(exceptionlesstest.NewUser{Email: "other@example.test", Password: "secret-pw",
		OrganizationIDs: []string{s.Account.OrganizationID}})
	ot := s.AddAccessToken(exceptionlesstest.NewAccessToken{ProjectID: s.Account.Projects[0].ID, UserID: other})
	return secrets{userTok: ut, clientTok: vt.ID, otherTok: exceptionless.Token(ot), password: s.Account.Password,
		deadIDs: []exceptionless.Token{"Zq8Jx2LmN4pR6sT8vW0yA1bC3dE5fG7hI9jK0lM2", "dead-beef-dead-beef-dead-beef"}}
}

func TestErrorsNeverRevealTokens(t *testing.T) {
	ctx := context.Background()

	t.Run("faithful server", func(t *testing.T) {
		s, _, c := setup(t, exceptionlesstest.Config{})
		sec := newSecrets(t, s, c)
		errs := everyMethod(ctx, c, s.Account.Email, sec, s.Account.Projects[0].ID)
		checkErrors(t, errs, sec, true)
		var pe *exceptionless.PartialDeleteError
		if !errors.As(errs["DeleteTokens mixed"], &pe) || pe.Failed != 1 || pe.Deleted != 1 {
			t.Errorf("mixed DELETE: %v", errs["DeleteTokens mixed"])
		}
		if !errors.Is(errs["SetTokenDisabled unknown"], exceptionless.ErrNotFound) {
			t.Errorf("PATCH unknown id: %v, want ErrNotFound", errs["SetTokenDisabled unknown"])
		}
	})

	t.Run("closed server", func(t *testing.T) {
		s, _, c := setup(t, exceptionlesstest.Config{})
		sec := newSecrets(t, s, c)
		s.Close()
		errs := everyMethod(ctx, c, s.Account.Email, sec, s.Account.Projects[0].ID)
		checkErrors(t, errs, sec, true)
		if err := errs["SetTokenDisabled unknown"]; !strings.Contains(err.Error(), "PATCH /api/v2/tokens/[REDACTED]") {
			t.Errorf("transport error %q does not name the redacted path", err)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		s, _, c := setup(t, exceptionlesstest.Config{})
		sec := newSecrets(t, s, c)
		release := make(chan struct{})
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-release // the server does not notice the client leave while a body is unread
		}))
		defer slow.Close()
		defer close(release)
		cs, _ := exceptionless.New(slow.URL, &http.Client{Timeout: 50 * time.Millisecond})
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cs.SetTokenDisabled(tctx, sec.userTok, sec.clientTok, true)
		checkErrors(t, map[string]error{"timeout": err}, sec, true)
	})

	t.Run("hostile server", func(t *testing.T) {
		s, _, c := setup(t, exceptionlesstest.Config{})
		sec := newSecrets(t, s, c)
		// Echoes every credential it can see into the places an error is
		// built from: title, error keys, Location, a plain body, a redirect.
		hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			echo := r.Header.Get("Authorization") + " " + r.URL.String() + " " + string(body)
			w.Header().Set("Location", "http://x.test/api/v2/tokens/"+strings.TrimPrefix(r.URL.Path, "/api/v2/tokens/")+"?access_token="+r.Header.Get("Authorization"))
			switch {
			case r.Method == "DELETE":
				ids := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v2/tokens/"), ",")
				var failure []map[string]any
				for _, id := range ids {
					failure = append(failure, map[string]any{"id": id, "message": echo})
				}
				w.WriteHeader(400)
				json.NewEncoder(w).Encode(map[string]any{"workers": []string{}, "success": []string{}, "failure": failure})
			case r.Method == "PATCH":
				w.WriteHeader(http.StatusFound)
			case r.Method == "GET" && strings.HasSuffix(r.URL.Path, "config"):
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(500)
				io.WriteString(w, echo)
			default:
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(400)
				json.NewEncoder(w).Encode(map[string]any{"title": echo, "errors": map[string][]string{echo: {echo}, "ok_key": {echo}}})
			}
		}))
		defer hostile.Close()
		hc, _ := exceptionless.New(hostile.URL, nil)
		errs := everyMethod(ctx, hc, s.Account.Email, sec, s.Account.Projects[0].ID)
		checkErrors(t, errs, sec, true)
		var ae *exceptionless.APIError
		if !errors.As(errs["Me"], &ae) || len(ae.Fields) != 1 || ae.Fields[0] != "ok_key" {
			t.Errorf("Me fields %v, want only the well-formed key", ae)
		}
		if !errors.As(errs["SetTokenDisabled unknown"], &ae) || ae.Status != http.StatusFound {
			t.Errorf("redirect was followed or hidden: %v", errs["SetTokenDisabled unknown"])
		}
	})
}

func TestTokenValuesRedactedInViews(t *testing.T) {
	s, _, c := setup(t, exceptionlesstest.Config{})
	sec := newSecrets(t, s, c)
	vt, err := c.CreateProjectToken(context.Background(), sec.userTok, s.Account.Projects[0].ID, exceptionless.NewToken{})
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{fmt.Sprintf("%v", vt), fmt.Sprintf("%+v", vt), fmt.Sprintf("%#v", vt)} {
		if strings.Contains(text, vt.ID.Reveal()) {
			t.Errorf("formatted ViewToken reveals its id: %s", text)
		}
	}
}
