package exceptionlesstest

import (
	"bytes"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/exless/exless/internal/testrun"
)

// bodyObject binds a JSON object body the way minimal APIs do: an empty
// body is 400 when required (an empty object otherwise), a body of another
// content type is 415, malformed JSON is 400.
func (q *req) bodyObject(required bool) (object, *response) {
	fail := func(status int) (object, *response) {
		r := q.problem(status, "", nil)
		return nil, &r
	}
	switch {
	case q.bodyErr:
		return fail(http.StatusBadRequest)
	case len(q.body) > maxBody:
		return fail(http.StatusRequestEntityTooLarge)
	case len(q.body) == 0 || !required && string(bytes.TrimSpace(q.body)) == "null":
		if required {
			return fail(http.StatusBadRequest)
		}
		return object{}, nil
	case !isJSONType(q.r):
		return fail(http.StatusUnsupportedMediaType)
	}
	o, ok := decodeObject(q.body)
	if !ok {
		return fail(http.StatusBadRequest)
	}
	return o, nil
}

// POST /api/v2/auth/login (AuthHandler).
func (h *Handler) login(q *req) response {
	o, bad := q.bodyObject(true)
	if bad != nil {
		return *bad
	}
	// Validation runs before the handler, so a 422 is not an attempt. An
	// explicit null for a required field fails binding (400) instead.
	errs := map[string][]string{}
	email, st := o.str("email")
	switch st {
	case null, badType:
		return q.problem(http.StatusBadRequest, "", nil)
	case absent:
		errs["email"] = []string{"The Email field is required."}
	case present:
		if strings.TrimSpace(email) == "" {
			errs["email"] = []string{"The Email field is required."}
		}
	}
	password, st := o.str("password")
	switch st {
	case null, badType:
		return q.problem(http.StatusBadRequest, "", nil)
	case absent:
		errs["password"] = []string{"The Password field is required."}
	case present:
		if n := utf8.RuneCountInString(password); n < 6 || n > 100 {
			errs["password"] = []string{"The field Password must be a string with a minimum length of 6 and a maximum length of 100."}
		}
	}
	invite, st := o.str("invite_token")
	switch {
	case st == badType:
		return q.problem(http.StatusBadRequest, "", nil)
	case st == present && len(invite) != 40:
		errs["invite_token"] = []string{"The field InviteToken must be a string with a minimum length of 40 and a maximum length of 40."}
	}
	if len(errs) > 0 {
		return q.validation(errs)
	}

	email = normEmail(email)
	h.loginAttempts++
	// Both counters go up before anything else, successes included.
	emailKey, ipKey := "user:"+email+":attempts", "ip:"+q.ip+":attempts"
	byEmail := incrLocked(h.loginCounters, emailKey, q.now)
	byIP := incrLocked(h.loginCounters, ipKey, q.now)
	if byEmail > 5 || byIP > 15 {
		return q.problem(http.StatusUnauthorized, h.loginTitle("Login denied."), nil)
	}
	u := h.userByEmailLocked(email)
	if u == nil || !u.active || !passwordOK(u, password) {
		return q.problem(http.StatusUnauthorized, h.loginTitle("Login failed."), nil)
	}
	delete(h.loginCounters, emailKey)
	if c := h.loginCounters[ipKey]; c != nil {
		c.n--
	}
	t := h.liveAuthTokenLocked(u, q.now)
	if t == nil {
		exp := q.now.UTC().AddDate(0, 3, 0)
		t = &token{id: newTokenID(), kind: authToken, userID: u.id, expires: &exp,
			created: q.now.UTC(), updated: q.now.UTC(), createdBy: u.id, seq: h.nextSeq()}
		h.tokens[t.id] = t
	}
	return q.json(http.StatusOK, map[string]string{"token": t.id})
}

// POST /api/v2/auth/change-password. On success every token bound to the
// user (its login tokens and user-bound keys) is deleted, the login counter
// is reset, and a new login token is returned; project and organization keys
// have no user and survive.
func (h *Handler) changePassword(q *req) response {
	if q.id.user == nil {
		return q.problem(http.StatusUnauthorized, "", nil)
	}
	o, bad := q.bodyObject(true)
	if bad != nil {
		return *bad
	}
	errs := map[string][]string{}
	fields := map[string]string{}
	for _, f := range []struct{ key, label string }{{"current_password", "CurrentPassword"}, {"password", "Password"}} {
		v, st := o.str(f.key)
		switch st {
		case null, badType:
			return q.problem(http.StatusBadRequest, "", nil)
		case absent:
			errs[f.key] = []string{"The " + f.label + " field is required."}
		case present:
			if n := utf8.RuneCountInString(v); n < 6 || n > 100 {
				errs[f.key] = []string{"The field " + f.label + " must be a string with a minimum length of 6 and a maximum length of 100."}
			}
		}
		fields[f.key] = v
		testrun.Secret(v) // made by the client (exless generates them): secrets of the run, refused or not
	}
	if len(errs) == 0 && fields["current_password"] == fields["password"] {
		errs["password"] = []string{"The new password must be different than the current password."}
	}
	if len(errs) > 0 {
		return q.validation(errs)
	}
	u := q.id.user
	if !passwordOK(u, fields["current_password"]) {
		return q.validation(map[string][]string{"current_password": {"The current password is incorrect."}})
	}
	u.password = fields["password"]
	for id, t := range h.tokens {
		if t.userID == u.id {
			delete(h.tokens, id)
		}
	}
	delete(h.loginCounters, "user:"+u.email+":attempts")
	exp := q.now.UTC().AddDate(0, 3, 0)
	t := &token{id: newTokenID(), kind: authToken, userID: u.id, expires: &exp,
		created: q.now.UTC(), updated: q.now.UTC(), createdBy: u.id, seq: h.nextSeq()}
	h.tokens[t.id] = t
	h.passwordChanges++
	return q.json(http.StatusOK, map[string]string{"token": t.id})
}

func (h *Handler) loginTitle(title string) string {
	if h.legacy {
		return http.StatusText(http.StatusUnauthorized)
	}
	return title
}

// GET /api/v2/auth/logout deletes the presented login token, which is
// shared, so every session of the user ends.
func (h *Handler) logout(q *req) response {
	switch {
	case q.id.basic:
		return q.problem(http.StatusForbidden, "Logout not supported", nil)
	case q.id.access:
		return q.problem(http.StatusForbidden, "Logout not supported for current user access token", nil)
	}
	delete(h.tokens, q.id.tok.id)
	return empty(http.StatusOK)
}

// GET /api/v2/users/me. An access token with scope user passes the policy
// but has no user to show: 401.
func (h *Handler) me(q *req) response {
	if q.id.user == nil {
		return q.problem(http.StatusUnauthorized, "", nil)
	}
	u := q.id.user
	return q.json(http.StatusOK, struct {
		ID                        string   `json:"id"`
		OrganizationIDs           []string `json:"organization_ids"`
		FullName                  string   `json:"full_name"`
		EmailAddress              string   `json:"email_address"`
		EmailNotificationsEnabled bool     `json:"email_notifications_enabled"`
		IsEmailAddressVerified    bool     `json:"is_email_address_verified"`
		IsActive                  bool     `json:"is_active"`
		IsInvite                  bool     `json:"is_invite"`
		Roles                     []string `json:"roles"`
		HasLocalAccount           bool     `json:"has_local_account"`
		OAuthAccounts             []string `json:"o_auth_accounts"`
	}{u.id, nonNil(u.orgIDs), u.fullName, u.email, true, u.verified, u.active, false,
		nonNil(u.roles), u.password != "", []string{}})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// GET /api/v2/organizations: a plain array, no paging headers.
func (h *Handler) organizationsList(q *req) response {
	var orgs []*organization
	for _, id := range q.id.orgIDs {
		if o := h.orgs[id]; o != nil {
			orgs = append(orgs, o)
		}
	}
	slices.SortFunc(orgs, func(a, b *organization) int { return a.seq - b.seq })
	type viewOrg struct {
		ID                 string   `json:"id"`
		CreatedUTC         string   `json:"created_utc"`
		Name               string   `json:"name"`
		PlanID             string   `json:"plan_id"`
		PlanName           string   `json:"plan_name"`
		IsSuspended        bool     `json:"is_suspended"`
		IsThrottled        bool     `json:"is_throttled"`
		IsOverMonthlyLimit bool     `json:"is_over_monthly_limit"`
		IsOverRequestLimit bool     `json:"is_over_request_limit"`
		ProjectCount       int      `json:"project_count"`
		Features           []string `json:"features"`
	}
	out := []viewOrg{}
	for _, o := range orgs {
		n := 0
		for _, p := range h.projects {
			if p.orgID == o.id {
				n++
			}
		}
		out = append(out, viewOrg{ID: o.id, CreatedUTC: storedTime(o.created), Name: o.name, PlanID: "EX_FREE",
			PlanName: "Free", IsSuspended: o.suspended, ProjectCount: n, Features: []string{}})
	}
	return q.json(http.StatusOK, out)
}

type viewProject struct {
	ID                   string `json:"id"`
	CreatedUTC           string `json:"created_utc"`
	OrganizationID       string `json:"organization_id"`
	OrganizationName     string `json:"organization_name"`
	Name                 string `json:"name"`
	DeleteBotDataEnabled bool   `json:"delete_bot_data_enabled"`
	PromotedTabs         []any  `json:"promoted_tabs"`
	IsConfigured         bool   `json:"is_configured"`
	StackCount           int    `json:"stack_count"`
	EventCount           int    `json:"event_count"`
	HasPremiumFeatures   bool   `json:"has_premium_features"`
	HasSlackIntegration  bool   `json:"has_slack_integration"`
	UsageHours           []any  `json:"usage_hours"`
	Usage                []any  `json:"usage"`
}

// GET /api/v2/projects: the projects of all the caller's organizations,
// paged (limit up to 1000).
func (h *Handler) projectsList(q *req) response {
	var ps []*project
	for _, p := range h.projects {
		if slices.Contains(q.id.orgIDs, p.orgID) {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b *project) int { return a.seq - b.seq })
	ps, hd, bad := page(q, ps, 1000)
	if bad != nil {
		return *bad
	}
	out := []viewProject{}
	for _, p := range ps {
		orgName := ""
		if o := h.orgs[p.orgID]; o != nil {
			orgName = o.name
		}
		out = append(out, viewProject{ID: p.id, CreatedUTC: storedTime(p.created), OrganizationID: p.orgID,
			OrganizationName: orgName, Name: p.name, PromotedTabs: []any{}, IsConfigured: p.events > 0,
			EventCount: p.events, UsageHours: []any{}, Usage: []any{}})
	}
	resp := q.json(http.StatusOK, out)
	for k, v := range hd {
		resp.header[k] = v
	}
	return resp
}

// accessibleProject returns the project if it is in one of the caller's
// organizations.
func (h *Handler) accessibleProject(q *req, id string) *project {
	p := h.projects[id]
	if p == nil || !slices.Contains(q.id.orgIDs, p.orgID) {
		return nil
	}
	return p
}

type viewToken struct {
	ID               string   `json:"id"`
	OrganizationID   string   `json:"organization_id"`
	ProjectID        string   `json:"project_id,omitempty"`
	UserID           string   `json:"user_id,omitempty"`
	DefaultProjectID string   `json:"default_project_id,omitempty"`
	Scopes           []string `json:"scopes"`
	ExpiresUTC       string   `json:"expires_utc,omitempty"`
	Notes            *string  `json:"notes,omitempty"`
	IsDisabled       bool     `json:"is_disabled"`
	IsSuspended      bool     `json:"is_suspended"`
	CreatedUTC       string   `json:"created_utc"`
	UpdatedUTC       string   `json:"updated_utc"`
}

func (t *token) view() viewToken {
	v := viewToken{ID: t.id, OrganizationID: t.orgID, ProjectID: t.projectID, UserID: t.userID,
		DefaultProjectID: t.defaultProjectID, Scopes: nonNil(t.scopes), Notes: t.notes, IsDisabled: t.disabled,
		IsSuspended: t.suspended, CreatedUTC: storedTime(t.created), UpdatedUTC: storedTime(t.updated)}
	if t.expires != nil {
		v.ExpiresUTC = echoedTime(*t.expires)
	}
	return v
}

// GET /api/v2/projects/{id}/tokens: access tokens of the project (and
// organization tokens defaulting to it), oldest first, disabled, suspended
// and expired ones included.
func (h *Handler) projectTokens(q *req) response {
	if q.id.access {
		return q.problem(http.StatusForbidden, "", nil)
	}
	p := h.accessibleProject(q, q.params[0])
	if p == nil {
		return q.problem(http.StatusNotFound, "Project not found.", nil)
	}
	ts := h.sortedTokensLocked(func(t *token) bool {
		return t.kind == accessToken && (t.projectID == p.id || t.projectID == "" && t.defaultProjectID == p.id)
	})
	ts, hd, bad := page(q, ts, 100)
	if bad != nil {
		return *bad
	}
	out := []viewToken{}
	for _, t := range ts {
		out = append(out, t.view())
	}
	resp := q.json(http.StatusOK, out)
	for k, v := range hd {
		resp.header[k] = v
	}
	return resp
}

var knownScopes = []string{"client", "global", "source-maps:write", "user"}

// POST /api/v2/projects/{id}/tokens. The route's project wins over the
// body, which may be empty.
func (h *Handler) createProjectToken(q *req) response {
	o, bad := q.bodyObject(false)
	if bad != nil {
		return *bad
	}
	errs := map[string][]string{}
	for _, k := range []string{"organization_id", "project_id", "default_project_id"} {
		// ObjectIdAttribute is only a length check.
		switch v, st := o.str(k); {
		case st == badType:
			return q.problem(http.StatusBadRequest, "", nil)
		case st == present && len(v) != 24:
			errs[k] = []string{"The field must be a string with a length of 24."}
		}
	}
	scopes, st := o.strings("scopes")
	if st == badType {
		return q.problem(http.StatusBadRequest, "", nil)
	}
	notes, nst := o.str("notes")
	if nst == badType {
		return q.problem(http.StatusBadRequest, "", nil)
	}
	var expires *time.Time
	switch s, est := o.str("expires_utc"); est {
	case badType:
		return q.problem(http.StatusBadRequest, "", nil)
	case present:
		t, ok := parseClientTime(s)
		if !ok {
			return q.problem(http.StatusBadRequest, "", nil)
		}
		expires = &t // not validated: a past date makes a dead token
	}
	if len(errs) > 0 {
		return q.validation(errs)
	}
	if q.id.access { // any Token identity, even scope user
		return q.problem(http.StatusForbidden, "", nil)
	}
	p := h.accessibleProject(q, q.params[0])
	if p == nil {
		return q.problem(http.StatusNotFound, "Project not found.", nil)
	}

	set := map[string]bool{}
	for _, s := range scopes {
		s = strings.ToLower(strings.TrimSpace(s))
		if !slices.Contains(knownScopes, s) {
			return q.validation(map[string][]string{"scopes": {"Invalid token scope requested."}})
		}
		set[s] = true
	}
	if len(set) == 0 {
		set["client"] = true
	}
	if (set["client"] || set["user"]) && !q.id.roles["user"] || set["global"] && !q.id.roles["global"] {
		return q.validation(map[string][]string{"scopes": {"Invalid token scope requested."}})
	}
	// Implied scopes are stored too: ["user"] reads back ["client","user"].
	if set["global"] {
		set["user"] = true
	}
	if set["user"] {
		set["client"] = true
	}
	var stored []string
	for _, s := range knownScopes {
		if set[s] {
			stored = append(stored, s)
		}
	}

	t := &token{id: newTokenID(), kind: accessToken, orgID: p.orgID, projectID: p.id, scopes: stored,
		expires: expires, created: q.now.UTC(), updated: q.now.UTC(), seq: h.nextSeq()}
	if q.id.user != nil {
		t.createdBy = q.id.user.id
	}
	if nst == present {
		t.notes = &notes
	}
	h.tokens[t.id] = t
	resp := q.json(http.StatusCreated, t.view())
	resp.header.Set("Location", baseURL(q.r)+"/api/v2/tokens/"+t.id)
	return resp
}

// visibleToken applies the read rules of GET tokens/{id}: access tokens
// only, of the caller's organizations, not bound to another user, of an
// accessible project.
func (h *Handler) visibleToken(q *req, id string) *token {
	t := h.tokens[id]
	switch {
	case t == nil, t.kind != accessToken, !slices.Contains(q.id.orgIDs, t.orgID):
		return nil
	case t.userID != "" && (q.id.user == nil || t.userID != q.id.user.id):
		return nil
	case t.projectID != "" && h.accessibleProject(q, t.projectID) == nil:
		return nil
	}
	return t
}

// GET /api/v2/tokens/{id}.
func (h *Handler) getToken(q *req) response {
	if q.id.access {
		return q.problem(http.StatusForbidden, "", nil)
	}
	t := h.visibleToken(q, q.params[0])
	if t == nil {
		return q.problem(http.StatusNotFound, "", nil)
	}
	return q.json(http.StatusOK, t.view())
}

// PATCH or PUT /api/v2/tokens/{id}: a partial update of is_disabled and
// notes; other fields are ignored.
func (h *Handler) updateToken(q *req) response {
	o, bad := q.bodyObject(true)
	if bad != nil {
		return *bad
	}
	disabled, dst := o.boolean("is_disabled")
	notes, nst := o.str("notes")
	if dst == badType || nst == badType {
		return q.problem(http.StatusBadRequest, "", nil)
	}
	if q.id.access {
		return q.problem(http.StatusForbidden, "", nil)
	}
	t := h.visibleToken(q, q.params[0])
	if t == nil {
		return q.problem(http.StatusNotFound, "", nil)
	}
	if dst == present {
		t.disabled = disabled
	}
	switch nst {
	case present:
		t.notes = &notes
	case null:
		t.notes = nil
	}
	if dst == present || nst != absent {
		t.updated = q.now.UTC()
	}
	return q.json(http.StatusOK, t.view())
}

// DELETE /api/v2/tokens/{id,…}. Unknown ids are ignored unless none is
// known; refused ids do not stop the others from being deleted.
func (h *Handler) deleteTokens(q *req) response {
	if q.id.access {
		return q.problem(http.StatusForbidden, "", nil)
	}
	var found []*token
	seen := map[string]bool{}
	for id := range strings.SplitSeq(q.params[0], ",") {
		t := h.tokens[id]
		if seen[id] || t == nil || t.kind != accessToken || !slices.Contains(q.id.orgIDs, t.orgID) {
			continue
		}
		seen[id] = true
		found = append(found, t)
	}
	if len(found) == 0 {
		return q.problem(http.StatusNotFound, "No tokens found.", nil)
	}
	type refusal struct {
		Allowed    bool   `json:"allowed"`
		ID         string `json:"id"`
		StatusCode int    `json:"status_code"`
		Message    string `json:"message,omitempty"`
	}
	success, failure := []string{}, []refusal{}
	for _, t := range found {
		switch {
		case t.userID != "" && (q.id.user == nil || t.userID != q.id.user.id):
			failure = append(failure, refusal{ID: t.id, StatusCode: http.StatusBadRequest, Message: "Can only delete tokens created by you."})
		case t.projectID != "" && h.accessibleProject(q, t.projectID) == nil:
			failure = append(failure, refusal{ID: t.id, StatusCode: http.StatusNotFound})
		default:
			delete(h.tokens, t.id)
			success = append(success, t.id)
		}
	}
	switch {
	case len(failure) == 0:
		return q.json(http.StatusAccepted, map[string][]string{"workers": {}})
	case len(success) == 0 && len(failure) == 1:
		return q.problem(failure[0].StatusCode, failure[0].Message, nil)
	}
	return q.json(http.StatusBadRequest, struct {
		Workers []string  `json:"workers"`
		Success []string  `json:"success"`
		Failure []refusal `json:"failure"`
	}{[]string{}, success, failure})
}

// GET /api/v2/projects/config[?v=N]: the project comes from the token, so
// the login token (no project) gets 401.
func (h *Handler) projectConfig(q *req) response {
	if q.id.projectID == "" {
		return q.problem(http.StatusUnauthorized, "", nil)
	}
	p := h.projects[q.id.projectID]
	if p == nil {
		return q.problem(http.StatusNotFound, "", nil)
	}
	if v, err := strconv.Atoi(q.r.URL.Query().Get("v")); err == nil && v == p.configVersion {
		return empty(http.StatusNotModified)
	}
	settings := map[string]string{}
	for k, v := range p.settings {
		settings[k] = v
	}
	return q.json(http.StatusOK, struct {
		Version  int               `json:"version"`
		Settings map[string]string `json:"settings"`
	}{p.configVersion, settings})
}

// maxEventBody is the event endpoint's size limit.
const maxEventBody = 200_000

// POST /api/v2/events: accepted for later processing, 202 with no body.
func (h *Handler) postEvents(q *req) response {
	switch {
	case q.bodyErr:
		return q.problem(http.StatusBadRequest, "", nil)
	case q.r.ContentLength == 0 || len(q.body) == 0:
		return q.problem(http.StatusLengthRequired, "", nil)
	case len(q.body) > maxEventBody:
		return q.problem(http.StatusRequestEntityTooLarge, "", nil)
	}
	mt, _, _ := mime.ParseMediaType(q.r.Header.Get("Content-Type"))
	if mt != "application/json" && mt != "text/plain" {
		return q.problem(http.StatusUnsupportedMediaType, "", nil)
	}
	if q.id.projectID == "" {
		return q.problem(http.StatusBadRequest, "No project id specified and no default project was found.", nil)
	}
	p := h.projects[q.id.projectID]
	if p == nil {
		return q.problem(http.StatusNotFound, "", nil)
	}
	p.events++
	resp := empty(http.StatusAccepted)
	resp.header.Set("X-Exceptionless-ConfigVersion", strconv.Itoa(p.configVersion))
	return resp
}
