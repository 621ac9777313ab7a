package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/exless/exless/daemon/exceptionless"
)

// Upstream is the part of the Exceptionless API the broker uses.
type Upstream interface {
	Login(ctx context.Context, email string, password []byte) (exceptionless.Token, error)
	Me(ctx context.Context, tok exceptionless.Token) (exceptionless.User, error)
	CreateProjectToken(ctx context.Context, tok exceptionless.Token, projectID string, req exceptionless.NewToken) (exceptionless.ViewToken, error)
	DeleteTokens(ctx context.Context, tok exceptionless.Token, ids ...exceptionless.Token) error
	Projects(ctx context.Context, tok exceptionless.Token) ([]exceptionless.Project, error)
}

// Errors the broker returns to the server.
var (
	// ErrUnavailable means a token cannot be had right now (not logged in,
	// Vault or Exceptionless unreachable). The wrapped text is safe for peers.
	ErrUnavailable = errors.New("token unavailable")
	// ErrProjectNotFound means Exceptionless has no such project for the account.
	ErrProjectNotFound = errors.New("project not found")
)

// BrokerConfig wires a Broker.
type BrokerConfig struct {
	Store    TokenStore
	Upstream Upstream
	Email    string
	// Password returns the Exceptionless password. It is called only when
	// a login is needed, so the secret is not held in memory between logins.
	Password func() ([]byte, error)
	Host     string // recorded in Vault as who obtained a token
	Logger   *slog.Logger
	Now      func() time.Time
}

type heldToken struct {
	rec     Record
	version int
	held    time.Time // when the record was last read or obtained
}

// Broker obtains, stores and caches tokens. It logs in only when Vault has
// no usable user token, and never more than once per wall-clock quarter hour
// after a failure, because Exceptionless counts every attempt per email and
// refuses the sixth in a quarter hour even with the right password (locking
// out the account's web sessions too).
type Broker struct {
	cfg      BrokerConfig
	log      *slog.Logger
	sf       singleflight.Group
	projects *projectDirectory

	mu             sync.Mutex
	user           *heldToken
	clients        map[string]*heldToken
	loginNotBefore time.Time
	userProblem    string // why there is no user token, safe for peers
	vaultOK        bool
	vaultProblem   string
	upstreamProb   string
}

// NewBroker returns a broker; call Start before serving.
func NewBroker(cfg BrokerConfig) *Broker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		cfg:         cfg,
		log:         cfg.Logger.With("system", "broker"),
		clients:     map[string]*heldToken{},
		userProblem: "not logged in yet",
	}
	b.projects = &projectDirectory{
		list: b.listProjects, now: cfg.Now, fresh: nameFreshness, minRetry: minNameRefresh,
	}
	return b
}

// Start loads the user token from the store, checks it with Exceptionless,
// and logs in if there is none or it was rejected. A failure leaves the
// broker running degraded (Status says why); it is returned for logging.
func (b *Broker) Start(ctx context.Context) error {
	_, err := b.userToken(ctx)
	return err
}

// Served is a token record as handed out, with how long the broker has held it.
type Served struct {
	Record
	Age time.Duration
}

// UserToken returns the user token record.
func (b *Broker) UserToken(ctx context.Context) (Served, error) {
	h, err := b.userToken(ctx)
	if err != nil {
		return Served{}, err
	}
	return b.served(h), nil
}

func (b *Broker) served(h *heldToken) Served {
	return Served{Record: h.rec, Age: b.cfg.Now().Sub(h.held)}
}

func (b *Broker) userToken(ctx context.Context) (*heldToken, error) {
	b.mu.Lock()
	h := b.user
	b.mu.Unlock()
	if h != nil {
		return h, nil
	}
	v, err, _ := b.sf.Do("user", func() (any, error) { return b.acquireUser(ctx, nil) })
	if err != nil {
		return nil, err
	}
	return v.(*heldToken), nil
}

// acquireUser gets a usable user token into memory: from the store if it is
// there and Exceptionless accepts it, else by logging in. rejected, if set,
// is a token Exceptionless just refused, so a store copy equal to it is not
// trusted again.
func (b *Broker) acquireUser(ctx context.Context, rejected *exceptionless.Token) (*heldToken, error) {
	b.mu.Lock()
	if b.user != nil && (rejected == nil || b.user.rec.Token != *rejected) {
		h := b.user
		b.mu.Unlock()
		return h, nil
	}
	b.mu.Unlock()

	rec, version, err := b.cfg.Store.Load(ctx, UserKey)
	switch {
	case err == nil:
		b.noteVault(nil)
		if rejected == nil || rec.Token != *rejected {
			ok, verr := b.checkUser(ctx, rec.Token)
			if ok {
				b.log.Info("using the user token stored in vault", "version", version,
					"obtained_by", rec.ObtainedBy, "obtained_at", rec.ObtainedAt)
				return b.keepUser(rec, version), nil
			}
			if verr != nil {
				// Exceptionless could not be asked; the stored token may be
				// fine. Serve it rather than logging in blind.
				b.log.Warn("cannot check the stored user token; using it unchecked", "err", verr)
				return b.keepUser(rec, version), nil
			}
			b.log.Info("stored user token was rejected by Exceptionless; logging in")
		}
	case errors.Is(err, ErrNotFound):
		// Vault answers a missing mount like a missing key; make sure the
		// emptiness is real before spending a login attempt on it.
		if perr := b.cfg.Store.Ping(ctx); perr != nil {
			b.noteVault(perr)
			b.setUserProblem("vault unusable")
			return nil, fmt.Errorf("%w: vault unusable (see the exlessd journal)", ErrUnavailable)
		}
		b.noteVault(nil)
		b.log.Info("no user token in vault; logging in")
	default:
		b.noteVault(err)
		b.setUserProblem("vault unreachable")
		return nil, fmt.Errorf("%w: vault unreachable", ErrUnavailable)
	}

	tok, err := b.login(ctx)
	if err != nil {
		return nil, err
	}
	now := b.cfg.Now()
	rec = Record{
		Schema: RecordSchema, Token: tok, Scope: ScopeUser,
		ObtainedAt: now.UTC(), ObtainedBy: b.cfg.Host,
	}
	newVersion, err := b.cfg.Store.Save(ctx, UserKey, rec, version)
	switch {
	case err == nil:
		b.noteVault(nil)
		b.log.Info("stored user token in vault", "version", newVersion)
		return b.keepUser(rec, newVersion), nil
	case errors.Is(err, ErrConflict):
		// Another daemon stored one first. Logins return the account's one
		// shared token, so theirs is as good as ours: take it.
		theirs, v, lerr := b.cfg.Store.Load(ctx, UserKey)
		if lerr == nil {
			b.log.Info("another daemon stored the user token first; using it", "version", v)
			return b.keepUser(theirs, v), nil
		}
		b.noteVault(lerr)
		return b.keepUser(rec, version), nil
	default:
		// Serve from memory; the next start will log in again, which
		// returns the same shared token.
		b.noteVault(err)
		b.log.Error("cannot store the user token in vault; holding it in memory only", "err", err)
		return b.keepUser(rec, version), nil
	}
}

// checkUser asks Exceptionless whether tok is still valid. It returns
// (false, nil) when the token was rejected and (false, err) when the question
// could not be answered.
func (b *Broker) checkUser(ctx context.Context, tok exceptionless.Token) (bool, error) {
	_, err := b.cfg.Upstream.Me(ctx, tok)
	switch {
	case err == nil:
		b.noteUpstream("")
		return true, nil
	case errors.Is(err, exceptionless.ErrUnauthorized):
		b.noteUpstream("")
		return false, nil
	default:
		b.noteUpstream("exceptionless unreachable")
		return false, err
	}
}

func (b *Broker) login(ctx context.Context) (exceptionless.Token, error) {
	now := b.cfg.Now()
	b.mu.Lock()
	notBefore := b.loginNotBefore
	b.mu.Unlock()
	if now.Before(notBefore) {
		return "", fmt.Errorf("%w: login held back until %s after a failed attempt", ErrUnavailable, notBefore.UTC().Format(time.TimeOnly+" MST"))
	}
	password, err := b.cfg.Password()
	if err != nil {
		b.setUserProblem("cannot read the Exceptionless password file")
		b.log.Error("read password", "err", err)
		return "", fmt.Errorf("%w: cannot read the Exceptionless password file", ErrUnavailable)
	}
	defer clear(password)
	tok, err := b.cfg.Upstream.Login(ctx, b.cfg.Email, password)
	if err == nil {
		b.log.Info("logged in to exceptionless", "email", b.cfg.Email)
		b.noteUpstream("")
		return tok, nil
	}
	var reason string
	switch {
	case errors.Is(err, exceptionless.ErrLoginDenied):
		reason = "exceptionless refused the login (login throttle: too many attempts this quarter hour)"
	case errors.Is(err, exceptionless.ErrLoginFailed):
		reason = "exceptionless rejected the email or password"
	case errors.Is(err, exceptionless.ErrLoginRejected):
		reason = "exceptionless rejected the login (bad credentials or login throttle)"
	default:
		reason = "exceptionless unreachable during login"
	}
	// Wait for the next quarter hour: the server's attempt counters reset
	// there, and one attempt per window can never reach its limit of five.
	next := now.UTC().Truncate(15 * time.Minute).Add(15 * time.Minute)
	b.mu.Lock()
	b.loginNotBefore = next
	b.mu.Unlock()
	b.setUserProblem(reason)
	b.noteUpstream(reason)
	b.log.Error("login failed", "reason", reason, "err", err, "next_attempt", next)
	return "", fmt.Errorf("%w: %s", ErrUnavailable, reason)
}

func (b *Broker) keepUser(rec Record, version int) *heldToken {
	h := &heldToken{rec: rec, version: version, held: b.cfg.Now()}
	b.mu.Lock()
	b.user = h
	b.userProblem = ""
	b.mu.Unlock()
	return h
}

// dropUser forgets the cached user token if it is still tok.
func (b *Broker) dropUser(tok exceptionless.Token) {
	b.mu.Lock()
	if b.user != nil && b.user.rec.Token == tok {
		b.user = nil
		b.userProblem = "user token rejected by exceptionless"
	}
	b.mu.Unlock()
}

// ClientToken returns the client token for a project: from memory, else from
// the store, else minted with the user token and stored for every host.
func (b *Broker) ClientToken(ctx context.Context, projectID string) (Served, error) {
	b.mu.Lock()
	h := b.clients[projectID]
	b.mu.Unlock()
	if h != nil {
		return b.served(h), nil
	}
	v, err, _ := b.sf.Do("client/"+projectID, func() (any, error) { return b.acquireClient(ctx, projectID) })
	if err != nil {
		return Served{}, err
	}
	return b.served(v.(*heldToken)), nil
}

func (b *Broker) acquireClient(ctx context.Context, projectID string) (*heldToken, error) {
	key := ClientKey(projectID)
	rec, version, err := b.cfg.Store.Load(ctx, key)
	switch {
	case err == nil:
		b.noteVault(nil)
		return b.keepClient(projectID, rec, version), nil
	case errors.Is(err, ErrNotFound):
		b.noteVault(nil)
	default:
		b.noteVault(err)
		return nil, fmt.Errorf("%w: vault unreachable", ErrUnavailable)
	}

	minted, err := b.mint(ctx, projectID)
	if err != nil {
		return nil, err
	}
	rec = Record{
		Schema: RecordSchema, Token: minted.ID, Scope: ScopeClient,
		ProjectID: projectID, OrganizationID: minted.OrganizationID,
		ObtainedAt: b.cfg.Now().UTC(), ObtainedBy: b.cfg.Host,
	}
	if minted.ExpiresUTC != nil {
		rec.ExpiresAt = minted.ExpiresUTC.UTC()
	}
	newVersion, err := b.cfg.Store.Save(ctx, key, rec, version)
	switch {
	case err == nil:
		b.log.Info("minted and stored a client token", "project", projectID, "version", newVersion)
		return b.keepClient(projectID, rec, newVersion), nil
	case errors.Is(err, ErrConflict):
		// Another daemon minted one first; use theirs and revoke ours so no
		// orphan key stays valid.
		theirs, v, lerr := b.cfg.Store.Load(ctx, key)
		b.revoke(ctx, minted.ID, projectID)
		if lerr != nil {
			b.noteVault(lerr)
			return nil, fmt.Errorf("%w: vault unreachable", ErrUnavailable)
		}
		return b.keepClient(projectID, theirs, v), nil
	default:
		// A token we cannot store would be minted again by every host and
		// every restart; revoke it and report Vault as the problem.
		b.noteVault(err)
		b.log.Error("cannot store a minted client token; revoking it", "project", projectID, "err", err)
		b.revoke(ctx, minted.ID, projectID)
		return nil, fmt.Errorf("%w: vault unreachable", ErrUnavailable)
	}
}

// mint creates a client token for the project, logging in again once if the
// user token turns out to be rejected.
func (b *Broker) mint(ctx context.Context, projectID string) (exceptionless.ViewToken, error) {
	for attempt := 0; ; attempt++ {
		user, err := b.userToken(ctx)
		if err != nil {
			return exceptionless.ViewToken{}, err
		}
		vt, err := b.cfg.Upstream.CreateProjectToken(ctx, user.rec.Token, projectID, exceptionless.NewToken{
			Scopes: []string{ScopeClient},
			Notes:  "exless: minted by " + b.cfg.Host,
		})
		switch {
		case err == nil:
			b.noteUpstream("")
			return vt, nil
		case errors.Is(err, exceptionless.ErrNotFound):
			return vt, ErrProjectNotFound
		case errors.Is(err, exceptionless.ErrUnauthorized) && attempt == 0:
			b.log.Warn("user token rejected while minting; logging in again")
			b.dropUser(user.rec.Token)
			tok := user.rec.Token
			if _, err := b.acquireUserShared(ctx, &tok); err != nil {
				return vt, err
			}
		default:
			b.noteUpstream("exceptionless unavailable")
			b.log.Error("mint client token", "project", projectID, "err", err)
			return vt, fmt.Errorf("%w: exceptionless unavailable", ErrUnavailable)
		}
	}
}

func (b *Broker) acquireUserShared(ctx context.Context, rejected *exceptionless.Token) (*heldToken, error) {
	v, err, _ := b.sf.Do("user", func() (any, error) { return b.acquireUser(ctx, rejected) })
	if err != nil {
		return nil, err
	}
	return v.(*heldToken), nil
}

func (b *Broker) revoke(ctx context.Context, id exceptionless.Token, projectID string) {
	user, err := b.userToken(ctx)
	if err == nil {
		err = b.cfg.Upstream.DeleteTokens(ctx, user.rec.Token, id)
	}
	if err != nil {
		b.log.Error("could not revoke a surplus client token; delete it in Exceptionless", "project", projectID, "err", err)
	}
}

func (b *Broker) keepClient(projectID string, rec Record, version int) *heldToken {
	h := &heldToken{rec: rec, version: version, held: b.cfg.Now()}
	b.mu.Lock()
	b.clients[projectID] = h
	b.mu.Unlock()
	return h
}

func (b *Broker) setUserProblem(s string) {
	b.mu.Lock()
	b.userProblem = s
	b.mu.Unlock()
}

func (b *Broker) noteVault(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		b.vaultOK, b.vaultProblem = true, ""
		return
	}
	if b.vaultOK || b.vaultProblem == "" {
		b.log.Error("vault", "err", err)
	}
	b.vaultOK, b.vaultProblem = false, "vault unreachable"
}

func (b *Broker) noteUpstream(problem string) {
	b.mu.Lock()
	b.upstreamProb = problem
	b.mu.Unlock()
}

// BrokerStatus is the broker's part of Status.
type BrokerStatus struct {
	LoggedIn        bool
	VaultReachable  bool
	ClientTokens    int
	DegradedReasons []string
}

// Status reports the broker's state. It holds no secrets.
func (b *Broker) Status() BrokerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := BrokerStatus{LoggedIn: b.user != nil, VaultReachable: b.vaultOK, ClientTokens: len(b.clients)}
	if b.user == nil && b.userProblem != "" {
		s.DegradedReasons = append(s.DegradedReasons, "not logged in: "+b.userProblem)
	}
	if b.vaultProblem != "" {
		s.DegradedReasons = append(s.DegradedReasons, b.vaultProblem)
	}
	if b.upstreamProb != "" && b.user != nil {
		s.DegradedReasons = append(s.DegradedReasons, b.upstreamProb)
	}
	return s
}
