package exceptionless

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

const fuzzToken = Token("FuzzTokenFuzzTokenFuzzTokenFuzzToken0001")

// FuzzResponses answers the client with arbitrary status codes, headers
// (Link, X-Result-Count, Location, Content-Type) and bodies: every method
// must return a value or an error, never panic, and never put the token it
// sent into an error text.
func FuzzResponses(f *testing.F) {
	f.Add(uint16(200), "application/json", `[{"id":"537650f3b77efe23a47914f4","name":"web"}]`, `<http://x/?page=2>; rel="next"`, "1")
	f.Add(uint16(401), "application/problem+json", `{"title":"Login denied.","status":401}`, "", "")
	f.Add(uint16(422), "application/problem+json", `{"title":"x","errors":{"email":["required"]}}`, "", "")
	f.Add(uint16(400), "application/json", `{"workers":[],"success":[],"failure":[{"id":"x"}]}`, "", "")
	f.Add(uint16(201), "application/json", `{"id":"abc","expires_utc":"2016-01-11T20:05:59.7185672"}`, "", "")
	f.Fuzz(func(t *testing.T, status uint16, ctype, body, link, count string) {
		if status < 100 || status > 599 {
			status = 200
		}
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Paging must stop even if the server says "next" forever.
			if calls.Add(1) > 50 {
				w.WriteHeader(500)
				return
			}
			h := w.Header()
			if isValidHeader(ctype) {
				h.Set("Content-Type", ctype)
			}
			if isValidHeader(link) {
				h.Set("Link", link)
			}
			if isValidHeader(count) {
				h.Set("X-Result-Count", count)
			}
			h.Set("Location", "/api/v2/tokens/"+fuzzToken.Reveal())
			w.WriteHeader(int(status))
			_, _ = w.Write([]byte(body))
		}))
		defer srv.Close()
		c, err := New(srv.URL, srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		check := func(err error) {
			if err != nil && strings.Contains(err.Error(), fuzzToken.Reveal()) {
				t.Fatalf("an error reveals the token: %q", err)
			}
		}
		_, err = c.Login(ctx, "ops@example.test", []byte("password"))
		check(err)
		_, err = c.Me(ctx, fuzzToken)
		check(err)
		_, err = c.Projects(ctx, fuzzToken)
		check(err)
		_, err = c.ProjectTokens(ctx, fuzzToken, "537650f3b77efe23a47914f4")
		check(err)
		_, err = c.CreateProjectToken(ctx, fuzzToken, "537650f3b77efe23a47914f4", NewToken{})
		check(err)
		check(c.DeleteTokens(ctx, fuzzToken, fuzzToken))
		_, err = c.SetTokenDisabled(ctx, fuzzToken, fuzzToken, true)
		check(err)
	})
}

func isValidHeader(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return false
		}
	}
	return true
}
