package daemon

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os/user"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/peer"
	"github.com/exless/exless/daemon/policy"
)

// ServerConfig wires a Server.
type ServerConfig struct {
	Broker *Broker
	Policy *policy.Policy
	Logger *slog.Logger
	// Reload re-reads the configuration and applies it (a new policy goes
	// through SetPolicy). It backs POST /v1/reload; nil disables that.
	Reload func(ctx context.Context) error
	// Attestor reads peers; nil means one with default options.
	Attestor *peer.Attestor
	// Limits bound what peers can make the daemon do; zero fields take
	// the defaults of DefaultLimits.
	Limits Limits
}

// Limits bound the resources one peer, or all of them, can take. Every
// cut-off is counted per reason in Status and logged at most once a minute
// per reason.
type Limits struct {
	// MaxConnections is how many connections are served at once; beyond
	// it new connections are closed at once (and counted), not queued.
	// MaxConnectionsPerUID is how many of them one uid may hold, so that
	// one user's idle or stuck connections cannot take every slot.
	MaxConnections       int
	MaxConnectionsPerUID int
	// RequestsPerSecond and Burst are a token bucket per attested
	// identity (uid and systemd unit; uid alone outside units): beyond it
	// a peer gets 429 with Retry-After. All of one uid's units together
	// get uidRateFactor times that.
	RequestsPerSecond float64
	Burst             int
	// HeaderTimeout bounds reading a request's headers, which also cuts a
	// connection that never sends one; RequestTimeout bounds reading a
	// whole request, body included; WriteTimeout bounds handling it and
	// writing the reply; IdleTimeout closes a kept-alive connection that
	// sends nothing more.
	HeaderTimeout  time.Duration
	RequestTimeout time.Duration
	WriteTimeout   time.Duration
	IdleTimeout    time.Duration
	// MaxHeaderBytes bounds a request's headers (431 beyond it);
	// MaxBodyBytes its body (413 beyond it: the API takes no bodies).
	MaxHeaderBytes int
	MaxBodyBytes   int64
	// ExeHashConcurrency is how many executables are hashed at once for
	// exe rules; other first-seen binaries wait their turn (at most
	// HeaderTimeout).
	ExeHashConcurrency int
}

// DefaultLimits are generous for scripts and units, small for a flood.
var DefaultLimits = Limits{
	MaxConnections: 256, MaxConnectionsPerUID: 64,
	RequestsPerSecond: 100, Burst: 200,
	HeaderTimeout: 5 * time.Second, RequestTimeout: 10 * time.Second,
	WriteTimeout: time.Minute, IdleTimeout: time.Minute,
	MaxHeaderBytes: 16 << 10, MaxBodyBytes: 4 << 10,
	ExeHashConcurrency: peer.DefaultHashConcurrency,
}

// Server answers the socket API. Every connection it serves carries the
// peer's kernel-reported credentials, read at accept.
type Server struct {
	broker *Broker
	policy atomic.Pointer[policy.Policy]
	log    *slog.Logger
	names  nameCache
	mux    *http.ServeMux
	reload func(ctx context.Context) error
	attest *peer.Attestor
	limits Limits

	conns     atomic.Int64 // open connections
	uidMu     sync.Mutex
	uidConns  map[uint32]int // open connections per uid
	cuts      cutOffs
	throttled atomic.Uint64 // requests refused by the rate limit
	rateMu    sync.Mutex
	rates     map[rateKey]*rate.Limiter

	served atomic.Uint64
	denied atomic.Uint64

	metrics *serverMetrics

	// receivers remembers which peers got which token (by fingerprint), so
	// a rotation can say who still holds the old one.
	recvMu    sync.Mutex
	receivers map[string][]string

	// misses counts each uid's requests for projects Exceptionless does not
	// have, per quarter hour: a typo loop must not spend the
	// organization's shared API budget.
	missMu sync.Mutex
	misses map[uint32]*missCount
}

// NewServer returns a server; Serve runs it.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{broker: cfg.Broker, log: cfg.Logger.With("system", "server"), reload: cfg.Reload, attest: cfg.Attestor}
	s.limits = cfg.Limits.withDefaults()
	if s.attest == nil {
		s.attest = peer.NewAttestor(peer.Options{})
		s.attest.LimitHashing(s.limits.ExeHashConcurrency, s.limits.HeaderTimeout)
	}
	s.policy.Store(cfg.Policy)
	s.metrics = newServerMetrics(s)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/v1/token", s.handleToken)
	s.mux.HandleFunc("/v1/whoami", s.handleWhoAmI)
	s.mux.HandleFunc("/v1/status", s.handleStatus)
	s.mux.HandleFunc("/v1/reload", s.handleReload)
	s.mux.HandleFunc("/v1/rotate", s.handleRotate)
	s.mux.HandleFunc("/v1/policy/explain", s.handleExplain)
	s.mux.HandleFunc("/v1/metrics", s.handleMetrics)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such endpoint; see GET /v1/token, /v1/whoami, /v1/status, /v1/policy/explain, /v1/metrics and POST /v1/reload")
	})
	return s
}

// SetPolicy replaces the policy for requests that start after it returns.
// User and group names are looked up afresh after it, since a reload is
// also how an operator tells the daemon that /etc/passwd changed.
func (s *Server) SetPolicy(p *policy.Policy) {
	s.policy.Store(p)
	s.names.reset()
}

// Serve accepts connections on ln until ctx ends, then shuts down, letting
// in-flight requests finish for up to five seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.limits.HeaderTimeout,
		ReadTimeout:       s.limits.RequestTimeout,
		WriteTimeout:      s.limits.WriteTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		MaxHeaderBytes:    s.limits.MaxHeaderBytes,
		ConnState: func(c net.Conn, st http.ConnState) {
			if pc, ok := c.(*peerConn); ok {
				pc.setState(st)
			}
		},
		// Requests outlive the shutdown signal so that Shutdown can drain
		// them; Shutdown's own timeout bounds the wait.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*peerConn); ok {
				return context.WithValue(ctx, connKey{}, pc)
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(&peerListener{Listener: ln, s: s}) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// peerListener wraps each accepted connection so that its peer is attested
// before the first byte of a request is read. The attestation runs in the
// connection's own goroutine (a first sight of a binary costs a hash), and a
// connection whose peer cannot be identified fails its first read and is
// closed, so handlers never see an unidentified peer.
type peerListener struct {
	net.Listener
	s *Server
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		// Over a cap a connection is closed at once rather than queued:
		// a flood of idle connections must not delay the peers that
		// matter, nor grow memory without bound.
		if pc := l.s.admit(c); pc != nil {
			return pc, nil
		}
	}
}

type peerConn struct {
	net.Conn
	s         *Server
	once      sync.Once
	closeOnce sync.Once
	caller    *caller
	err       error
	connLimits
}

type connKey struct{}

func (pc *peerConn) Read(b []byte) (int, error) {
	pc.once.Do(pc.attest)
	if pc.err != nil {
		return 0, pc.err
	}
	n, err := pc.Conn.Read(b)
	pc.noteRead(n, err)
	return n, err
}

func (pc *peerConn) attest() {
	start := time.Now()
	c, err := pc.s.attestConn(pc.Conn)
	pc.s.metrics.attested(time.Since(start), err)
	if err != nil {
		pc.cut(cutUnidentified, "err", err)
		pc.err = fmt.Errorf("peer not identified: %w", err)
		return
	}
	pc.caller = c
}

// attestConn reads who is on the other end of c, as the policy needs it.
func (s *Server) attestConn(c net.Conn) (*caller, error) {
	pol := s.policy.Load()
	exe := peer.ExeNone
	switch {
	case pol.WantsExePath():
		exe = peer.ExePathHash
	case pol.WantsExe():
		exe = peer.ExeHash
	}
	pi, err := s.attest.Attest(c, exe)
	if err != nil {
		return nil, err
	}
	id := policy.Identity{
		UID: pi.UID, GID: pi.GID, Groups: pi.Groups,
		Unit: pi.Unit, UserUnit: pi.UserUnit,
	}
	switch {
	case exe == peer.ExeNone:
		id.ExeErr = "not checked: no rule uses exe_paths or exe_sha256"
	case pi.ExeKnown():
		id.ExePath, id.ExeSHA256 = pi.ExePath, pi.ExeSHA256
	case pi.ExeErr != "":
		id.ExeErr = pi.ExeErr
	default:
		id.ExeErr = "executable unknown"
	}
	return &caller{cred: pi.Cred, id: id, pin: pi.PinMethod}, nil
}

// serveHTTP checks what applies to every request, then routes it.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if pc, ok := r.Context().Value(connKey{}).(*peerConn); !ok || pc.caller == nil {
		// Only reachable if the server is run on a listener other than
		// Serve's; fail closed.
		writeError(w, http.StatusInternalServerError, CodeInternal, "peer not identified")
		return
	}
	// Browsers send Origin or Referer; nothing that should talk to this
	// socket does. Refusing them stops cross-site and SSRF tricks.
	if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" {
		writeError(w, http.StatusForbidden, CodeDenied, "requests with Origin or Referer are refused")
		return
	}
	if !validHost(r.Host) {
		writeError(w, http.StatusBadRequest, CodeBadRequest, `bad Host header; use "localhost" or "exlessd"`)
		return
	}
	if pc, _ := r.Context().Value(connKey{}).(*peerConn); pc != nil {
		if !s.readBody(w, r, pc) {
			return
		}
		if wait, ok := s.allowRate(pc.caller); !ok {
			if n := s.throttled.Add(1); n == 1 || n%1000 == 0 {
				s.log.Warn("rate limiting a peer", "uid", pc.caller.cred.UID, "unit", pc.caller.id.Unit, "pid", pc.caller.cred.PID, "throttled_total", n)
			}
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			writeError(w, http.StatusTooManyRequests, CodeRateLimited, "too many requests from this uid and unit; retry after the Retry-After seconds")
			return
		}
	}
	// The mux would redirect an unclean path; nothing legitimate sends one.
	if p := r.URL.Path; p == "" || path.Clean(p) != p {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such endpoint")
		return
	}
	s.mux.ServeHTTP(w, r)
}

func validHost(h string) bool {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return h == "localhost" || h == "exlessd"
}

// caller is a connection's peer as attested at accept.
type caller struct {
	cred peer.Cred
	id   policy.Identity
	pin  string // how the process was pinned
}

func (s *Server) callerOf(r *http.Request) *caller {
	return r.Context().Value(connKey{}).(*peerConn).caller
}

func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, CodeMethod, "use "+strings.Join(methods, " or "))
	return false
}

// audit logs one decision as one record, with everything known of the
// caller and, for a grant, a fingerprint of the token (never the token).
// It runs for every request: the attributes are built in place (LogAttrs,
// no []any boxing), and the record is skipped early when its level is off.
func (s *Server) audit(c *caller, req policy.Request, d policy.Decision, fp string, outcome string) {
	level, decision := slog.LevelWarn, "deny"
	if d.Allow {
		level, decision = slog.LevelInfo, "allow"
	}
	ctx := context.Background()
	if !s.log.Enabled(ctx, level) {
		return
	}
	var buf [14]slog.Attr
	attrs := append(buf[:0],
		slog.String("decision", decision),
		slog.String("action", req.Action),
		slog.Uint64("uid", uint64(c.cred.UID)),
		slog.Uint64("gid", uint64(c.cred.GID)),
		slog.Int64("pid", int64(c.cred.PID)),
		slog.String("pin", c.pin),
	)
	for _, o := range [...]struct{ key, v string }{
		{"rule", d.Rule}, {"scope", req.Scope}, {"project", req.Project}, {"unit", c.id.Unit},
		{"exe_sha256", c.id.ExeSHA256}, {"token_fp", fp}, {"outcome", outcome},
	} {
		if o.v != "" {
			attrs = append(attrs, slog.String(o.key, o.v))
		}
	}
	s.log.LogAttrs(ctx, level, "audit", attrs...)
}

// Fingerprint is a short, one-way tag for a token, so logs can tell tokens
// apart and be matched to a record without holding the secret.
func Fingerprint(t exceptionless.Token) string {
	sum := sha256.Sum256([]byte(t.Reveal()))
	return hex.EncodeToString(sum[:6])
}

// decide applies the policy and, on refusal, answers 403 and audits it.
func (s *Server) decide(w http.ResponseWriter, c *caller, req policy.Request) (policy.Decision, bool) {
	d := s.policy.Load().Decide(c.id, req)
	s.metrics.decision(d)
	if d.Allow {
		return d, true
	}
	s.denied.Add(1)
	s.audit(c, req, d, "", "")
	what := "action " + req.Action
	if req.Action == policy.ActionToken {
		what = "scope " + req.Scope
	} else if req.Scope != "" {
		what += " on scope " + req.Scope
	}
	if req.Project != "" {
		what += " for project " + req.Project
		if req.ProjectName != "" {
			what += " (" + req.ProjectName + ")"
		}
	}
	writeError(w, http.StatusForbidden, CodeDenied, fmt.Sprintf("%s: no rule grants %s", s.describe(c), what))
	return d, false
}

// projectRequest reads scope and project from a request, resolving an
// "organization/name" project to its id, and fills in the project's name
// when the policy has rules that name projects. Names are resolved (which
// may call Exceptionless) only for a peer that some rule could grant.
func (s *Server) projectRequest(w http.ResponseWriter, r *http.Request, action string) (policy.Request, bool) {
	req, ok := s.parseProjectRequest(w, r, action)
	if !ok || req.Scope != ScopeClient {
		return req, ok
	}
	c := s.callerOf(r)
	pol := s.policy.Load()
	if r.URL.Path != "/v1/policy/explain" && !pol.MayAct(c.id, action, ScopeClient) {
		s.decide(w, c, req) // refuses, audits and answers 403
		return req, false
	}
	return s.resolveProject(w, r, req)
}

func (s *Server) parseProjectRequest(w http.ResponseWriter, r *http.Request, action string) (policy.Request, bool) {
	q := r.URL.Query()
	req := policy.Request{Action: action, Scope: q.Get("scope"), Project: q.Get("project")}
	switch req.Scope {
	case ScopeUser:
		if req.Project != "" {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "scope=user takes no project")
			return req, false
		}
		return req, true
	case ScopeClient:
	default:
		writeError(w, http.StatusBadRequest, CodeBadRequest, `scope must be "user" or "client"`)
		return req, false
	}
	if !policy.ValidProjectID(req.Project) && !policy.IsProjectName(req.Project) {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "scope=client needs project=<project id> or project=<organization>/<project name>")
		return req, false
	}
	return req, true
}

func (s *Server) resolveProject(w http.ResponseWriter, r *http.Request, req policy.Request) (policy.Request, bool) {
	switch {
	case policy.ValidProjectID(req.Project):
		if s.policy.Load().WantsProjectNames() {
			req.ProjectName = s.broker.ProjectName(r.Context(), req.Project)
		}
	case policy.IsProjectName(req.Project):
		id, err := s.broker.ProjectID(r.Context(), req.Project)
		switch {
		case err == nil:
			req.ProjectName, req.Project = req.Project, id
		case errors.Is(err, ErrUnknownProjectName):
			writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("exceptionless has no project named %q for this account (use organization/project-name or the project id)", req.Project))
			return req, false
		default:
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable, err.Error())
			return req, false
		}
	default:
		writeError(w, http.StatusBadRequest, CodeBadRequest, "scope=client needs project=<project id> or project=<organization>/<project name>")
		return req, false
	}
	return req, true
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	c := s.callerOf(r)
	req, ok := s.projectRequest(w, r, policy.ActionToken)
	if !ok {
		return
	}
	d, ok := s.decide(w, c, req)
	if !ok {
		return
	}
	if req.Scope == ScopeClient && !s.broker.Has(req.Project) {
		if until, limited := s.missLimited(c.cred.UID); limited {
			s.metrics.missLimited.Add(1)
			s.audit(c, req, d, "", "rate limited (unknown projects)")
			w.Header().Set("Retry-After", strconv.Itoa(int(time.Until(until).Seconds())+1))
			writeError(w, http.StatusTooManyRequests, CodeRateLimited,
				fmt.Sprintf("too many requests for projects Exceptionless does not have; check the project id and retry after %s", until.UTC().Format("15:04 MST")))
			return
		}
	}
	var (
		rec Served
		err error
	)
	if req.Scope == ScopeUser {
		rec, err = s.broker.UserToken(r.Context())
	} else {
		rec, err = s.broker.ClientToken(r.Context(), req.Project)
	}
	if err != nil {
		if errors.Is(err, ErrProjectNotFound) {
			s.noteMiss(c.cred.UID)
		}
		s.failGranted(w, c, req, d, err)
		return
	}
	s.served.Add(1)
	fp := Fingerprint(rec.Token)
	s.audit(c, req, d, fp, "served")
	s.noteReceiver(fp, c)
	writeJSON(w, http.StatusOK, tokenResponse(rec))
}

// failGranted answers a granted request that the broker could not serve,
// audits it, and keeps Vault and Exceptionless details in the journal.
func (s *Server) failGranted(w http.ResponseWriter, c *caller, req policy.Request, d policy.Decision, err error) {
	switch {
	case errors.Is(err, ErrProjectNotFound):
		s.audit(c, req, d, "", "no such project")
		writeError(w, http.StatusNotFound, CodeNotFound, "exceptionless has no project "+req.Project+" for this account")
	case errors.Is(err, ErrNothingToRotate):
		s.audit(c, req, d, "", "nothing to rotate")
		writeError(w, http.StatusNotFound, CodeNotFound, "no client token for project "+req.Project+" yet; fetch one first")
	case errors.Is(err, ErrUnavailable):
		s.audit(c, req, d, "", "unavailable")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, err.Error())
	default:
		s.audit(c, req, d, "", "failed")
		s.log.Error("request failed", "action", req.Action, "err", err)
		writeError(w, http.StatusInternalServerError, CodeInternal, "internal error; see the exlessd journal")
	}
}

func (s *Server) handleWhoAmI(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	c := s.callerOf(r)
	p := s.policy.Load()
	groups := c.cred.Groups
	if groups == nil {
		groups = []uint32{}
	}
	grants := p.Grants(c.id)
	if grants == nil {
		grants = []policy.Grant{}
	}
	groupNames := make([]string, len(groups))
	for i, g := range groups {
		groupNames[i] = s.names.group(g)
	}
	exe := c.id.ExeErr
	writeJSON(w, http.StatusOK, WhoAmI{
		PID: c.cred.PID, UID: c.cred.UID, GID: c.cred.GID, Groups: groups, GroupNames: groupNames,
		User: s.names.user(c.cred.UID), Group: s.names.group(c.cred.GID),
		Unit: c.id.Unit, UserUnit: c.id.UserUnit,
		ExePath: c.id.ExePath, ExeSHA256: c.id.ExeSHA256, ExeUnknown: exe,
		Pin:    c.pin,
		Grants: grants, CanStatus: p.Decide(c.id, policy.Request{Action: policy.ActionStatus}).Allow,
	})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	c := s.callerOf(r)
	if _, ok := s.decide(w, c, policy.Request{Action: policy.ActionStatus}); !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.Status())
}

// maxMisses is how many unknown-project requests a uid may make per quarter
// hour before it is told to wait.
const maxMisses = 20

type missCount struct {
	window time.Time
	n      int
}

func (s *Server) noteMiss(uid uint32) {
	w := time.Now().UTC().Truncate(15 * time.Minute)
	s.missMu.Lock()
	defer s.missMu.Unlock()
	if s.misses == nil || len(s.misses) > 10000 {
		s.misses = map[uint32]*missCount{}
	}
	m := s.misses[uid]
	if m == nil || !m.window.Equal(w) {
		m = &missCount{window: w}
		s.misses[uid] = m
	}
	m.n++
}

// missLimited reports whether uid spent its unknown-project allowance, and
// when it is renewed.
func (s *Server) missLimited(uid uint32) (time.Time, bool) {
	w := time.Now().UTC().Truncate(15 * time.Minute)
	s.missMu.Lock()
	defer s.missMu.Unlock()
	m := s.misses[uid]
	if m == nil || !m.window.Equal(w) || m.n < maxMisses {
		return time.Time{}, false
	}
	return w.Add(15 * time.Minute), true
}

const (
	maxReceiversPerToken = 64
	maxTrackedTokens     = 4096
)

func (s *Server) noteReceiver(fp string, c *caller) {
	// Built without fmt and compared before it is made a string: a peer
	// that fetched this token before (the common case) costs nothing.
	var buf [96]byte
	b := append(buf[:0], "uid "...)
	b = strconv.AppendUint(b, uint64(c.cred.UID), 10)
	b = append(b, " pid "...)
	b = strconv.AppendInt(b, int64(c.cred.PID), 10)
	if c.id.Unit != "" {
		b = append(b, " unit "...)
		b = append(b, c.id.Unit...)
	}
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	if s.receivers == nil || len(s.receivers) > maxTrackedTokens {
		s.receivers = map[string][]string{}
	}
	list := s.receivers[fp]
	for _, w := range list {
		if w == string(b) {
			return
		}
	}
	who := string(b)
	if len(list) >= maxReceiversPerToken {
		list = list[1:]
	}
	s.receivers[fp] = append(list, who)
}

func (s *Server) handleRotate(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	c := s.callerOf(r)
	req, ok := s.projectRequest(w, r, policy.ActionRotate)
	if !ok {
		return
	}
	password, err := strconv.ParseBool(cmp.Or(r.URL.Query().Get("password"), "false"))
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, CodeBadRequest, "password must be true or false")
		return
	case password && req.Scope != ScopeUser:
		writeError(w, http.StatusBadRequest, CodeBadRequest, "password=true changes the account password and goes with scope=user")
		return
	case password:
		s.rotatePassword(w, r, c, req)
		return
	case req.Scope != ScopeClient:
		writeError(w, http.StatusBadRequest, CodeBadRequest, "the user token is not rotated on its own: exlessd logs in again when Exceptionless rejects it; password=true changes the account password, which replaces it")
		return
	}
	grace := time.Duration(-1)
	if g := r.URL.Query().Get("grace"); g != "" {
		d, err := time.ParseDuration(g)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "grace must be a duration such as 10m, or 0 to revoke at once")
			return
		}
		grace = d
	}
	d, ok := s.decide(w, c, req)
	if !ok {
		return
	}
	res, err := s.broker.Rotate(r.Context(), req.Project, grace)
	if err != nil {
		s.failGranted(w, c, req, d, err)
		return
	}
	s.audit(c, req, d, "", "rotated")
	writeJSON(w, http.StatusOK, RotateResponse{RotateResult: res, ReceivedBy: s.receiversOf(res.OldFingerprint)})
}

func (s *Server) rotatePassword(w http.ResponseWriter, r *http.Request, c *caller, req policy.Request) {
	d, ok := s.decide(w, c, req)
	if !ok {
		return
	}
	res, err := s.broker.RotatePassword(r.Context())
	if errors.Is(err, ErrPasswordNotInStore) {
		s.audit(c, req, d, "", "password not in vault")
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error()+": exless changes only a password it keeps in vault")
		return
	}
	if err != nil {
		s.failGranted(w, c, req, d, err)
		return
	}
	s.audit(c, req, d, "", "password changed")
	writeJSON(w, http.StatusOK, PasswordRotateResponse{PasswordResult: res, ReceivedBy: s.receiversOf(res.OldFingerprint)})
}

// receiversOf lists the peers this daemon gave the token with fingerprint fp.
func (s *Server) receiversOf(fp string) []string {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	return append([]string{}, s.receivers[fp]...)
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	c := s.callerOf(r)
	req := policy.Request{Action: policy.ActionReload}
	d, ok := s.decide(w, c, req)
	if !ok {
		return
	}
	if s.reload == nil {
		s.audit(c, req, d, "", "not available")
		writeError(w, http.StatusNotImplemented, CodeInternal, "this exlessd cannot reload; restart it instead")
		return
	}
	if err := s.reload(r.Context()); err != nil {
		s.audit(c, req, d, "", "rejected")
		// The error names the config file, line and field; it holds no
		// secrets, and the operator needs it to fix the file.
		writeError(w, http.StatusBadRequest, CodeBadRequest, "new configuration rejected, the old one stays in force: "+err.Error())
		return
	}
	s.audit(c, req, d, "", "reloaded")
	writeJSON(w, http.StatusOK, map[string]string{"result": "reloaded"})
}

// handleExplain evaluates the policy for an identity given in the query,
// for operators asking "would this unit get that token?".
func (s *Server) handleExplain(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	c := s.callerOf(r)
	if _, ok := s.decide(w, c, policy.Request{Action: policy.ActionStatus}); !ok {
		return
	}
	q := r.URL.Query()
	id, err := ParseExplainIdentity(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		return
	}
	action := q.Get("action")
	if action == "" {
		action = policy.ActionToken
	}
	req := policy.Request{Action: action}
	if action == policy.ActionToken || action == policy.ActionRotate {
		var ok bool
		if req, ok = s.projectRequest(w, r, action); !ok {
			return
		}
	}
	writeJSON(w, http.StatusOK, s.policy.Load().Explain(id, req))
}

// ParseExplainIdentity reads the identity to explain from query values:
// uid, gid, groups (comma-separated gids), unit, user_unit, exe_path,
// exe_sha256. The daemon and `exlessd config explain` (exlessctl policy
// explain --config) share it.
func ParseExplainIdentity(q url.Values) (policy.Identity, error) {
	var id policy.Identity
	num := func(name string) (uint32, error) {
		v := q.Get(name)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%s must be a number, not %q", name, v)
		}
		return uint32(n), nil
	}
	var err error
	if id.UID, err = num("uid"); err != nil {
		return id, err
	}
	if id.GID, err = num("gid"); err != nil {
		return id, err
	}
	if g := q.Get("groups"); g != "" {
		for _, f := range strings.Split(g, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 32)
			if err != nil {
				return id, fmt.Errorf("groups must be comma-separated gids, not %q", g)
			}
			id.Groups = append(id.Groups, uint32(n))
		}
	}
	id.Unit = q.Get("unit")
	id.UserUnit = strings.HasPrefix(id.Unit, "user@")
	id.ExePath = q.Get("exe_path")
	id.ExeSHA256 = strings.ToLower(q.Get("exe_sha256"))
	if id.ExePath == "" && id.ExeSHA256 == "" {
		id.ExeErr = "no executable given"
	}
	return id, nil
}

// Status reports the daemon's state.
func (s *Server) Status() Status {
	b := s.broker.Status()
	st := Status{
		State: "ok", LoggedIn: b.LoggedIn, VaultReachable: b.VaultReachable,
		ClientTokens: b.ClientTokens, DegradedReasons: b.DegradedReasons,
		Served: s.served.Load(), Denied: s.denied.Load(),
		Tokens: b.Tokens, LeaseHolder: b.LeaseHolder, Logins: b.Counters.Logins, Mints: b.Counters.Mints,
		Rotations: b.Counters.Rotations, Revocations: b.Counters.Revocations, PasswordChanges: b.Counters.PasswordChanges,
		RateLimited: s.throttled.Load() + s.metrics.missLimited.Load(),
		Requests:    s.metrics.total.Load(), AttestationFailures: s.metrics.attestFailed.Load(),
		VaultErrors: failures(s.broker.VaultCalls()), UpstreamErrors: failures(s.broker.UpstreamCalls()),
	}
	st.ConnectionsCutOff, st.CutOffs = s.cuts.counts()
	if !b.LastRotation.IsZero() {
		t := b.LastRotation
		st.LastRotation = &t
	}
	if st.Tokens == nil {
		st.Tokens = []TokenStatus{}
	}
	if len(st.DegradedReasons) > 0 {
		st.State = "degraded"
	}
	return st
}

// describe renders a peer's identity for refusals: the peer should learn
// exactly what the daemon saw, so it can ask for the right rule.
func (s *Server) describe(cl *caller) string {
	c := cl.cred
	var b strings.Builder
	fmt.Fprintf(&b, "uid %d", c.UID)
	if n := s.names.user(c.UID); n != "" {
		fmt.Fprintf(&b, " (%s)", n)
	}
	fmt.Fprintf(&b, " gid %d", c.GID)
	if n := s.names.group(c.GID); n != "" {
		fmt.Fprintf(&b, " (%s)", n)
	}
	if len(c.Groups) > 0 {
		ids := make([]string, len(c.Groups))
		for i, g := range c.Groups {
			ids[i] = strconv.FormatUint(uint64(g), 10)
		}
		fmt.Fprintf(&b, " groups [%s]", strings.Join(ids, " "))
	}
	fmt.Fprintf(&b, " pid %d", c.PID)
	if cl.id.Unit != "" {
		fmt.Fprintf(&b, " unit %s", cl.id.Unit)
	}
	return b.String()
}

// nameCache remembers uid and gid names; looking them up reads /etc files.
type nameCache struct {
	mu     sync.Mutex
	users  map[uint32]string
	groups map[uint32]string
}

func (n *nameCache) reset() {
	n.mu.Lock()
	n.users, n.groups = nil, nil
	n.mu.Unlock()
}

func (n *nameCache) user(uid uint32) string {
	return n.lookup(&n.users, uid, func(id string) (string, error) {
		u, err := user.LookupId(id)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	})
}

func (n *nameCache) group(gid uint32) string {
	return n.lookup(&n.groups, gid, func(id string) (string, error) {
		g, err := user.LookupGroupId(id)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	})
}

func (n *nameCache) lookup(m *map[uint32]string, id uint32, f func(string) (string, error)) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if name, ok := (*m)[id]; ok {
		return name
	}
	if *m == nil {
		*m = map[uint32]string{}
	}
	name, err := f(strconv.FormatUint(uint64(id), 10))
	if err != nil {
		name = ""
	}
	(*m)[id] = name
	return name
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, ErrorResponse{Error: msg, Code: errCode})
}

func tokenResponse(s Served) TokenResponse {
	r := TokenResponse{
		Token: s.Token, Scope: s.Scope, ProjectID: s.ProjectID, OrganizationID: s.OrganizationID,
		ObtainedBy: s.ObtainedBy, CacheAgeSeconds: s.Age.Seconds(),
	}
	if !s.ObtainedAt.IsZero() {
		t := s.ObtainedAt
		r.ObtainedAt = &t
	}
	if !s.ExpiresAt.IsZero() {
		t := s.ExpiresAt
		r.ExpiresAt = &t
	}
	return r
}
