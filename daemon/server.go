package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exless/exless/daemon/peer"
	"github.com/exless/exless/daemon/policy"
)

// ServerConfig wires a Server.
type ServerConfig struct {
	Broker *Broker
	Policy *policy.Policy
	Logger *slog.Logger
}

// Server answers the socket API. Every connection it serves carries the
// peer's kernel-reported credentials, read at accept.
type Server struct {
	broker *Broker
	policy atomic.Pointer[policy.Policy]
	log    *slog.Logger
	names  nameCache
	mux    *http.ServeMux

	served atomic.Uint64
	denied atomic.Uint64
}

// NewServer returns a server; Serve runs it.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{broker: cfg.Broker, log: cfg.Logger.With("system", "server")}
	s.policy.Store(cfg.Policy)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/v1/token", s.handleToken)
	s.mux.HandleFunc("/v1/whoami", s.handleWhoAmI)
	s.mux.HandleFunc("/v1/status", s.handleStatus)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such endpoint; see GET /v1/token, /v1/whoami, /v1/status")
	})
	return s
}

// SetPolicy replaces the policy for requests that start after it returns.
func (s *Server) SetPolicy(p *policy.Policy) { s.policy.Store(p) }

// Serve accepts connections on ln until ctx ends, then shuts down, letting
// in-flight requests finish for up to five seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*peerConn); ok {
				return context.WithValue(ctx, credKey{}, pc.cred)
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(&peerListener{Listener: ln, log: s.log}) }()
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

// peerListener reads each connection's credentials as it is accepted. A
// connection whose peer cannot be identified is logged and closed here, so
// handlers never see an unidentified peer.
type peerListener struct {
	net.Listener
	log *slog.Logger
}

type peerConn struct {
	net.Conn
	cred peer.Cred
}

type credKey struct{}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, err := peer.FromConn(c)
		if err != nil {
			l.log.Warn("closing connection: cannot identify peer", "err", err)
			c.Close()
			continue
		}
		return &peerConn{Conn: c, cred: cred}, nil
	}
}

// ServeHTTP checks what applies to every request, then routes it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, ok := r.Context().Value(credKey{}).(peer.Cred); !ok {
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
	s.mux.ServeHTTP(w, r)
}

func validHost(h string) bool {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return h == "localhost" || h == "exlessd"
}

func (s *Server) peerOf(r *http.Request) (peer.Cred, policy.Identity) {
	c := r.Context().Value(credKey{}).(peer.Cred)
	return c, policy.Identity{UID: c.UID, GID: c.GID, Groups: c.Groups}
}

func allowGET(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, CodeMethod, "use GET")
	return false
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if !allowGET(w, r) {
		return
	}
	cred, id := s.peerOf(r)
	q := r.URL.Query()
	scope, project := q.Get("scope"), q.Get("project")
	switch scope {
	case ScopeUser:
		if project != "" {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "scope=user takes no project")
			return
		}
	case ScopeClient:
		if !policy.ValidProjectID(project) {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "scope=client needs project=<project id> (24 to 36 letters and digits)")
			return
		}
	default:
		writeError(w, http.StatusBadRequest, CodeBadRequest, `scope must be "user" or "client"`)
		return
	}
	log := s.log.With("uid", cred.UID, "gid", cred.GID, "pid", cred.PID, "scope", scope)
	if project != "" {
		log = log.With("project", project)
	}
	d := s.policy.Load().Decide(id, policy.Request{Scope: scope, Project: project})
	if !d.Allow {
		s.denied.Add(1)
		log.Warn("denied")
		what := "scope " + scope
		if project != "" {
			what += " for project " + project
		}
		writeError(w, http.StatusForbidden, CodeDenied, fmt.Sprintf("%s: no rule grants %s", s.describe(cred), what))
		return
	}
	var (
		rec Served
		err error
	)
	if scope == ScopeUser {
		rec, err = s.broker.UserToken(r.Context())
	} else {
		rec, err = s.broker.ClientToken(r.Context(), project)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrProjectNotFound):
		log.Warn("granted, but no such project", "rule", d.Rule)
		writeError(w, http.StatusNotFound, CodeNotFound, "exceptionless has no project "+project+" for this account")
		return
	case errors.Is(err, ErrUnavailable):
		log.Warn("granted, but unavailable", "rule", d.Rule, "err", err)
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, err.Error())
		return
	default:
		log.Error("granted, but failed", "rule", d.Rule, "err", err)
		writeError(w, http.StatusInternalServerError, CodeInternal, "internal error; see the exlessd journal")
		return
	}
	s.served.Add(1)
	log.Info("granted", "rule", d.Rule)
	writeJSON(w, http.StatusOK, tokenResponse(rec))
}

func (s *Server) handleWhoAmI(w http.ResponseWriter, r *http.Request) {
	if !allowGET(w, r) {
		return
	}
	cred, id := s.peerOf(r)
	p := s.policy.Load()
	groups := cred.Groups
	if groups == nil {
		groups = []uint32{}
	}
	grants := p.Grants(id)
	if grants == nil {
		grants = []policy.Grant{}
	}
	writeJSON(w, http.StatusOK, WhoAmI{
		PID: cred.PID, UID: cred.UID, GID: cred.GID, Groups: groups,
		User: s.names.user(cred.UID), Group: s.names.group(cred.GID),
		Grants: grants, CanStatus: p.Matches(id),
	})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if !allowGET(w, r) {
		return
	}
	cred, id := s.peerOf(r)
	if !s.policy.Load().Matches(id) {
		s.denied.Add(1)
		s.log.Warn("denied", "uid", cred.UID, "gid", cred.GID, "pid", cred.PID, "action", "status")
		writeError(w, http.StatusForbidden, CodeDenied, s.describe(cred)+": no rule grants status")
		return
	}
	writeJSON(w, http.StatusOK, s.Status())
}

// Status reports the daemon's state.
func (s *Server) Status() Status {
	b := s.broker.Status()
	st := Status{
		State: "ok", LoggedIn: b.LoggedIn, VaultReachable: b.VaultReachable,
		ClientTokens: b.ClientTokens, DegradedReasons: b.DegradedReasons,
		Served: s.served.Load(), Denied: s.denied.Load(),
	}
	if len(st.DegradedReasons) > 0 {
		st.State = "degraded"
	}
	return st
}

// describe renders a peer's identity for refusals: the peer should learn
// exactly what the daemon saw, so it can ask for the right rule.
func (s *Server) describe(c peer.Cred) string {
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
	return b.String()
}

// nameCache remembers uid and gid names; looking them up reads /etc files.
type nameCache struct {
	mu     sync.Mutex
	users  map[uint32]string
	groups map[uint32]string
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
