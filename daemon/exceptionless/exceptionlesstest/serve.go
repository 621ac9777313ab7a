package exceptionlesstest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxBody caps what the server reads of any request body.
const maxBody = 1 << 20

// req is one request being served, with everything the pipeline learnt.
type req struct {
	r        *http.Request
	segs     []string // path segments after /api/v2
	params   []string // values matched by route parameters, in order
	body     []byte
	bodyErr  bool // the body could not be read in full
	now      time.Time
	ip       string
	id       *identity // nil: anonymous or failed authentication
	authForm string    // see Call.Auth
}

// response is computed under the lock and written after it is released.
type response struct {
	status int
	header http.Header
	body   []byte
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := &req{r: r, ip: clientIP(r)}
	q.body, q.bodyErr = readBody(r)

	h.mu.Lock()
	q.now = h.now()
	resp := h.handle(q)
	if resp.status == http.StatusUnauthorized && strings.HasPrefix(r.URL.Path, "/api/v2") {
		resp.header.Set("WWW-Authenticate", `Bearer resource_metadata="`+baseURL(r)+`/.well-known/oauth-protected-resource/api/v2"`)
	}
	// Recorded before the answer leaves, so a test reading Calls after its
	// request returned always sees it.
	h.calls = append(h.calls, Call{Method: r.Method, Path: redactPath(r.URL.Path), Query: redactQuery(r.URL.RawQuery),
		Status: resp.status, Auth: q.authForm})
	delay := h.latencyLocked(r)
	h.mu.Unlock()

	// Injected latency comes after the request took effect and before the
	// answer leaves: a client that gives up (or dies) meanwhile has changed
	// the server's state without learning the result, as over a slow link.
	if delay > 0 {
		time.Sleep(delay)
	}

	for k, v := range resp.header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.status)
	if len(resp.body) > 0 {
		_, _ = w.Write(resp.body)
	}
}

func readBody(r *http.Request) ([]byte, bool) {
	if r.Body == nil {
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	return b, err != nil
}

// handle runs the pipeline of the real server in its order: injected
// failures, authentication, the API throttle, routing, the endpoint's
// policy, then the endpoint.
func (h *Handler) handle(q *req) response {
	for i, f := range h.failures {
		if (f.method == "" || strings.EqualFold(f.method, q.r.Method)) && strings.HasPrefix(q.r.URL.Path, f.prefix) {
			h.failures = append(h.failures[:i], h.failures[i+1:]...)
			return q.problem(f.status, "", nil)
		}
	}
	q.id, q.authForm = h.authenticate(q)

	rt := h.match(q)
	if h.rateLimit > 0 && (rt == nil || !rt.unthrottled) {
		n := incrLocked(h.rateCounters, q.rateBucket(), q.now)
		if n > h.rateLimit {
			return q.problem(http.StatusTooManyRequests, "", nil) // no Retry-After, no rate headers
		}
		resp := h.route(q, rt)
		resp.header.Set("X-RateLimit-Limit", strconv.Itoa(h.rateLimit))
		resp.header.Set("X-RateLimit-Remaining", strconv.Itoa(h.rateLimit-n))
		return resp
	}
	return h.route(q, rt)
}

func (h *Handler) route(q *req, rt *route) response {
	if rt == nil {
		return q.problem(http.StatusNotFound, "", nil)
	}
	if rt.role != "" {
		if q.id == nil {
			return q.problem(http.StatusUnauthorized, "", nil)
		}
		if !q.id.roles[rt.role] {
			return q.problem(http.StatusForbidden, "", nil)
		}
	}
	return rt.serve(h, q)
}

// rateBucket is the API throttle's key: the user for user identities, the
// organization for every access token (all keys of an organization share
// it), the client IP for anonymous callers.
func (q *req) rateBucket() string {
	switch {
	case q.id == nil:
		return "ip:" + q.ip
	case q.id.access:
		return "org:" + q.id.tok.orgID
	default:
		return "user:" + q.id.user.id
	}
}

// clientIP trusts X-Forwarded-For as the real server does, which also lets
// tests act as several hosts.
func clientIP(r *http.Request) string {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		first, _, _ := strings.Cut(xff, ",")
		if ip := strings.TrimSpace(first); ip != "" {
			return ip
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// Routing.

type route struct {
	method  string
	pattern []string // literal segments, or ":objectid", ":token", ":tokens"
	role    string   // required role; "" for anonymous endpoints
	// unthrottled routes are never counted by the API throttle.
	unthrottled bool
	serve       func(h *Handler, q *req) response
}

// routes lists what the server serves. Anything else, including a known path
// with another method (POST auth/logout, for one), is 404.
var routes = []route{
	{method: "POST", pattern: []string{"auth", "login"}, serve: (*Handler).login},
	{method: "GET", pattern: []string{"auth", "logout"}, role: "user", serve: (*Handler).logout},
	{method: "POST", pattern: []string{"auth", "change-password"}, role: "user", serve: (*Handler).changePassword},
	{method: "GET", pattern: []string{"users", "me"}, role: "user", serve: (*Handler).me},
	{method: "GET", pattern: []string{"organizations"}, role: "user", serve: (*Handler).organizationsList},
	{method: "GET", pattern: []string{"projects", "config"}, role: "client", unthrottled: true, serve: (*Handler).projectConfig},
	{method: "GET", pattern: []string{"projects"}, role: "user", serve: (*Handler).projectsList},
	{method: "GET", pattern: []string{"projects", ":objectid", "tokens"}, role: "user", serve: (*Handler).projectTokens},
	{method: "POST", pattern: []string{"projects", ":objectid", "tokens"}, role: "user", serve: (*Handler).createProjectToken},
	{method: "GET", pattern: []string{"tokens", ":token"}, role: "user", serve: (*Handler).getToken},
	{method: "PATCH", pattern: []string{"tokens", ":token"}, role: "user", serve: (*Handler).updateToken},
	{method: "PUT", pattern: []string{"tokens", ":token"}, role: "user", serve: (*Handler).updateToken},
	{method: "DELETE", pattern: []string{"tokens", ":tokens"}, role: "user", serve: (*Handler).deleteTokens},
	{method: "POST", pattern: []string{"events"}, role: "client", serve: (*Handler).postEvents},
}

func (h *Handler) match(q *req) *route {
	rest, ok := strings.CutPrefix(q.r.URL.Path, "/api/v2/")
	if !ok {
		return nil
	}
	q.segs = strings.Split(strings.TrimSuffix(rest, "/"), "/")
	for i := range routes {
		rt := &routes[i]
		if rt.method != q.r.Method || len(rt.pattern) != len(q.segs) {
			continue
		}
		var params []string
		ok := true
		for j, p := range rt.pattern {
			s := q.segs[j]
			switch p {
			case ":objectid":
				ok = isObjectIDParam(s)
			case ":token":
				ok = isTokenParam(s)
			case ":tokens":
				ok = s != ""
				for id := range strings.SplitSeq(s, ",") {
					ok = ok && isTokenParam(id)
				}
			default:
				ok = strings.EqualFold(p, s) // routes are case-insensitive
			}
			if !ok {
				break
			}
			if strings.HasPrefix(p, ":") {
				params = append(params, s)
			}
		}
		if ok {
			q.params = params
			return rt
		}
	}
	return nil
}

// isObjectIDParam is the objectid route constraint, [a-zA-Z\d]{24,36}.
func isObjectIDParam(s string) bool { return len(s) >= 24 && len(s) <= 36 && allIn(s, false) }

// isTokenParam is the token route constraint, [a-zA-Z\d-]{24,40}.
func isTokenParam(s string) bool { return len(s) >= 24 && len(s) <= 40 && allIn(s, true) }

func allIn(s string, dash bool) bool {
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && !(dash && s[i] == '-') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Authentication.

// identity is an authenticated caller.
type identity struct {
	user      *user  // the user; nil for access tokens
	tok       *token // the token presented; nil for Basic email:password
	access    bool   // a Token identity (access token), whatever its scopes
	basic     bool   // Basic email:password
	roles     map[string]bool
	orgIDs    []string
	projectID string // access tokens: project_id, else default_project_id
}

// authenticate finds the credential the way ApiKeyAuthenticationHandler
// does and validates it. It returns nil for no or bad credentials; only
// protected endpoints turn that into 401.
func (h *Handler) authenticate(q *req) (*identity, string) {
	if scheme, rest, ok := strings.Cut(q.r.Header.Get("Authorization"), " "); ok {
		value := strings.TrimSpace(rest)
		switch strings.ToLower(scheme) {
		case "bearer", "token":
			if len(value) == 64 {
				return nil, strings.ToLower(scheme) // an OAuth token; this server issues none
			}
			return h.tokenIdentity(value, q.now), strings.ToLower(scheme)
		case "basic":
			return h.basicIdentity(value, q.now), "basic"
		}
	}
	v := q.r.URL.Query()
	for _, k := range []string{"access_token", "api_key", "apikey"} {
		if t := queryValue(v, k); t != "" {
			return h.tokenIdentity(t, q.now), "query"
		}
	}
	return nil, ""
}

// queryValue looks a parameter up case-insensitively, as ASP.NET's query
// collection does.
func queryValue(v url.Values, key string) string {
	if s := v.Get(key); s != "" {
		return s
	}
	for k, vs := range v {
		if strings.EqualFold(k, key) && len(vs) > 0 && vs[0] != "" {
			return vs[0]
		}
	}
	return ""
}

func (h *Handler) basicIdentity(value string, now time.Time) *identity {
	raw, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return nil
	}
	// Empty parts are dropped and exactly two must remain, so "<t>:" fails
	// and a ':' inside a password breaks email:password.
	var parts []string
	for p := range strings.SplitSeq(string(raw), ":") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) != 2 {
		return nil
	}
	switch {
	case strings.EqualFold(parts[0], "client"):
		return h.tokenIdentity(parts[1], now)
	case parts[1] == "x-oauth-basic":
		return h.tokenIdentity(parts[0], now)
	}
	// email:password, checked directly: no token, no login throttle.
	u := h.userByEmailLocked(normEmail(parts[0]))
	if u == nil || !u.active || !passwordOK(u, parts[1]) {
		return nil
	}
	id := userIdentity(u, nil)
	id.basic = true
	return id
}

func passwordOK(u *user, password string) bool {
	return u.password != "" && subtle.ConstantTimeCompare([]byte(u.password), []byte(password)) == 1
}

func (h *Handler) tokenIdentity(value string, now time.Time) *identity {
	t := h.tokens[value]
	if t == nil || t.disabled || t.suspended || (t.expires != nil && t.expires.Before(now)) {
		return nil
	}
	var u *user
	if t.userID != "" {
		if u = h.users[t.userID]; u == nil {
			return nil
		}
	}
	if t.kind == authToken {
		return userIdentity(u, t)
	}
	id := &identity{tok: t, access: true, roles: map[string]bool{}, orgIDs: []string{t.orgID}, projectID: t.projectID}
	if id.projectID == "" {
		id.projectID = t.defaultProjectID
	}
	for _, s := range t.scopes {
		id.roles[s] = true
	}
	if len(t.scopes) == 0 {
		id.roles["client"] = true
	}
	return id
}

// userIdentity gives a user the roles it holds plus the implied ones:
// global implies user, user implies client, none means client and user.
func userIdentity(u *user, t *token) *identity {
	id := &identity{user: u, tok: t, roles: map[string]bool{}, orgIDs: u.orgIDs}
	for _, r := range u.roles {
		id.roles[r] = true
	}
	if len(u.roles) == 0 {
		id.roles["user"] = true
	}
	if id.roles["global"] {
		id.roles["user"] = true
	}
	if id.roles["user"] {
		id.roles["client"] = true
	}
	return id
}

// Responses.

func newHeader() http.Header { return http.Header{} }

func (q *req) json(status int, v any) response {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only fixed view types are encoded
	}
	hd := newHeader()
	hd.Set("Content-Type", "application/json; charset=utf-8")
	return response{status: status, header: hd, body: b}
}

func empty(status int) response { return response{status: status, header: newHeader()} }

// problem builds a ProblemDetails answer. An empty title means the status
// text, as UseStatusCodePages gives for answers without a body.
func (q *req) problem(status int, title string, errs map[string][]string) response {
	if title == "" {
		title = http.StatusText(status)
	}
	p := struct {
		Type     string              `json:"type"`
		Title    string              `json:"title"`
		Status   int                 `json:"status"`
		Instance string              `json:"instance"`
		TraceID  string              `json:"traceId"`
		Errors   map[string][]string `json:"errors,omitempty"`
	}{problemType(status), title, status, q.r.Method + " " + q.r.URL.Path, traceID(), errs}
	resp := q.json(status, p)
	resp.header.Set("Content-Type", "application/problem+json")
	return resp
}

func (q *req) validation(errs map[string][]string) response {
	return q.problem(http.StatusUnprocessableEntity, "One or more validation errors occurred.", errs)
}

func problemType(status int) string {
	sections := map[int]string{400: "15.5.1", 401: "15.5.2", 402: "15.5.3", 403: "15.5.4", 404: "15.5.5",
		405: "15.5.6", 409: "15.5.10", 411: "15.5.12", 413: "15.5.14", 415: "15.5.16", 422: "15.5.21",
		426: "15.5.22", 500: "15.6.1", 502: "15.6.3", 503: "15.6.4", 504: "15.6.5"}
	if status == http.StatusTooManyRequests {
		return "https://tools.ietf.org/html/rfc6585#section-4"
	}
	if s, ok := sections[status]; ok {
		return "https://tools.ietf.org/html/rfc9110#section-" + s
	}
	return "about:blank"
}

// traceID is a W3C traceparent, as ASP.NET puts in problems.
func traceID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-00"
}

// Dates. Stored dates come back without a zone and with 7 fractional
// digits, as the API docs show; dates a client sent are echoed with "Z".
const storedLayout = "2006-01-02T15:04:05.0000000"

func storedTime(t time.Time) string { return t.UTC().Format(storedLayout) }

func echoedTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseClientTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.UTC); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// Request bodies.

// isJSONType reports whether the request declares a JSON body.
func isJSONType(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// object is a decoded JSON object whose keys match case-insensitively but
// exactly otherwise, like System.Text.Json with case-insensitive names:
// "Email" matches email, "projectId" does not match project_id.
type object map[string]json.RawMessage

// decodeObject parses a body that must be one JSON object.
func decodeObject(b []byte) (object, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, false
	}
	o := object{}
	for k, v := range m {
		o[strings.ToLower(k)] = v
	}
	return o, true
}

// fieldState says what a body held for a field.
type fieldState int

const (
	absent fieldState = iota
	null
	present
	badType // a value of the wrong JSON type: a binding failure, 400
)

func (o object) str(name string) (string, fieldState) {
	raw, ok := o[name]
	switch {
	case !ok:
		return "", absent
	case string(raw) == "null":
		return "", null
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", badType
	}
	return s, present
}

func (o object) boolean(name string) (bool, fieldState) {
	raw, ok := o[name]
	switch {
	case !ok:
		return false, absent
	case string(raw) == "null":
		return false, null
	}
	var v bool
	if json.Unmarshal(raw, &v) != nil {
		return false, badType
	}
	return v, present
}

func (o object) strings(name string) ([]string, fieldState) {
	raw, ok := o[name]
	switch {
	case !ok:
		return nil, absent
	case string(raw) == "null":
		return nil, null
	}
	var v []*string
	if json.Unmarshal(raw, &v) != nil {
		return nil, badType
	}
	out := make([]string, 0, len(v))
	for _, s := range v {
		if s == nil {
			return nil, badType
		}
		out = append(out, *s)
	}
	return out, present
}

// Paging.

// page slices a list the way PagedResult does and sets X-Result-Count and
// the Link values. It returns ok=false and a 400 for a non-numeric value.
func page[T any](q *req, items []T, maxLimit int) ([]T, http.Header, *response) {
	vals := q.r.URL.Query()
	pg, limit := 1, 10
	if s := vals.Get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			r := q.problem(http.StatusBadRequest, "", map[string][]string{"page": {"The value is not valid."}})
			return nil, nil, &r
		}
		pg = max(n, 1)
	}
	if s := vals.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			r := q.problem(http.StatusBadRequest, "", map[string][]string{"limit": {"The value is not valid."}})
			return nil, nil, &r
		}
		if n >= 1 {
			limit = min(n, maxLimit)
		}
	}
	start := min((pg-1)*limit, len(items))
	end := min(start+limit, len(items))
	hd := newHeader()
	hd.Set("X-Result-Count", strconv.Itoa(len(items)))
	link := func(n int, rel string) {
		v := q.r.URL.Query() // every parameter is echoed, access_token included
		v.Set("page", strconv.Itoa(n))
		u := url.URL{Path: q.r.URL.Path, RawQuery: v.Encode()}
		hd.Add("Link", "<"+baseURL(q.r)+u.String()+`>; rel="`+rel+`"`)
	}
	if pg > 1 {
		link(pg-1, "previous")
	}
	if len(items) > pg*limit && (pg+1)*limit < 1000 {
		link(pg+1, "next")
	}
	return items[start:end], hd, nil
}

// Redaction of recorded calls.

const redacted = "[REDACTED]"

// redactPath hides the segment after "tokens" and any run of 32 or more
// letters and digits elsewhere (token ids are 40, OAuth tokens 64).
func redactPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if i > 0 && strings.EqualFold(segs[i-1], "tokens") && s != "" && !strings.EqualFold(s, "default") {
			segs[i] = redacted
			continue
		}
		segs[i] = redactRuns(s)
	}
	return strings.Join(segs, "/")
}

func redactQuery(raw string) string {
	if raw == "" {
		return ""
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		switch dk, _ := url.QueryUnescape(k); strings.ToLower(dk) {
		case "access_token", "api_key", "apikey":
			if ok {
				parts[i] = k + "=" + redacted
			}
		default:
			parts[i] = redactRuns(p)
		}
	}
	return strings.Join(parts, "&")
}

func redactRuns(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if !isAlnum(s[i]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && isAlnum(s[j]) {
			j++
		}
		if j-i >= 32 {
			b.WriteString(redacted)
		} else {
			b.WriteString(s[i:j])
		}
		i = j
	}
	return b.String()
}
