package exceptionlesstest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLoginReturnsSharedTokenUntilExpiry(t *testing.T) {
	s, clk := newClockServer(t, Config{})
	first := mustLogin(t, s)
	clk.Advance(time.Hour)
	if again := mustLogin(t, s); again != first {
		t.Fatal("second login returned a different token, want the same shared one")
	}
	info, ok := s.LoginToken(s.Account.Email)
	if !ok || info.ID != first || info.Kind != "authentication" {
		t.Fatalf("LoginToken = %+v, %v; want the first token", info, ok)
	}
	// Expiry is fixed at creation + 3 months; the later login did not move it.
	want := time.Date(2026, 6, 2, 10, 0, 0, 0, time.UTC)
	if info.ExpiresUTC == nil || !info.ExpiresUTC.Equal(want) {
		t.Fatalf("expires %v, want %v", info.ExpiresUTC, want)
	}

	clk.Set(want.Add(time.Second))
	r := call(t, s, "GET", "/api/v2/users/me", "", bearer(first)...)
	r.wantProblem(t, 401, "")
	second := mustLogin(t, s)
	if second == first {
		t.Fatal("login after expiry returned the expired token")
	}
	if r := call(t, s, "GET", "/api/v2/users/me", "", bearer(second)...); r.status != 200 {
		t.Fatalf("new token: status %d", r.status)
	}
	if again := mustLogin(t, s); again != second {
		t.Fatal("login after renewal did not return the new shared token")
	}
}

func TestLoginExpireTokenHook(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	first := mustLogin(t, s)
	if !s.ExpireToken(first) {
		t.Fatal("ExpireToken: token not found")
	}
	if second := mustLogin(t, s); second == first {
		t.Fatal("login after ExpireToken returned the expired token")
	}
}

func TestLoginSixthAttemptDeniedWithRightPassword(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	for i := 1; i <= 5; i++ {
		login(t, s, s.Account.Email, "wrong-password", "192.0.2.1").wantProblem(t, 401, "Login failed.")
	}
	login(t, s, s.Account.Email, s.Account.Password, "192.0.2.2").wantProblem(t, 401, "Login denied.")
	// Every attempt counts, the denied one too.
	login(t, s, s.Account.Email, s.Account.Password, "192.0.2.3").wantProblem(t, 401, "Login denied.")
	if n := s.LoginAttempts(); n != 7 {
		t.Fatalf("LoginAttempts = %d, want 7", n)
	}
	// Email matching is trimmed and case-insensitive, so the counter is shared.
	login(t, s, "  "+strings.ToUpper(s.Account.Email), s.Account.Password, "192.0.2.4").wantProblem(t, 401, "Login denied.")
}

func TestLoginSuccessResetsEmailCounter(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	for i := 0; i < 4; i++ {
		login(t, s, s.Account.Email, "wrong-password", "192.0.2.1").wantProblem(t, 401, "Login failed.")
	}
	mustLogin(t, s) // the 5th attempt succeeds and deletes the counter
	for i := 0; i < 5; i++ {
		login(t, s, s.Account.Email, "wrong-password", "192.0.2.1").wantProblem(t, 401, "Login failed.")
	}
	login(t, s, s.Account.Email, s.Account.Password, "192.0.2.1").wantProblem(t, 401, "Login denied.")
}

func TestLoginRepeatedSuccessesNeverThrottle(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	// Each success deletes the email counter and gives back its IP count.
	for i := 0; i < 30; i++ {
		mustLogin(t, s)
	}
}

func TestLoginWindowEndsAtQuarterHour(t *testing.T) {
	s, clk := newClockServer(t, Config{})
	clk.Set(time.Date(2026, 3, 2, 10, 14, 0, 0, time.UTC))
	for i := 0; i < 5; i++ {
		login(t, s, s.Account.Email, "wrong-password", "192.0.2.1")
	}
	clk.Set(time.Date(2026, 3, 2, 10, 14, 59, 0, time.UTC))
	login(t, s, s.Account.Email, s.Account.Password, "192.0.2.1").wantProblem(t, 401, "Login denied.")
	// One second later the wall-clock window is over: not a sliding window.
	clk.Set(time.Date(2026, 3, 2, 10, 15, 0, 0, time.UTC))
	mustLogin(t, s)
}

func TestLoginWindowNotSliding(t *testing.T) {
	s, clk := newClockServer(t, Config{})
	// Failures at 10:15:00 and a denial still at 10:29:59, then free at 10:30.
	clk.Set(time.Date(2026, 3, 2, 10, 15, 0, 0, time.UTC))
	for i := 0; i < 5; i++ {
		login(t, s, s.Account.Email, "wrong-password", "192.0.2.1")
	}
	clk.Set(time.Date(2026, 3, 2, 10, 29, 59, 0, time.UTC))
	login(t, s, s.Account.Email, s.Account.Password, "192.0.2.1").wantProblem(t, 401, "Login denied.")
	clk.Set(time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC))
	mustLogin(t, s)
}

func TestLoginIPLimit(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	const ip = "198.51.100.7"
	for i := 1; i <= 15; i++ {
		login(t, s, fmt.Sprintf("nobody%d@example.test", i), "wrong-password", ip).wantProblem(t, 401, "Login failed.")
	}
	// The 16th attempt from that IP is denied, even for a good account.
	login(t, s, s.Account.Email, s.Account.Password, ip).wantProblem(t, 401, "Login denied.")
	// Another IP is not affected, and that account's own counter is at 1.
	mustLogin(t, s)
}

func TestLoginFailures(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	s.AddUser(NewUser{Email: "off@example.test", Password: "secret-pw", Inactive: true})
	s.AddUser(NewUser{Email: "oauth@example.test"})
	s.AddUser(NewUser{Email: "new@example.test", Password: "secret-pw", Unverified: true})
	for _, tc := range []struct{ email, password string }{
		{"unknown@example.test", "secret-pw"},
		{s.Account.Email, "wrong-password"},
		{"off@example.test", "secret-pw"},
		{"oauth@example.test", "secret-pw"},
	} {
		t.Run(tc.email, func(t *testing.T) {
			login(t, s, tc.email, tc.password, "192.0.2.9").wantProblem(t, 401, "Login failed.")
		})
	}
	// An unverified email does not block login.
	login(t, s, "new@example.test", "secret-pw", "192.0.2.9").wantStatus(t, 200)
}

func TestLoginValidation(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	long := strings.Repeat("p", 101)
	for _, tc := range []struct {
		name, body, ctype string
		status            int
		keys              []string
	}{
		{"missing email", `{"password":"secret-pw"}`, "", 422, []string{"email"}},
		{"blank email", `{"email":"   ","password":"secret-pw"}`, "", 422, []string{"email"}},
		{"missing both", `{}`, "", 422, []string{"email", "password"}},
		{"short password", `{"email":"a@b.c","password":"12345"}`, "", 422, []string{"password"}},
		{"long password", `{"email":"a@b.c","password":"` + long + `"}`, "", 422, []string{"password"}},
		{"invite token length", `{"email":"a@b.c","password":"secret-pw","invite_token":"abc"}`, "", 422, []string{"invite_token"}},
		{"camelCase ignored", `{"email":"a@b.c","passWord_":"secret-pw"}`, "", 422, []string{"password"}},
		{"null email", `{"email":null,"password":"secret-pw"}`, "", 400, nil},
		{"null password", `{"email":"a@b.c","password":null}`, "", 400, nil},
		{"number email", `{"email":5,"password":"secret-pw"}`, "", 400, nil},
		{"bad json", `{"email":`, "", 400, nil},
		{"array", `[]`, "", 400, nil},
		{"text body", `email=a&password=b`, "text/plain", 415, nil},
		{"form body", `email=a&password=b`, "application/x-www-form-urlencoded", 415, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.ctype != "" {
				hdr = []string{"Content-Type", tc.ctype}
			}
			r := call(t, s, "POST", "/api/v2/auth/login", tc.body, hdr...)
			p := r.wantProblem(t, tc.status, "")
			if tc.status == 422 {
				if p.Title != "One or more validation errors occurred." {
					t.Errorf("title %q", p.Title)
				}
				if len(p.Errors) != len(tc.keys) {
					t.Errorf("errors %v, want keys %v", p.Errors, tc.keys)
				}
				for _, k := range tc.keys {
					if len(p.Errors[k]) == 0 {
						t.Errorf("errors %v lack key %q", p.Errors, k)
					}
				}
			}
		})
	}
	t.Run("empty body", func(t *testing.T) {
		r := call(t, s, "POST", "/api/v2/auth/login", "")
		r.wantProblem(t, 400, "")
	})
	if n := s.LoginAttempts(); n != 0 {
		t.Fatalf("LoginAttempts = %d after rejected bodies, want 0 (validation runs first)", n)
	}
}

func TestLoginFieldNamesCaseInsensitive(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	body := fmt.Sprintf(`{"EMAIL":%q,"Password":%q}`, "  "+strings.ToUpper(s.Account.Email)+" ", s.Account.Password)
	call(t, s, "POST", "/api/v2/auth/login", body).wantStatus(t, 200)
}

func TestLoginLegacyTitles(t *testing.T) {
	s, _ := newClockServer(t, Config{Legacy: true})
	for i := 0; i < 5; i++ {
		login(t, s, s.Account.Email, "wrong-password", "192.0.2.1").wantProblem(t, 401, "Unauthorized")
	}
	login(t, s, s.Account.Email, s.Account.Password, "192.0.2.1").wantProblem(t, 401, "Unauthorized")
}

func TestLoginRacingAttempts(t *testing.T) {
	s, _ := newClockServer(t, Config{})
	// Counting happens before the check, but each success resets the
	// counter; failures racing in between are what lock an account.
	done := make(chan int, 12)
	for i := 0; i < 12; i++ {
		go func() {
			// Not call(): t.Fatal must not run outside the test goroutine.
			resp, err := s.Client().Post(s.URL+"/api/v2/auth/login", "application/json",
				strings.NewReader(loginBody(s.Account.Email, "wrong-password")))
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	for i := 0; i < 12; i++ {
		if st := <-done; st != 401 {
			t.Errorf("status %d, want 401", st)
		}
	}
	login(t, s, s.Account.Email, s.Account.Password, "192.0.2.1").wantProblem(t, 401, "Login denied.")
	if n := s.LoginAttempts(); n != 13 {
		t.Fatalf("LoginAttempts = %d, want 13", n)
	}
}

func TestNextQuarterHour(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"2026-03-02T10:00:00Z", "2026-03-02T10:15:00Z"},
		{"2026-03-02T10:14:59.999Z", "2026-03-02T10:15:00Z"},
		{"2026-03-02T10:15:00Z", "2026-03-02T10:30:00Z"},
		{"2026-03-02T23:59:00Z", "2026-03-03T00:00:00Z"},
		{"2026-03-02T12:50:00+05:30", "2026-03-02T07:30:00Z"}, // 07:20 UTC
	} {
		in, _ := time.Parse(time.RFC3339Nano, tc.in)
		want, _ := time.Parse(time.RFC3339, tc.want)
		if got := nextQuarterHour(in); !got.Equal(want) {
			t.Errorf("nextQuarterHour(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
