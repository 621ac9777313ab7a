package daemon

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
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
	ProjectTokens(ctx context.Context, tok exceptionless.Token, projectID string) ([]exceptionless.ViewToken, error)
	DeleteTokens(ctx context.Context, tok exceptionless.Token, ids ...exceptionless.Token) error
	ChangePassword(ctx context.Context, tok exceptionless.Token, current, next []byte) (exceptionless.Token, error)
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

// BrokerConfig wires a Broker. Zero durations take the defaults below.
type BrokerConfig struct {
	Store    TokenStore
	Upstream Upstream
	Email    string
	// Password returns the Exceptionless password. It is called only when
	// a login is needed, so the secret is not held in memory between logins.
	// Unused when PasswordKey is set.
	Password func() ([]byte, error)
	// PasswordKey, when set, is the store key of a record holding the
	// password together with the user token (which then lives there rather
	// than under UserKey), so that RotatePassword can publish a new password
	// and its token in one check-and-set write.
	PasswordKey string
	Host        string // recorded in Vault as who obtained a token
	Logger      *slog.Logger
	Now         func() time.Time

	// PollInterval is how often held records are re-read from Vault, to
	// pick up other hosts' rotations and to prove they are still current.
	PollInterval time.Duration
	// MaxStaleness is how long a token is served after its record was last
	// read from Vault successfully (so through a Vault outage).
	MaxStaleness time.Duration
	// LeaseTTL bounds how long a daemon that died holding the fleet lease
	// blocks the others.
	LeaseTTL time.Duration
	// LeaseWait is how long a request waits for another daemon's login or
	// mint to appear in Vault.
	LeaseWait time.Duration
	// LoginBudget is how many login attempts the whole fleet may make per
	// wall-clock quarter hour. Exceptionless refuses the sixth.
	LoginBudget int
	// PendingSettleAfter is how old (by Vault's clock) a pending password
	// change must be before it may be withdrawn: until then the
	// change-password request may still be on its way to Exceptionless.
	PendingSettleAfter time.Duration
	// Grace is how long a rotated-out client token stays valid by default.
	Grace time.Duration
	// MaxAge rotates client tokens older than this; zero never does.
	MaxAge time.Duration
}

// Defaults for BrokerConfig.
const (
	DefaultPollInterval = 30 * time.Second
	DefaultMaxStaleness = time.Hour
	DefaultLeaseTTL     = 30 * time.Second
	DefaultLeaseWait    = 20 * time.Second
	DefaultLoginBudget  = 3
	DefaultGrace        = 2 * time.Hour
	// DefaultPendingSettleAfter exceeds the Exceptionless client's request
	// timeout (60 s) with room for clock steps.
	DefaultPendingSettleAfter = 3 * time.Minute
	// unknownProjectMemory is how long a 404 for a project is remembered,
	// so a typo loop does not spend the organization's API budget.
	unknownProjectMemory = 5 * time.Minute
)

// heldToken is one token in memory. It is never changed once made: an
// update replaces it, so readers need no lock once they hold one.
type heldToken struct {
	rec     Record
	version int
	held    time.Time // when it came into memory
	read    time.Time // last successful read from (or write to) the store
}

// Broker obtains, stores and caches tokens. Requests are served from memory;
// Vault and Exceptionless are called only for what is missing, and by a
// background loop (Run) that polls Vault, retries after failures, revokes
// retired tokens and rotates old ones.
//
// Logging in is guarded three ways, because Exceptionless counts every
// attempt per email and refuses the sixth in a wall-clock quarter hour even
// with the right password (locking out the account's web sessions too): a
// fleet-wide lease in Vault lets one daemon log in while the others wait for
// its result; a fleet-wide budget in Vault caps attempts per quarter hour;
// and after any failed login this daemon waits for the next quarter hour.
type Broker struct {
	cfg      BrokerConfig
	log      *slog.Logger
	sf       singleflight.Group
	projects *projectDirectory
	id       string // this daemon's lease holder id

	// Every call to Vault and Exceptionless, for metrics and status.
	vaultCalls, upstreamCalls callCounts

	mu                sync.Mutex
	user              *heldToken
	clients           map[string]*heldToken
	unknown           map[string]time.Time // project -> forget the 404 after
	loginNotBefore    time.Time
	upstreamNotBefore time.Time
	upstreamFails     int
	vaultNotBefore    time.Time
	vaultFails        int
	vaultOK           bool
	userProblem       string
	vaultProblem      string
	upstreamProblem   string
	leaseHolder       string
	lastRotation      time.Time
	pendingPassword   string // "" or why a password change awaits resolution
	counters          BrokerCounters
}

// BrokerCounters counts what the broker did, for tests and status.
type BrokerCounters struct {
	Logins, Mints, Revocations, Rotations, Adopted uint64
	PasswordChanges                                uint64
}

// NewBroker returns a broker; call Start, then Run in the background.
func NewBroker(cfg BrokerConfig) *Broker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.PollInterval, DefaultPollInterval)
	def(&cfg.MaxStaleness, DefaultMaxStaleness)
	def(&cfg.LeaseTTL, DefaultLeaseTTL)
	def(&cfg.LeaseWait, DefaultLeaseWait)
	def(&cfg.Grace, DefaultGrace)
	def(&cfg.PendingSettleAfter, DefaultPendingSettleAfter)
	if cfg.LoginBudget <= 0 {
		cfg.LoginBudget = DefaultLoginBudget
	}
	b := &Broker{
		cfg:         cfg,
		log:         cfg.Logger.With("system", "broker"),
		id:          cfg.Host + "/" + randomHex(6),
		clients:     map[string]*heldToken{},
		unknown:     map[string]time.Time{},
		userProblem: "not logged in yet",
	}
	if cfg.Store != nil {
		b.cfg.Store = countingStore{cfg.Store, &b.vaultCalls}
	}
	if cfg.Upstream != nil {
		b.cfg.Upstream = countingUpstream{cfg.Upstream, &b.upstreamCalls}
	}
	b.projects = &projectDirectory{
		list: b.listProjects, now: cfg.Now, fresh: nameFreshness, minRetry: minNameRefresh,
	}
	return b
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

// ID is this daemon's id in the fleet lease.
func (b *Broker) ID() string { return b.id }

// Start loads the user token from the store, checks it with Exceptionless,
// and logs in (under the fleet lease) if there is none or it was rejected.
// A failure leaves the broker running degraded (Status says why; Run keeps
// retrying); it is returned for logging.
func (b *Broker) Start(ctx context.Context) error {
	_, err := b.userToken(ctx)
	return err
}

// Served is a token record as handed out, with how long the broker has held it.
type Served struct {
	Record
	Age time.Duration // since the record was last read from the store
}

// UserToken returns the user token record.
func (b *Broker) UserToken(ctx context.Context) (Served, error) {
	h, err := b.userToken(ctx)
	if err != nil {
		return Served{}, err
	}
	return b.serve(h)
}

func (b *Broker) serve(h *heldToken) (Served, error) {
	// A heldToken never changes once made (keepUser, keepClient).
	read, rec := h.read, h.rec
	age := b.cfg.Now().Sub(read)
	if age > b.cfg.MaxStaleness {
		return Served{}, fmt.Errorf("%w: the token was last confirmed in vault %s ago, beyond max_staleness (%s)",
			ErrUnavailable, age.Round(time.Second), b.cfg.MaxStaleness)
	}
	return Served{Record: rec, Age: age}, nil
}

func (b *Broker) userToken(ctx context.Context) (*heldToken, error) {
	b.mu.Lock()
	h := b.user
	b.mu.Unlock()
	if h != nil {
		return h, nil
	}
	return b.acquireUserShared(ctx, nil)
}

func (b *Broker) acquireUserShared(ctx context.Context, rejected *exceptionless.Token) (*heldToken, error) {
	v, err, _ := b.sf.Do("user", func() (any, error) { return b.acquireUser(ctx, rejected) })
	if err != nil {
		return nil, err
	}
	return v.(*heldToken), nil
}

// acquireUser gets a usable user token into memory: from the store if it is
// there and Exceptionless accepts it, else by logging in under the lease.
// rejected, if set, is a token Exceptionless just refused.
func (b *Broker) acquireUser(ctx context.Context, rejected *exceptionless.Token) (*heldToken, error) {
	b.mu.Lock()
	if b.user != nil && (rejected == nil || b.user.rec.Token != *rejected) {
		h := b.user
		b.mu.Unlock()
		return h, nil
	}
	b.mu.Unlock()
	if err := b.vaultGate(); err != nil {
		return nil, err
	}

	rec, version, err := b.loadUser(ctx)
	switch {
	case err == nil:
		b.vaultSuccess()
		if rejected == nil || rec.Token != *rejected {
			ok, verr := b.checkUser(ctx, rec.Token)
			if ok || verr != nil {
				if verr != nil {
					// Exceptionless could not be asked; the stored token
					// may be fine. Serve it rather than logging in blind.
					b.log.Warn("cannot check the stored user token; using it unchecked", "err", verr)
				} else {
					b.log.Info("using the user token stored in vault", "version", version,
						"obtained_by", rec.ObtainedBy, "obtained_at", rec.ObtainedAt)
				}
				return b.keepUser(rec, version), nil
			}
			b.log.Info("stored user token was rejected by Exceptionless; logging in")
			tok := rec.Token
			rejected = &tok
		}
	case errors.Is(err, ErrNotFound):
		// Vault answers a missing mount like a missing key; make sure the
		// emptiness is real before spending a login attempt on it.
		if perr := b.cfg.Store.Ping(ctx); perr != nil {
			b.vaultFailure(perr)
			b.setUserProblem("vault unusable")
			return nil, fmt.Errorf("%w: vault unusable (see the exlessd journal)", ErrUnavailable)
		}
		b.vaultSuccess()
		b.log.Info("no user token in vault; logging in")
	default:
		b.vaultFailure(err)
		b.setUserProblem("vault unreachable")
		return nil, fmt.Errorf("%w: vault unreachable", ErrUnavailable)
	}
	return b.loginUnderLease(ctx, rejected)
}

// loginUnderLease logs in unless another daemon of the fleet does it first,
// in which case its result is adopted from Vault.
func (b *Broker) loginUnderLease(ctx context.Context, rejected *exceptionless.Token) (*heldToken, error) {
	// Fail fast while this daemon may not log in anyway.
	if err := b.loginGate(); err != nil {
		// Another daemon may have logged in meanwhile.
		if h := b.adoptUser(ctx, rejected); h != nil {
			return h, nil
		}
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.LeaseWait)
	defer cancel()
	var result *heldToken
	err := b.withLease(ctx, "login",
		func(ctx context.Context) bool {
			if h := b.adoptUser(ctx, rejected); h != nil {
				result = h
				return true
			}
			return false
		},
		func(ctx context.Context, _ string) error {
			if b.cfg.PasswordKey != "" {
				// It spends the budget itself, only on real attempts.
				h, err := b.loginFromStore(ctx)
				result = h
				return err
			}
			if err := b.spendLoginBudget(ctx); err != nil {
				return err
			}
			tok, err := b.login(ctx)
			if err != nil {
				return err
			}
			rec := Record{Schema: RecordSchema, Token: tok, Scope: ScopeUser, ObtainedAt: b.cfg.Now().UTC(), ObtainedBy: b.cfg.Host}
			_, version, lerr := b.cfg.Store.Load(ctx, UserKey)
			if lerr != nil && !errors.Is(lerr, ErrNotFound) {
				b.vaultFailure(lerr)
				result = b.keepUser(rec, 0)
				return nil
			}
			newVersion, err := b.cfg.Store.Save(ctx, UserKey, rec, version)
			switch {
			case err == nil:
				b.log.Info("stored user token in vault", "version", newVersion)
				result = b.keepUser(rec, newVersion)
			case errors.Is(err, ErrConflict):
				// Logins return the account's one shared token, so a
				// record someone else wrote is as good as ours.
				if h := b.adoptUser(ctx, nil); h != nil {
					result = h
					return nil
				}
				result = b.keepUser(rec, version)
			default:
				// Serve from memory; the next start logs in again, which
				// returns the same shared token.
				b.vaultFailure(err)
				b.log.Error("cannot store the user token in vault; holding it in memory only", "err", err)
				result = b.keepUser(rec, version)
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// adoptUser takes the user token from Vault if one is there that is not the
// rejected one.
func (b *Broker) adoptUser(ctx context.Context, rejected *exceptionless.Token) *heldToken {
	rec, version, err := b.loadUser(ctx)
	if err != nil || (rejected != nil && rec.Token == *rejected) {
		return nil
	}
	b.mu.Lock()
	adopted := b.user == nil || b.user.rec.Token != rec.Token
	if adopted {
		b.counters.Adopted++
	}
	b.mu.Unlock()
	return b.keepUser(rec, version)
}

// checkUser asks Exceptionless whether tok is still valid. It returns
// (false, nil) when the token was rejected and (false, err) when the question
// could not be answered.
func (b *Broker) checkUser(ctx context.Context, tok exceptionless.Token) (bool, error) {
	if err := b.upstreamGate(); err != nil {
		return false, err
	}
	_, err := b.cfg.Upstream.Me(ctx, tok)
	switch {
	case err == nil:
		b.upstreamSuccess()
		return true, nil
	case errors.Is(err, exceptionless.ErrUnauthorized):
		b.upstreamSuccess()
		return false, nil
	default:
		b.upstreamFailure(err)
		return false, err
	}
}

// loginGate refuses while this daemon waits out a failed login.
func (b *Broker) loginGate() error {
	b.mu.Lock()
	notBefore, problem := b.loginNotBefore, b.userProblem
	b.mu.Unlock()
	if b.cfg.Now().Before(notBefore) {
		return fmt.Errorf("%w: %s; next login attempt after %s", ErrUnavailable, problem, notBefore.UTC().Format("15:04 MST"))
	}
	return nil
}

// nextQuarter is the next wall-clock quarter-hour boundary after t, when
// Exceptionless resets its login and API counters.
func nextQuarter(t time.Time) time.Time {
	return t.UTC().Truncate(15 * time.Minute).Add(15 * time.Minute)
}

func (b *Broker) login(ctx context.Context) (exceptionless.Token, error) {
	if err := b.loginGate(); err != nil {
		return "", err
	}
	password, err := b.cfg.Password()
	if err != nil {
		b.setUserProblem("cannot read the Exceptionless password file")
		b.log.Error("read password", "err", err)
		return "", fmt.Errorf("%w: cannot read the Exceptionless password file", ErrUnavailable)
	}
	defer clear(password)
	tok, err := b.attemptLogin(ctx, password)
	if err != nil {
		return "", b.loginFailed(err)
	}
	return tok, nil
}

// attemptLogin makes one login call; the caller decides what a failure
// means (login does, through loginFailed).
func (b *Broker) attemptLogin(ctx context.Context, password []byte) (exceptionless.Token, error) {
	b.mu.Lock()
	b.counters.Logins++
	b.mu.Unlock()
	tok, err := b.cfg.Upstream.Login(ctx, b.cfg.Email, password)
	if err == nil {
		b.log.Info("logged in to exceptionless", "email", b.cfg.Email)
		b.upstreamSuccess()
	}
	return tok, err
}

// loginFailed records a failed login: no more attempts from this daemon
// until the next quarter hour, and the reason in status.
func (b *Broker) loginFailed(err error) error {
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
	// Any failed attempt counts on the server until the next quarter hour,
	// so wait for it: one attempt per window can never reach the limit.
	next := nextQuarter(b.cfg.Now())
	b.mu.Lock()
	b.loginNotBefore = next
	b.mu.Unlock()
	b.setUserProblem(reason)
	b.upstreamFailure(err)
	b.log.Error("login failed", "reason", reason, "err", err, "next_attempt", next)
	return fmt.Errorf("%w: %s", ErrUnavailable, reason)
}

func (b *Broker) keepUser(rec Record, version int) *heldToken {
	// Memory keeps the token only: a login with a password kept in the
	// store reads it again, so it is not held between logins.
	rec.Password, rec.PendingPassword = nil, nil
	now := b.cfg.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.user != nil && b.user.rec.Token == rec.Token {
		// A new value, never an update in place: callers read the
		// *heldToken they got without holding mu.
		b.user = &heldToken{rec: rec, version: version, held: b.user.held, read: now}
		return b.user
	}
	b.user = &heldToken{rec: rec, version: version, held: now, read: now}
	b.userProblem = ""
	return b.user
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
// the store, else minted (by this daemon or another of the fleet) and stored
// for every host.
func (b *Broker) ClientToken(ctx context.Context, projectID string) (Served, error) {
	b.mu.Lock()
	h := b.clients[projectID]
	until, unknown := b.unknown[projectID]
	b.mu.Unlock()
	if h != nil {
		return b.serve(h)
	}
	if unknown && b.cfg.Now().Before(until) {
		return Served{}, ErrProjectNotFound
	}
	v, err, _ := b.sf.Do("client/"+projectID, func() (any, error) { return b.acquireClient(ctx, projectID) })
	if err != nil {
		return Served{}, err
	}
	return b.serve(v.(*heldToken))
}

// Has reports whether the broker holds a client token for the project.
func (b *Broker) Has(projectID string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.clients[projectID] != nil
}

func (b *Broker) acquireClient(ctx context.Context, projectID string) (*heldToken, error) {
	if err := b.vaultGate(); err != nil {
		return nil, err
	}
	if h := b.adoptClient(ctx, projectID); h != nil {
		return h, nil
	}
	if err := b.vaultGate(); err != nil {
		return nil, err
	}
	if err := b.upstreamGate(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		user, err := b.userToken(ctx)
		if err != nil {
			return nil, err
		}
		var (
			result   *heldToken
			rejected bool
		)
		lctx, cancel := context.WithTimeout(ctx, b.cfg.LeaseWait)
		err = b.withLease(lctx, "mint/"+projectID,
			func(ctx context.Context) bool {
				result = b.adoptClient(ctx, projectID)
				return result != nil
			},
			func(ctx context.Context, nonce string) error {
				h, err := b.mint(ctx, user.rec.Token, projectID, nonce)
				if errors.Is(err, exceptionless.ErrUnauthorized) {
					rejected = true
				}
				result = h
				return err
			})
		cancel()
		if rejected && attempt == 0 {
			b.log.Warn("user token rejected while minting; logging in again")
			b.dropUser(user.rec.Token)
			tok := user.rec.Token
			if _, err := b.acquireUserShared(ctx, &tok); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			if errors.Is(err, exceptionless.ErrUnauthorized) {
				return nil, fmt.Errorf("%w: exceptionless rejected the user token", ErrUnavailable)
			}
			return nil, err
		}
		return result, nil
	}
}

// adoptClient takes a project's client token from Vault if it is there.
func (b *Broker) adoptClient(ctx context.Context, projectID string) *heldToken {
	rec, version, err := b.cfg.Store.Load(ctx, ClientKey(projectID))
	switch {
	case err == nil:
		b.vaultSuccess()
		return b.keepClient(projectID, rec, version)
	case errors.Is(err, ErrNotFound):
		b.vaultSuccess()
	default:
		b.vaultFailure(err)
	}
	return nil
}

// notes tags a minted token with this daemon and the lease's nonce, so a
// daemon taking over an expired lease can find what its holder minted.
func (b *Broker) notes(nonce string) string {
	return fmt.Sprintf("exless: minted by %s (op %s)", b.cfg.Host, nonce)
}

// mint creates a client token and stores it; it runs under the lease.
func (b *Broker) mint(ctx context.Context, user exceptionless.Token, projectID, nonce string) (*heldToken, error) {
	vt, err := b.cfg.Upstream.CreateProjectToken(ctx, user, projectID, exceptionless.NewToken{
		Scopes: []string{ScopeClient},
		Notes:  b.notes(nonce),
	})
	switch {
	case err == nil:
		b.upstreamSuccess()
	case errors.Is(err, exceptionless.ErrNotFound):
		b.upstreamSuccess()
		b.mu.Lock()
		b.unknown[projectID] = b.cfg.Now().Add(unknownProjectMemory)
		b.mu.Unlock()
		return nil, ErrProjectNotFound
	case errors.Is(err, exceptionless.ErrUnauthorized):
		return nil, err
	default:
		b.upstreamFailure(err)
		b.log.Error("mint client token", "project", projectID, "err", err)
		return nil, fmt.Errorf("%w: exceptionless unavailable", ErrUnavailable)
	}
	b.mu.Lock()
	b.counters.Mints++
	b.mu.Unlock()
	rec := Record{
		Schema: RecordSchema, Token: vt.ID, Scope: ScopeClient,
		ProjectID: projectID, OrganizationID: vt.OrganizationID,
		ObtainedAt: b.cfg.Now().UTC(), ObtainedBy: b.cfg.Host,
	}
	if vt.ExpiresUTC != nil {
		rec.ExpiresAt = vt.ExpiresUTC.UTC()
	}
	key := ClientKey(projectID)
	_, version, err := b.cfg.Store.Load(ctx, key)
	if err == nil {
		// Someone stored one after all (a lease that expired under them):
		// theirs wins, ours goes.
		b.revoke(ctx, user, projectID, vt.ID)
		return b.adoptClient(ctx, projectID), nil
	}
	if !errors.Is(err, ErrNotFound) {
		b.vaultFailure(err)
		b.revoke(ctx, user, projectID, vt.ID)
		return nil, fmt.Errorf("%w: vault unreachable", ErrUnavailable)
	}
	newVersion, err := b.cfg.Store.Save(ctx, key, rec, version)
	switch {
	case err == nil:
		b.vaultSuccess()
		b.log.Info("minted and stored a client token", "project", projectID, "version", newVersion, "token_fp", Fingerprint(rec.Token))
		return b.keepClient(projectID, rec, newVersion), nil
	case errors.Is(err, ErrConflict):
		if cur, v, ok := b.landed(ctx, key, vt.ID); ok {
			return b.keepClient(projectID, cur, v), nil
		}
		b.revoke(ctx, user, projectID, vt.ID)
		if h := b.adoptClient(ctx, projectID); h != nil {
			return h, nil
		}
		return nil, fmt.Errorf("%w: vault unreachable", ErrUnavailable)
	default:
		// A token we cannot store would be minted again by every host and
		// every restart; revoke it and report Vault as the problem.
		b.vaultFailure(err)
		b.log.Error("cannot store a minted client token; revoking it", "project", projectID, "err", err)
		b.revoke(ctx, user, projectID, vt.ID)
		return nil, fmt.Errorf("%w: vault unreachable", ErrUnavailable)
	}
}

// landed reports whether a write that came back as a conflict was in fact
// our own: a write that reached a Vault leader just before it died is
// replayed on the new leader and conflicts with itself. Revoking the token
// then would revoke the one Vault holds.
func (b *Broker) landed(ctx context.Context, key string, tok exceptionless.Token) (Record, int, bool) {
	rec, v, err := b.cfg.Store.Load(ctx, key)
	if err != nil || rec.Token != tok {
		return Record{}, 0, false
	}
	b.log.Info("a write reported as a conflict had landed (replayed after a Vault failover)", "key", key)
	return rec, v, true
}

func (b *Broker) revoke(ctx context.Context, user exceptionless.Token, projectID string, ids ...exceptionless.Token) {
	err := b.cfg.Upstream.DeleteTokens(ctx, user, ids...)
	if err != nil && !errors.Is(err, exceptionless.ErrNotFound) {
		b.log.Error("could not revoke client tokens; delete them in Exceptionless", "project", projectID, "count", len(ids), "err", err)
		return
	}
	b.mu.Lock()
	b.counters.Revocations += uint64(len(ids))
	b.mu.Unlock()
}

func (b *Broker) keepClient(projectID string, rec Record, version int) *heldToken {
	now := b.cfg.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if h := b.clients[projectID]; h != nil && h.rec.Token == rec.Token {
		h = &heldToken{rec: rec, version: version, held: h.held, read: now} // see keepUser
		b.clients[projectID] = h
		return h
	}
	h := &heldToken{rec: rec, version: version, held: now, read: now}
	b.clients[projectID] = h
	return h
}

func (b *Broker) setUserProblem(s string) {
	b.mu.Lock()
	b.userProblem = s
	b.mu.Unlock()
}

// backoff returns an exponential delay with jitter for the n-th failure.
func backoff(n int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	// ±20% so a fleet that failed together does not retry together.
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// vaultGate refuses while this daemon backs off after Vault failures.
func (b *Broker) vaultGate() error {
	b.mu.Lock()
	notBefore := b.vaultNotBefore
	b.mu.Unlock()
	if b.cfg.Now().Before(notBefore) {
		return fmt.Errorf("%w: vault unreachable; retrying after %s", ErrUnavailable, notBefore.UTC().Format(time.TimeOnly+" MST"))
	}
	return nil
}

func (b *Broker) vaultSuccess() {
	b.mu.Lock()
	b.vaultOK, b.vaultProblem, b.vaultFails, b.vaultNotBefore = true, "", 0, time.Time{}
	b.mu.Unlock()
}

func (b *Broker) vaultFailure(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.vaultFails == 0 {
		b.log.Error("vault", "err", err)
	}
	b.vaultFails++
	b.vaultNotBefore = b.cfg.Now().Add(backoff(b.vaultFails, 500*time.Millisecond, 2*time.Minute))
	b.vaultOK, b.vaultProblem = false, "vault unreachable"
}

// upstreamGate refuses while this daemon backs off after Exceptionless
// failures.
func (b *Broker) upstreamGate() error {
	b.mu.Lock()
	notBefore, problem := b.upstreamNotBefore, b.upstreamProblem
	b.mu.Unlock()
	if b.cfg.Now().Before(notBefore) {
		return fmt.Errorf("%w: %s; retrying after %s", ErrUnavailable, problem, notBefore.UTC().Format(time.TimeOnly+" MST"))
	}
	return nil
}

func (b *Broker) upstreamSuccess() {
	b.mu.Lock()
	b.upstreamProblem, b.upstreamFails, b.upstreamNotBefore = "", 0, time.Time{}
	b.mu.Unlock()
}

func (b *Broker) upstreamFailure(err error) {
	now := b.cfg.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.upstreamFails++
	switch {
	case errors.Is(err, exceptionless.ErrThrottled):
		// The API's throttle counts per fixed quarter hour and sends no
		// Retry-After: wait for the window to turn.
		b.upstreamNotBefore = nextQuarter(now)
		b.upstreamProblem = problemUpstreamThrottled
	case errors.Is(err, exceptionless.ErrLoginDenied), errors.Is(err, exceptionless.ErrLoginFailed),
		errors.Is(err, exceptionless.ErrLoginRejected):
		b.upstreamProblem = problemUpstreamLogin
	default:
		b.upstreamNotBefore = now.Add(backoff(b.upstreamFails, 500*time.Millisecond, 5*time.Minute))
		b.upstreamProblem = problemUpstreamDown
	}
}

// Why the daemon is degraded, as bounded codes (for metrics) beside the
// reasons' text (for people).
const (
	DegradedNotLoggedIn       = "not_logged_in"
	DegradedVaultUnreachable  = "vault_unreachable"
	DegradedUpstreamDown      = "upstream_unavailable"
	DegradedUpstreamThrottled = "upstream_rate_limited"
	DegradedUpstreamLogin     = "upstream_login_refused"
	DegradedStaleTokens       = "stale_tokens"
	DegradedPasswordPending   = "password_change_unresolved"
)

// DegradedCodes lists every code BrokerStatus.DegradedCodes can hold.
var DegradedCodes = []string{DegradedNotLoggedIn, DegradedVaultUnreachable, DegradedUpstreamDown,
	DegradedUpstreamThrottled, DegradedUpstreamLogin, DegradedStaleTokens, DegradedPasswordPending}

const (
	problemUpstreamThrottled = "exceptionless rate limit reached"
	problemUpstreamLogin     = "exceptionless refused the login"
	problemUpstreamDown      = "exceptionless unavailable"
)

// BrokerStatus is the broker's part of Status.
type BrokerStatus struct {
	LoggedIn        bool
	VaultReachable  bool
	ClientTokens    int
	Tokens          []TokenStatus
	LeaseHolder     string
	LastRotation    time.Time
	Counters        BrokerCounters
	DegradedReasons []string
	// DegradedCodes holds one code of DegradedCodes per reason.
	DegradedCodes []string
}

func (s *BrokerStatus) degrade(code, reason string) {
	s.DegradedCodes = append(s.DegradedCodes, code)
	s.DegradedReasons = append(s.DegradedReasons, reason)
}

// Status reports the broker's state. It holds no secrets.
func (b *Broker) Status() BrokerStatus {
	now := b.cfg.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	s := BrokerStatus{
		LoggedIn: b.user != nil, VaultReachable: b.vaultOK, ClientTokens: len(b.clients),
		LeaseHolder: b.leaseHolder, LastRotation: b.lastRotation, Counters: b.counters,
	}
	add := func(h *heldToken) {
		s.Tokens = append(s.Tokens, TokenStatus{
			Scope: h.rec.Scope, ProjectID: h.rec.ProjectID, ObtainedBy: h.rec.ObtainedBy, ObtainedAt: h.rec.ObtainedAt,
			AgeSeconds: now.Sub(h.rec.ObtainedAt).Seconds(), StaleSeconds: now.Sub(h.read).Seconds(),
			Version: h.version, Retiring: len(h.rec.Retiring), Fingerprint: Fingerprint(h.rec.Token),
		})
	}
	if b.user != nil {
		add(b.user)
	}
	for _, h := range b.clients {
		add(h)
	}
	if b.user == nil && b.userProblem != "" && !(b.vaultProblem != "" && strings.HasPrefix(b.userProblem, "vault")) {
		s.degrade(DegradedNotLoggedIn, "not logged in: "+b.userProblem)
	} else if b.user == nil && b.vaultProblem != "" {
		s.degrade(DegradedNotLoggedIn, "not logged in")
	}
	if b.vaultProblem != "" {
		s.degrade(DegradedVaultUnreachable, b.vaultProblem)
	}
	if b.pendingPassword != "" {
		s.degrade(DegradedPasswordPending, b.pendingPassword)
	}
	if b.upstreamProblem != "" && b.user != nil {
		code := DegradedUpstreamDown
		switch b.upstreamProblem {
		case problemUpstreamThrottled:
			code = DegradedUpstreamThrottled
		case problemUpstreamLogin:
			code = DegradedUpstreamLogin
		}
		s.degrade(code, b.upstreamProblem)
	}
	for _, t := range s.Tokens {
		if time.Duration(t.StaleSeconds*float64(time.Second)) > b.cfg.PollInterval*3 {
			s.degrade(DegradedStaleTokens, fmt.Sprintf("serving tokens last confirmed in vault %s ago", time.Duration(t.StaleSeconds*float64(time.Second)).Round(time.Second)))
			break
		}
	}
	return s
}
