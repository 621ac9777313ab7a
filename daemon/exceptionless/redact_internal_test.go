package exceptionless

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedactPath(t *testing.T) {
	id := strings.Repeat("aB3", 13) + "x" // 40 characters
	for _, tc := range []struct{ in, want string }{
		{"/api/v2/tokens/" + id, "/api/v2/tokens/[REDACTED]"},
		{"/api/v2/tokens/" + id + "," + id, "/api/v2/tokens/[REDACTED]"},
		{"/api/v2/tokens/short-id", "/api/v2/tokens/[REDACTED]"},
		{"/api/v2/projects/65e0ac0000000000000000c1/tokens", "/api/v2/projects/65e0ac0000000000000000c1/tokens"},
		{"/api/v2/projects/65e0ac0000000000000000c1/tokens/default", "/api/v2/projects/65e0ac0000000000000000c1/tokens/default"},
		{"/api/v2/users/me?access_token=" + id, "/api/v2/users/me"},
		{"/x/" + id + "/y", "/x/[REDACTED]/y"},
	} {
		if got := redactPath(tc.in); got != tc.want {
			t.Errorf("redactPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactText(t *testing.T) {
	id := strings.Repeat("Zz9", 13) + "q"
	for _, tc := range []struct{ in, want string }{
		{`Get "http://h/api/v2/tokens/` + id + `": refused`, `Get "http://h/api/v2/tokens/[REDACTED]": refused`},
		{"x?access_token=short&y=1", "x?access_token=[REDACTED]&y=1"},
		{"APIKEY=abc def", "APIKEY=[REDACTED] def"},
		{"object 65e0ac0000000000000000c1 kept", "object 65e0ac0000000000000000c1 kept"},
		{"Bearer " + id + id, "Bearer [REDACTED]"},
	} {
		if got := redactText(tc.in); got != tc.want {
			t.Errorf("redactText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLoginBodyIsJSON(t *testing.T) {
	for _, pw := range []string{"plain-pass", `q"uo\te`, "new\nline\ttab\r\x00nul\x1f", "bad\xffutf8", "émoji😀<>&"} {
		body := loginBody("a@b.c", []byte(pw))
		var got struct{ Email, Password string }
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("loginBody(%q) = %s: %v", pw, body, err)
		}
		want := strings.ToValidUTF8(pw, "\uFFFD") // what encoding/json sends too
		if got.Email != "a@b.c" || got.Password != want {
			t.Errorf("loginBody(%q) decodes to %+v", pw, got)
		}
	}
}
