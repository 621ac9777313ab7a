package exceptionless

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Login exchanges email and password for the user's login token
// (POST /api/v2/auth/login). The server returns the same shared token to
// every login until it expires (three months after it was first created),
// so logging in again does not invalidate tokens handed out before.
//
// Every call counts against the login throttle, successes included. A 401
// error matches ErrUnauthorized and exactly one of ErrLoginDenied,
// ErrLoginFailed or ErrLoginRejected. A 422 is an *APIError naming the
// invalid fields. The password never appears in an error; the caller may
// clear it after the call returns.
func (c *Client) Login(ctx context.Context, email string, password []byte) (Token, error) {
	body := loginBody(email, password)
	defer clear(body) // the encoded password; the server needs it only once
	r := &request{method: http.MethodPost, path: "/api/v2/auth/login", body: body, scrub: scrubber{passwords: [][]byte{password}}}
	rep, err := c.do(ctx, r)
	if err != nil {
		return "", err
	}
	if rep.status == http.StatusUnauthorized {
		e := r.apiError(rep)
		switch e.Title {
		case "Login denied.":
			e.Err = ErrLoginDenied
		case "Login failed.":
			e.Err = ErrLoginFailed
		default:
			e.Err = ErrLoginRejected
		}
		return "", e
	}
	return r.tokenAnswer(rep, "login")
}

// tokenAnswer reads the {"token": …} of a 200 from login or change-password.
func (r *request) tokenAnswer(rep reply, what string) (Token, error) {
	if err := r.expect(rep, http.StatusOK); err != nil {
		return "", err
	}
	var out struct {
		Token Token `json:"token"`
	}
	if err := r.decode(rep, &out); err != nil {
		return "", err
	}
	if out.Token.IsZero() {
		return "", r.errorf("%s answer has no token", what)
	}
	return out.Token, nil
}

// ChangePassword changes the user's password (POST
// /api/v2/auth/change-password) and returns the new login token the server
// issues. The server deletes every token bound to the user, the shared login
// token included, so tok and every copy of it stop working; project and
// organization keys survive. A wrong current password or an unacceptable new
// one is an *APIError with status 422 naming the field (current_password or
// password). Neither password appears in an error.
func (c *Client) ChangePassword(ctx context.Context, tok Token, current, next []byte) (Token, error) {
	b := make([]byte, 0, 48+2*len(current)+2*len(next))
	b = append(b, `{"current_password":`...)
	b = appendJSONString(b, current)
	b = append(b, `,"password":`...)
	b = appendJSONString(b, next)
	b = append(b, '}')
	defer clear(b)
	r := &request{method: http.MethodPost, path: "/api/v2/auth/change-password", tok: tok, body: b,
		scrub: scrubber{passwords: [][]byte{current, next}}}
	rep, err := c.do(ctx, r)
	if err != nil {
		return "", err
	}
	return r.tokenAnswer(rep, "change-password")
}

// loginBody encodes {"email":…,"password":…} into a fresh byte slice that
// the caller can clear, which a string built by encoding/json would not
// allow.
func loginBody(email string, password []byte) []byte {
	b := make([]byte, 0, 32+len(email)+2*len(password))
	b = append(b, `{"email":`...)
	b = appendJSONString(b, []byte(email))
	b = append(b, `,"password":`...)
	b = appendJSONString(b, password)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, replacing invalid UTF-8 with
// U+FFFD as encoding/json does.
func appendJSONString(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\ufffd`...)
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			b = append(b, s[:n]...)
		}
		s = s[n:]
	}
	return append(b, '"')
}

// Me returns the user that tok belongs to (GET /api/v2/users/me). It is
// also the way to check a login token: ErrUnauthorized means it is no
// longer valid.
func (c *Client) Me(ctx context.Context, tok Token) (User, error) {
	var u User
	err := c.getJSON(ctx, tok, "/api/v2/users/me", &u)
	return u, err
}

// Organizations returns the caller's organizations (not paged).
func (c *Client) Organizations(ctx context.Context, tok Token) ([]Organization, error) {
	var orgs []Organization
	if err := c.getJSON(ctx, tok, "/api/v2/organizations", &orgs); err != nil {
		return nil, err
	}
	return orgs, nil
}

// Projects returns every project in the caller's organizations, following
// pages until the server's count is reached.
func (c *Client) Projects(ctx context.Context, tok Token) ([]Project, error) {
	return getAll[Project](ctx, c, tok, "/api/v2/projects")
}

// CreateProjectToken creates an access token for a project (POST
// /api/v2/projects/{id}/tokens) with the login token tok. Access tokens
// cannot create tokens (ErrForbidden).
func (c *Client) CreateProjectToken(ctx context.Context, tok Token, projectID string, nt NewToken) (ViewToken, error) {
	if !validID(projectID, false) {
		return ViewToken{}, errors.New("exceptionless: invalid project id")
	}
	body, err := json.Marshal(nt)
	if err != nil {
		return ViewToken{}, err
	}
	r := &request{method: http.MethodPost, path: "/api/v2/projects/" + projectID + "/tokens", tok: tok, body: body}
	var vt ViewToken
	err = c.roundTrip(ctx, r, &vt, http.StatusCreated)
	return vt, err
}

// ProjectTokens lists a project's access tokens, oldest first, including
// disabled, suspended and expired ones.
func (c *Client) ProjectTokens(ctx context.Context, tok Token, projectID string) ([]ViewToken, error) {
	if !validID(projectID, false) {
		return nil, errors.New("exceptionless: invalid project id")
	}
	return getAll[ViewToken](ctx, c, tok, "/api/v2/projects/"+projectID+"/tokens")
}

// DeleteTokens deletes access tokens (DELETE /api/v2/tokens/{id,…}).
// Deleting takes effect at once. If the server refuses some of the ids it
// still deletes the others and the error is a *PartialDeleteError; ids it
// does not know are ignored unless none is known (ErrNotFound).
func (c *Client) DeleteTokens(ctx context.Context, tok Token, ids ...Token) error {
	if len(ids) == 0 {
		return errors.New("exceptionless: delete tokens: no ids")
	}
	raw := make([]string, len(ids))
	for i, id := range ids {
		if !validID(id.Reveal(), true) {
			return errors.New("exceptionless: delete tokens: invalid token id")
		}
		raw[i] = id.Reveal()
	}
	r := &request{method: http.MethodDelete, path: "/api/v2/tokens/" + strings.Join(raw, ","), tok: tok,
		scrub: scrubber{secrets: raw}}
	rep, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	if rep.status == http.StatusBadRequest {
		var mixed struct {
			Success []Token `json:"success"`
			Failure []struct {
				ID Token `json:"id"`
			} `json:"failure"`
		}
		if json.Unmarshal(rep.body, &mixed) == nil && mixed.Failure != nil {
			e := &PartialDeleteError{Requested: len(ids), Deleted: len(mixed.Success), Failed: len(mixed.Failure)}
			for _, f := range mixed.Failure {
				e.FailedIDs = append(e.FailedIDs, f.ID)
			}
			return e
		}
	}
	return r.expect(rep, http.StatusAccepted, http.StatusOK, http.StatusNoContent)
}

// SetTokenDisabled disables or re-enables an access token (PATCH
// /api/v2/tokens/{id}). A disabled token gets 401 at once.
func (c *Client) SetTokenDisabled(ctx context.Context, tok Token, id Token, disabled bool) (ViewToken, error) {
	if !validID(id.Reveal(), true) {
		return ViewToken{}, errors.New("exceptionless: invalid token id")
	}
	body, _ := json.Marshal(struct {
		IsDisabled bool `json:"is_disabled"`
	}{disabled})
	r := &request{method: http.MethodPatch, path: "/api/v2/tokens/" + id.Reveal(), tok: tok, body: body,
		scrub: scrubber{secrets: []string{id.Reveal()}}}
	var vt ViewToken
	err := c.roundTrip(ctx, r, &vt, http.StatusOK)
	return vt, err
}

// ProjectConfig returns the configuration of the project a client token
// belongs to (GET /api/v2/projects/config). It is the way to check a client
// token; the login token gets ErrUnauthorized here because it has no project.
func (c *Client) ProjectConfig(ctx context.Context, clientTok Token) (ClientConfig, error) {
	var cfg ClientConfig
	err := c.getJSON(ctx, clientTok, "/api/v2/projects/config", &cfg)
	if err == nil && cfg.Settings == nil {
		cfg.Settings = map[string]string{}
	}
	return cfg, err
}

// PostEvent submits a JSON event body (one event or an array) with a client
// token (POST /api/v2/events). The server answers 202 and processes events
// later.
func (c *Client) PostEvent(ctx context.Context, clientTok Token, body []byte) error {
	if body == nil {
		body = []byte{}
	}
	r := &request{method: http.MethodPost, path: "/api/v2/events", tok: clientTok, body: body}
	return c.roundTrip(ctx, r, nil, http.StatusAccepted)
}

func (c *Client) getJSON(ctx context.Context, tok Token, path string, v any) error {
	return c.roundTrip(ctx, &request{method: http.MethodGet, path: path, tok: tok}, v, http.StatusOK)
}

// roundTrip sends r, checks the status against want and decodes the answer
// into v unless v is nil.
func (c *Client) roundTrip(ctx context.Context, r *request, v any, want ...int) error {
	rep, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	if err := r.expect(rep, want...); err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	return r.decode(rep, v)
}
