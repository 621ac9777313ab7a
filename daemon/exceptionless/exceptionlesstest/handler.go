package exceptionlesstest

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/exless/exless/internal/testrun"
)

// Handler is the test server as an http.Handler, for embedding in another
// server. Its methods are the test hooks; all are safe for concurrent use.
type Handler struct {
	// Account is the seeded account (zero with Config.NoSeed).
	Account Account

	now    func() time.Time
	legacy bool

	mu            sync.Mutex
	rateLimit     int
	seq           int
	users         map[string]*user // by id
	orgs          map[string]*organization
	projects      map[string]*project
	tokens        map[string]*token
	loginCounters map[string]*counter
	rateCounters  map[string]*counter
	calls         []Call
	loginAttempts int
	// passwordChanges counts successful change-password requests.
	passwordChanges int
	failures        []failure
	latencies       []latency
}

type user struct {
	id, email, fullName string
	password            string // empty: no local account (OAuth only)
	active, verified    bool
	roles               []string
	orgIDs              []string
}

type organization struct {
	id, name  string
	created   time.Time
	suspended bool
	seq       int
}

type project struct {
	id, orgID, name string
	created         time.Time
	configVersion   int
	settings        map[string]string
	events          int
	seq             int
}

type tokenKind int

const (
	authToken   tokenKind = iota // "user token", made by login
	accessToken                  // API key, made through the tokens API
)

type token struct {
	id                                         string
	kind                                       tokenKind
	userID, orgID, projectID, defaultProjectID string
	scopes                                     []string
	expires                                    *time.Time
	notes                                      *string
	disabled, suspended                        bool
	created, updated                           time.Time
	createdBy                                  string
	seq                                        int
}

// counter is a fixed-window counter that lapses at expires.
type counter struct {
	n       int
	expires time.Time
}

type failure struct {
	method, prefix string
	status         int
}

type latency struct {
	method, prefix string
	delay          time.Duration
}

// NewHandler returns a handler with cfg applied and, unless cfg.NoSeed, the
// default account seeded.
func NewHandler(cfg Config) *Handler {
	h := &Handler{
		now:           cfg.Now,
		legacy:        cfg.Legacy,
		rateLimit:     cfg.RateLimit,
		users:         map[string]*user{},
		orgs:          map[string]*organization{},
		projects:      map[string]*project{},
		tokens:        map[string]*token{},
		loginCounters: map[string]*counter{},
		rateCounters:  map[string]*counter{},
	}
	if h.now == nil {
		h.now = time.Now
	}
	if !cfg.NoSeed {
		h.seed(cfg)
	}
	return h
}

// Fixed seed ids, so a demo prints the same ones every run.
const (
	seedUserID = "65e0ac0000000000000000a1"
	seedOrgID  = "65e0ac0000000000000000b1"
	seedWebID  = "65e0ac0000000000000000c1"
	seedAPIID  = "65e0ac0000000000000000c2"
)

func (h *Handler) seed(cfg Config) {
	a := Account{
		UserID:           seedUserID,
		Email:            normEmail(cfg.Email),
		Password:         cfg.Password,
		FullName:         "Ops",
		OrganizationID:   seedOrgID,
		OrganizationName: "Acme",
		Projects:         []Project{{ID: seedWebID, Name: "web"}, {ID: seedAPIID, Name: "api"}},
	}
	if a.Email == "" {
		a.Email = DefaultEmail
	}
	if a.Password == "" {
		a.Password = randomString(20)
	}
	testrun.Secret(a.Password)
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.addOrgLocked(a.OrganizationID, a.OrganizationName, now)
	for _, p := range a.Projects {
		h.addProjectLocked(p.ID, a.OrganizationID, p.Name, now)
	}
	h.users[a.UserID] = &user{id: a.UserID, email: a.Email, fullName: a.FullName, password: a.Password,
		active: true, verified: true, roles: []string{"user"}, orgIDs: []string{a.OrganizationID}}
	h.Account = a
}

// Ids.

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomString returns n characters of [A-Za-z0-9] from crypto/rand,
// rejecting bytes that would bias the draw.
func randomString(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		_, _ = rand.Read(buf) // never fails (crypto/rand)
		for _, b := range buf {
			if int(b) < 256-256%len(alnum) && len(out) < n {
				out = append(out, alnum[int(b)%len(alnum)])
			}
		}
	}
	return string(out)
}

// newTokenID returns a 40-character id like GetNewToken does. The id is
// the token, so every one is registered as a secret no test log may hold.
func newTokenID() string {
	id := randomString(40)
	testrun.Secret(id)
	return id
}

// newObjectID returns a 24-hex id whose first 4 bytes are the time, as a
// MongoDB ObjectId's are.
func (h *Handler) newObjectID(now time.Time) string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(now.Unix()))
	_, _ = rand.Read(b[4:])
	return hex.EncodeToString(b[:])
}

func normEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func (h *Handler) nextSeq() int { h.seq++; return h.seq }

func (h *Handler) addOrgLocked(id, name string, now time.Time) {
	h.orgs[id] = &organization{id: id, name: name, created: now, seq: h.nextSeq()}
}

func (h *Handler) addProjectLocked(id, orgID, name string, now time.Time) {
	h.projects[id] = &project{id: id, orgID: orgID, name: name, created: now, configVersion: 1,
		settings: map[string]string{}, seq: h.nextSeq()}
}

// Hooks.

// Now returns the server's clock reading.
func (h *Handler) Now() time.Time { return h.now() }

// AddOrganization adds an organization and returns its id.
func (h *Handler) AddOrganization(name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	id := h.newObjectID(now)
	h.addOrgLocked(id, name, now)
	return id
}

// AddProject adds a project to an organization and returns its id. It
// panics if the organization does not exist.
func (h *Handler) AddProject(orgID, name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.orgs[orgID] == nil {
		panic(fmt.Sprintf("exceptionlesstest: AddProject: no organization %q", orgID))
	}
	now := h.now()
	id := h.newObjectID(now)
	h.addProjectLocked(id, orgID, name, now)
	return id
}

// NewUser describes a user for AddUser.
type NewUser struct {
	Email    string
	Password string // empty: an OAuth-only account, which cannot log in
	FullName string
	// Roles defaults to ["user"]; "global" makes a global admin.
	Roles           []string
	OrganizationIDs []string
	Inactive        bool
	Unverified      bool
}

// AddUser adds a user and returns its id. It panics if the email is taken.
func (h *Handler) AddUser(nu NewUser) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	email := normEmail(nu.Email)
	if h.userByEmailLocked(email) != nil {
		panic(fmt.Sprintf("exceptionlesstest: AddUser: %q exists", email))
	}
	roles := nu.Roles
	if roles == nil {
		roles = []string{"user"}
	}
	id := h.newObjectID(h.now())
	testrun.Secret(nu.Password)
	h.users[id] = &user{id: id, email: email, fullName: nu.FullName, password: nu.Password,
		active: !nu.Inactive, verified: !nu.Unverified, roles: slices.Clone(roles),
		orgIDs: slices.Clone(nu.OrganizationIDs)}
	return id
}

// SetPassword changes a user's password (no tokens are revoked, unlike the
// real change-password endpoint) and reports whether the user exists.
func (h *Handler) SetPassword(email, password string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.userByEmailLocked(normEmail(email))
	if u != nil {
		testrun.Secret(password)
		u.password = password
	}
	return u != nil
}

// SetUserActive activates or deactivates a user and reports whether the
// user exists. An inactive user's login fails with "Login failed.".
func (h *Handler) SetUserActive(email string, active bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.userByEmailLocked(normEmail(email))
	if u != nil {
		u.active = active
	}
	return u != nil
}

// DeleteUser removes a user and reports whether it existed. Its tokens stay
// stored but fail authentication, as on the real server.
func (h *Handler) DeleteUser(email string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.userByEmailLocked(normEmail(email))
	if u != nil {
		delete(h.users, u.id)
	}
	return u != nil
}

// NewAccessToken describes a token for AddAccessToken.
type NewAccessToken struct {
	ProjectID        string
	OrganizationID   string // defaults to the project's
	DefaultProjectID string
	UserID           string // binds the key to a user; API-made keys have none
	Scopes           []string
	ExpiresUTC       *time.Time
	Notes            string
	Disabled         bool
}

// AddAccessToken stores an access token directly, bypassing the API's
// rules (for cases the API cannot make, such as a user-bound key), and
// returns its id. It panics if neither project nor organization exists.
func (h *Handler) AddAccessToken(nt NewAccessToken) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	org := nt.OrganizationID
	if p := h.projects[nt.ProjectID]; p != nil && org == "" {
		org = p.orgID
	}
	if h.orgs[org] == nil {
		panic("exceptionlesstest: AddAccessToken: no such organization or project")
	}
	now := h.now()
	t := &token{id: newTokenID(), kind: accessToken, userID: nt.UserID, orgID: org, projectID: nt.ProjectID,
		defaultProjectID: nt.DefaultProjectID, scopes: slices.Clone(nt.Scopes), disabled: nt.Disabled,
		created: now, updated: now, seq: h.nextSeq()}
	if nt.ExpiresUTC != nil {
		e := nt.ExpiresUTC.UTC()
		t.expires = &e
	}
	if nt.Notes != "" {
		n := nt.Notes
		t.notes = &n
	}
	h.tokens[t.id] = t
	return t.id
}

// TokenInfo is a stored token as a test sees it.
type TokenInfo struct {
	ID               string
	Kind             string // "authentication" (login) or "access"
	UserID           string
	OrganizationID   string
	ProjectID        string
	DefaultProjectID string
	Scopes           []string
	ExpiresUTC       *time.Time
	Notes            string
	Disabled         bool
	Suspended        bool
	CreatedUTC       time.Time
	UpdatedUTC       time.Time
}

func (t *token) info() TokenInfo {
	ti := TokenInfo{ID: t.id, Kind: "access", UserID: t.userID, OrganizationID: t.orgID, ProjectID: t.projectID,
		DefaultProjectID: t.defaultProjectID, Scopes: slices.Clone(t.scopes), Disabled: t.disabled,
		Suspended: t.suspended, CreatedUTC: t.created, UpdatedUTC: t.updated}
	if t.kind == authToken {
		ti.Kind = "authentication"
	}
	if t.expires != nil {
		e := *t.expires
		ti.ExpiresUTC = &e
	}
	if t.notes != nil {
		ti.Notes = *t.notes
	}
	return ti
}

// Token returns a stored token by id.
func (h *Handler) Token(id string) (TokenInfo, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.tokens[id]
	if t == nil {
		return TokenInfo{}, false
	}
	return t.info(), true
}

// Tokens returns every stored token, oldest first.
func (h *Handler) Tokens() []TokenInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []TokenInfo
	for _, t := range h.sortedTokensLocked(func(*token) bool { return true }) {
		out = append(out, t.info())
	}
	return out
}

// LoginToken returns the token a successful login by email would return
// now, if one exists (the oldest unexpired login token).
func (h *Handler) LoginToken(email string) (TokenInfo, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.userByEmailLocked(normEmail(email))
	if u == nil {
		return TokenInfo{}, false
	}
	t := h.liveAuthTokenLocked(u, h.now())
	if t == nil {
		return TokenInfo{}, false
	}
	return t.info(), true
}

// ExpireToken makes a token expired as of now and reports whether it
// exists. A login after this creates a new login token.
func (h *Handler) ExpireToken(id string) bool {
	return h.SetTokenExpiry(id, h.now().Add(-time.Second))
}

// SetTokenExpiry sets a token's expiry and reports whether it exists.
func (h *Handler) SetTokenExpiry(id string, expires time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.tokens[id]
	if t != nil {
		e := expires.UTC()
		t.expires = &e
	}
	return t != nil
}

// SetTokenDisabled disables or enables a token and reports whether it
// exists. A disabled token gets 401.
func (h *Handler) SetTokenDisabled(id string, disabled bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.tokens[id]
	if t != nil {
		t.disabled = disabled
		t.updated = h.now()
	}
	return t != nil
}

// DeleteToken deletes a token (as a logout or a deletion elsewhere would)
// and reports whether it existed.
func (h *Handler) DeleteToken(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.tokens[id]
	delete(h.tokens, id)
	return ok
}

// SuspendOrganization suspends or resumes an organization, setting
// is_suspended on all its tokens as the real server does, and reports
// whether it exists.
func (h *Handler) SuspendOrganization(orgID string, suspended bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.orgs[orgID]
	if o == nil {
		return false
	}
	o.suspended = suspended
	for _, t := range h.tokens {
		if t.orgID == orgID {
			t.suspended = suspended
		}
	}
	return true
}

// SetProjectSetting sets a client configuration setting, bumping the
// project's configuration version, and reports whether the project exists.
func (h *Handler) SetProjectSetting(projectID, key, value string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.projects[projectID]
	if p != nil {
		p.settings[key] = value
		p.configVersion++
	}
	return p != nil
}

// EventPosts returns how many event submissions a project has accepted.
func (h *Handler) EventPosts(projectID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.projects[projectID]; p != nil {
		return p.events
	}
	return 0
}

// Calls returns the requests served so far, oldest first. A call is
// recorded before its response is written, so it is visible as soon as the
// client has the answer.
func (h *Handler) Calls() []Call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

// ResetCalls forgets the recorded calls and the login attempt count.
func (h *Handler) ResetCalls() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = nil
	h.loginAttempts = 0
}

// LoginAttempts returns how many login requests reached the throttle, that
// is, passed validation; each one counted against the account.
func (h *Handler) LoginAttempts() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.loginAttempts
}

// PasswordChanges returns how many change-password requests succeeded.
func (h *Handler) PasswordChanges() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.passwordChanges
}

// PasswordIs reports whether the user's password is password, so a test
// can check a rotated password without the server handing it out.
func (h *Handler) PasswordIs(email, password string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.userByEmailLocked(normEmail(email))
	return u != nil && passwordOK(u, password)
}

// FailNext makes the next request whose method is method (any if empty)
// and whose path starts with pathPrefix get status with a generic problem
// body, before authentication and without reaching the endpoint. Several
// calls queue up, each used once.
func (h *Handler) FailNext(method, pathPrefix string, status int) {
	if status < 100 || status > 599 {
		panic(fmt.Sprintf("exceptionlesstest: FailNext: status %d is not an HTTP status", status))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures = append(h.failures, failure{method: method, prefix: pathPrefix, status: status})
}

// SetLatency delays the answers to requests whose method matches (empty:
// any) and whose path starts with pathPrefix by d, after the request took
// effect; d of 0 removes the rule.
func (h *Handler) SetLatency(method, pathPrefix string, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, l := range h.latencies {
		if l.method == method && l.prefix == pathPrefix {
			h.latencies = append(h.latencies[:i], h.latencies[i+1:]...)
			break
		}
	}
	if d > 0 {
		h.latencies = append(h.latencies, latency{method: method, prefix: pathPrefix, delay: d})
	}
}

func (h *Handler) latencyLocked(r *http.Request) time.Duration {
	for _, l := range h.latencies {
		if (l.method == "" || strings.EqualFold(l.method, r.Method)) && strings.HasPrefix(r.URL.Path, l.prefix) {
			return l.delay
		}
	}
	return 0
}

// SetRateLimit sets the API throttle to n requests per 15-minute window and
// bucket; 0 turns it off.
func (h *Handler) SetRateLimit(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rateLimit = n
}

// Model queries; callers hold h.mu.

func (h *Handler) userByEmailLocked(email string) *user {
	for _, u := range h.users {
		if u.email == email {
			return u
		}
	}
	return nil
}

func (h *Handler) sortedTokensLocked(keep func(*token) bool) []*token {
	var out []*token
	for _, t := range h.tokens {
		if keep(t) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *token) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	return out
}

// liveAuthTokenLocked is GetOrCreateAuthenticationTokenAsync's lookup: the
// oldest login token of u that has not expired (disabled is not checked).
func (h *Handler) liveAuthTokenLocked(u *user, now time.Time) *token {
	for _, t := range h.sortedTokensLocked(func(t *token) bool { return t.kind == authToken && t.userID == u.id }) {
		if t.expires == nil || !t.expires.Before(now) {
			return t
		}
	}
	return nil
}

// incrLocked bumps a fixed-window counter. A new window ends at the next
// UTC quarter hour (:00, :15, :30, :45), so the window is not sliding.
func incrLocked(m map[string]*counter, key string, now time.Time) int {
	c := m[key]
	if c == nil || !now.Before(c.expires) {
		c = &counter{expires: nextQuarterHour(now)}
		m[key] = c
	}
	c.n++
	return c.n
}

// nextQuarterHour returns the first UTC quarter hour after t. Truncate works
// on absolute time, which is aligned with UTC hours.
func nextQuarterHour(t time.Time) time.Time {
	return t.UTC().Truncate(15 * time.Minute).Add(15 * time.Minute)
}
