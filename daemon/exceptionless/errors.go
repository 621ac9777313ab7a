package exceptionless

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"
)

// Sentinel errors. An *APIError matches the status sentinels through
// errors.Is; login failures additionally match one of the login sentinels.
var (
	// ErrUnauthorized means the server answered 401: the token is missing,
	// unknown, disabled, suspended or expired, or was deleted (for example by
	// a logout elsewhere, since the login token is shared).
	ErrUnauthorized = errors.New("exceptionless: unauthorized")
	// ErrForbidden means the server answered 403: the token is valid but
	// lacks the role, e.g. an access token on the tokens API.
	ErrForbidden = errors.New("exceptionless: forbidden")
	// ErrNotFound means the server answered 404.
	ErrNotFound = errors.New("exceptionless: not found")
	// ErrThrottled means the server answered 429: the API rate limit of the
	// caller's bucket (user, or organization for access tokens) is spent
	// until the next 15-minute wall-clock boundary.
	ErrThrottled = errors.New("exceptionless: rate limited")

	// ErrLoginDenied means the login throttle refused the attempt (401
	// "Login denied."), whatever the password. Every further attempt before
	// the next 15-minute wall-clock boundary extends nothing but is refused
	// too, so the caller must not retry soon.
	ErrLoginDenied = errors.New("exceptionless: login denied by throttle")
	// ErrLoginFailed means the email is unknown, the account is inactive or
	// the password is wrong (401 "Login failed."). Retrying with the same
	// password only uses up the throttle.
	ErrLoginFailed = errors.New("exceptionless: login failed")
	// ErrLoginRejected is a login 401 whose title is neither of the above.
	// Servers up to v8.6.2 use one generic title for both cases, so the
	// caller cannot tell a wrong password from the throttle and should treat
	// it as possibly throttled.
	ErrLoginRejected = errors.New("exceptionless: login rejected (failed or throttled)")
)

// APIError is an error answer from the server. Its text holds the method, the
// redacted path, the status and the problem title; never the response body.
type APIError struct {
	Status int    // HTTP status code
	Title  string // problem+json title, sanitised; the status text if none
	Method string
	Path   string   // request path with token ids replaced by [REDACTED]
	Fields []string // validation error keys (422), sorted; never their values
	// Err is a more specific sentinel when one applies (the login
	// sentinels), else nil.
	Err error
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "exceptionless: %s %s: %d %s", e.Method, e.Path, e.Status, e.Title)
	if len(e.Fields) > 0 {
		fmt.Fprintf(&b, " (fields: %s)", strings.Join(e.Fields, ", "))
	}
	return b.String()
}

// Unwrap returns the specific sentinel, if any.
func (e *APIError) Unwrap() error { return e.Err }

// Is reports whether target is the status sentinel for e.Status.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == 401
	case ErrForbidden:
		return e.Status == 403
	case ErrNotFound:
		return e.Status == 404
	case ErrThrottled:
		return e.Status == 429
	}
	return false
}

// PartialDeleteError reports a DELETE of several tokens that the server
// answered with 400 and a mixed result. The deletions the server allowed
// have happened; the others have not. Its text gives counts, never ids.
type PartialDeleteError struct {
	Requested int
	Deleted   int
	Failed    int
	// FailedIDs are the ids the server refused. Token redacts itself, so
	// printing the error value does not reveal them.
	FailedIDs []Token
}

func (e *PartialDeleteError) Error() string {
	return fmt.Sprintf("exceptionless: delete tokens: %d of %d refused (%d deleted)", e.Failed, e.Requested, e.Deleted)
}

// transportError is a failure before any HTTP answer: dial, TLS, timeout,
// cancellation, or reading the body. It wraps the cause (not *url.Error,
// whose text and URL field carry the full request URL, token ids included)
// and holds a message scrubbed when it was made.
type transportError struct {
	msg string
	err error
}

func (e *transportError) Error() string { return e.msg }
func (e *transportError) Unwrap() error { return e.err }

// Redaction.

var redactedBytes = []byte(redacted)

// longRun is the shortest run of letters and digits that redactText treats
// as a secret. Token ids are 40 characters and OAuth tokens 64; object ids
// (24 hex) are not secrets and stay readable.
const longRun = 32

// redactText replaces every run of at least longRun ASCII letters and digits
// and the value of every access_token, api_key or apikey parameter.
func redactText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if k := queryKeyAt(s, i); k > 0 {
			b.WriteString(s[i : i+k])
			b.WriteString(redacted)
			i += k
			for i < len(s) && s[i] != '&' && s[i] != ' ' && s[i] != '"' && s[i] != '>' && s[i] != ';' {
				i++
			}
			continue
		}
		if isAlnum(s[i]) {
			j := i
			for j < len(s) && isAlnum(s[j]) {
				j++
			}
			if j-i >= longRun {
				b.WriteString(redacted)
			} else {
				b.WriteString(s[i:j])
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// queryKeyAt returns the length of "access_token=", "api_key=" or "apikey="
// if one starts at s[i] (case-insensitive), else 0.
func queryKeyAt(s string, i int) int {
	for _, k := range []string{"access_token=", "api_key=", "apikey="} {
		if len(s)-i >= len(k) && strings.EqualFold(s[i:i+len(k)], k) {
			return len(k)
		}
	}
	return 0
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// redactPath hides the segment after "tokens" (one id or a comma list) and
// any long run in other segments. The query is dropped: it is never needed to
// understand an error and may hold access_token.
func redactPath(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if i > 0 && segs[i-1] == "tokens" && s != "" && s != "default" {
			segs[i] = redacted
			continue
		}
		segs[i] = redactText(s)
	}
	return strings.Join(segs, "/")
}

// cleanTitle makes a server-provided title safe to print: control
// characters dropped, length capped, secrets redacted by the caller.
func cleanTitle(s string) string {
	const maxRunes = 200
	var b strings.Builder
	n := 0
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			continue
		}
		if n == maxRunes {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}

// cleanField keeps a validation key only if it looks like one (snake_case,
// possibly with dots or indexes), so a hostile server cannot smuggle text.
func cleanField(s string) string {
	if s == "" || len(s) > 64 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '_' || c == '.' || c == '-' || c == '[' || c == ']' || c == '$') {
			return ""
		}
	}
	return redactText(s)
}

// scrubber removes known secret values from text that is about to become
// part of an error. It lives only for one request and is never stored.
type scrubber struct {
	secrets   []string
	passwords [][]byte
}

// minSecret keeps a short or empty value from blanking ordinary text.
const minSecret = 8

func (s scrubber) scrub(text string) string {
	for _, v := range s.secrets {
		if len(v) >= minSecret {
			text = strings.ReplaceAll(text, v, redacted)
		}
	}
	for _, p := range s.passwords {
		if len(p) >= 6 && bytes.Contains([]byte(text), p) {
			text = string(bytes.ReplaceAll([]byte(text), p, redactedBytes))
		}
	}
	return redactText(text)
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "status " + strconv.Itoa(code)
}
