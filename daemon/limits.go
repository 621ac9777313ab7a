package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/exless/exless/daemon/peer"
)

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	pick := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	pickDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&l.MaxConnections, d.MaxConnections)
	pick(&l.MaxConnectionsPerUID, d.MaxConnectionsPerUID)
	pick(&l.Burst, d.Burst)
	pick(&l.MaxHeaderBytes, d.MaxHeaderBytes)
	pick(&l.ExeHashConcurrency, d.ExeHashConcurrency)
	pickDur(&l.HeaderTimeout, d.HeaderTimeout)
	pickDur(&l.RequestTimeout, d.RequestTimeout)
	pickDur(&l.WriteTimeout, d.WriteTimeout)
	pickDur(&l.IdleTimeout, d.IdleTimeout)
	if l.RequestsPerSecond <= 0 {
		l.RequestsPerSecond = d.RequestsPerSecond
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	return l
}

// cutReason is why the daemon closed or refused a connection.
type cutReason int

const (
	cutMaxConnections cutReason = iota
	cutPerUIDConnections
	cutUnidentified
	cutHeaderTimeout
	cutIdleTimeout
	cutRequestTimeout
	cutWriteTimeout
	cutHeaderTooLarge
	cutBodyTooLarge
	numCutReasons
)

var cutReasonNames = [numCutReasons]string{
	"max_connections", "per_uid_connections", "unidentified",
	"header_timeout", "idle_timeout", "request_timeout", "write_timeout",
	"header_too_large", "body_too_large",
}

// cutReasonLimits name the setting behind each reason, so the journal
// tells an operator what to raise if the peers were legitimate.
var cutReasonLimits = [numCutReasons]string{
	"limits.max_connections", "limits.max_connections_per_uid", "",
	"limits.header_timeout", "limits.idle_timeout", "limits.request_timeout", "limits.write_timeout",
	"limits.max_header_bytes", "limits.max_body_bytes",
}

// cutOffLogEvery is how often each reason may be logged: a flood must
// not flood the journal; the counts are in status.
const cutOffLogEvery = time.Minute

// cutOffs counts cut-off connections per reason.
type cutOffs struct {
	n      [numCutReasons]atomic.Uint64
	logged [numCutReasons]atomic.Int64 // unix nanos of the last log line
}

func (c *cutOffs) counts() (total uint64, byReason map[string]uint64) {
	byReason = make(map[string]uint64, numCutReasons)
	for r := range numCutReasons {
		n := c.n[r].Load()
		byReason[cutReasonNames[r]] = n
		total += n
	}
	return total, byReason
}

// cutOff counts a cut-off connection and logs it, unless this reason was
// logged less than cutOffLogEvery ago.
func (s *Server) cutOff(r cutReason, attrs ...any) {
	n := s.cuts.n[r].Add(1)
	now := time.Now().UnixNano()
	last := s.cuts.logged[r].Load()
	if last != 0 && now-last < int64(cutOffLogEvery) || !s.cuts.logged[r].CompareAndSwap(last, now) {
		return
	}
	head := []any{"reason", cutReasonNames[r], "total", n}
	if l := cutReasonLimits[r]; l != "" {
		head = append(head, "limit", l)
	}
	s.log.Warn("cutting off connections (logged at most once a minute per reason; counts in status)", append(head, attrs...)...)
}

// connLimits is what a connection tracks to enforce and explain limits.
type connLimits struct {
	accepted   time.Time
	uid        uint32
	pid        int32
	uidCounted bool         // counted in Server.uidConns
	state      atomic.Int32 // the http.ConnState last reported
	// readDeadline is the last read deadline the server set, in unix
	// nanos; readSinceIdle says whether bytes came since the connection
	// last went idle.
	readDeadline  atomic.Int64
	readSinceIdle atomic.Bool
	wasCut        atomic.Bool
}

// admit wraps an accepted connection, or closes it when a cap is reached.
func (s *Server) admit(c net.Conn) *peerConn {
	if s.conns.Add(1) > int64(s.limits.MaxConnections) {
		s.conns.Add(-1)
		s.cutOff(cutMaxConnections)
		c.Close()
		return nil
	}
	pc := &peerConn{Conn: c, s: s}
	pc.accepted = time.Now()
	// SO_PEERCRED costs a syscall, not a wait: it is fine in the accept
	// loop. A peer without credentials fails attestation at first read.
	cred, err := peer.FromConn(c)
	if err != nil {
		return pc
	}
	pc.uid, pc.pid = cred.UID, cred.PID
	s.uidMu.Lock()
	if s.uidConns[cred.UID] >= s.limits.MaxConnectionsPerUID {
		s.uidMu.Unlock()
		s.conns.Add(-1)
		s.cutOff(cutPerUIDConnections, "uid", cred.UID, "pid", cred.PID)
		c.Close()
		return nil
	}
	if s.uidConns == nil {
		s.uidConns = map[uint32]int{}
	}
	s.uidConns[cred.UID]++
	s.uidMu.Unlock()
	pc.uidCounted = true
	return pc
}

func (pc *peerConn) Close() error {
	var err error
	pc.closeOnce.Do(func() {
		pc.s.conns.Add(-1)
		if pc.uidCounted {
			pc.s.uidMu.Lock()
			if pc.s.uidConns[pc.uid]--; pc.s.uidConns[pc.uid] <= 0 {
				delete(pc.s.uidConns, pc.uid)
			}
			pc.s.uidMu.Unlock()
		}
		err = pc.Conn.Close()
	})
	return err
}

// cut counts the connection as cut off for r, once per connection.
func (pc *peerConn) cut(r cutReason, attrs ...any) {
	if pc.wasCut.CompareAndSwap(false, true) {
		pc.s.cutOff(r, append([]any{"uid", pc.uid, "pid", pc.pid}, attrs...)...)
	}
}

func (pc *peerConn) setState(st http.ConnState) {
	pc.state.Store(int32(st))
	if st == http.StateIdle {
		pc.readSinceIdle.Store(false)
	}
}

func (pc *peerConn) SetReadDeadline(t time.Time) error {
	pc.readDeadline.Store(t.UnixNano())
	return pc.Conn.SetReadDeadline(t)
}

func (pc *peerConn) SetDeadline(t time.Time) error {
	pc.readDeadline.Store(t.UnixNano())
	return pc.Conn.SetDeadline(t)
}

// noteRead tells which timeout, if any, ended a read. The http server
// times out headers, bodies and idle waits on the same read deadline, so
// the connection's state says which one passed.
func (pc *peerConn) noteRead(n int, err error) {
	if n > 0 {
		pc.readSinceIdle.Store(true)
	}
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	// The server interrupts its own background reads with a deadline in
	// the past; only a deadline set after accept is a peer too slow.
	if !time.Unix(0, pc.readDeadline.Load()).After(pc.accepted) {
		return
	}
	switch http.ConnState(pc.state.Load()) {
	case http.StateActive:
		pc.cut(cutRequestTimeout)
	case http.StateIdle:
		if !pc.readSinceIdle.Load() {
			pc.cut(cutIdleTimeout)
			return
		}
		pc.cut(cutHeaderTimeout)
	default:
		pc.cut(cutHeaderTimeout)
	}
}

// status431 starts the reply the http server writes itself, straight to
// the connection, when headers exceed MaxHeaderBytes; no handler answers
// 431, so seeing it is seeing that refusal.
var status431 = []byte("HTTP/1.1 431 ")

func (pc *peerConn) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, status431) {
		pc.cut(cutHeaderTooLarge)
	}
	n, err := pc.Conn.Write(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		pc.cut(cutWriteTimeout)
	}
	return n, err
}

// readBody reads and drops a request's body, which no endpoint uses, so
// that it is received within RequestTimeout and MaxBodyBytes rather than
// drained by the server after the reply. It answers 413 or 408 itself
// (closing the connection) and then reports false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, pc *peerConn) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	limit := s.limits.MaxBodyBytes
	var err error
	if r.ContentLength > limit {
		err = &http.MaxBytesError{Limit: limit}
	} else {
		_, err = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, limit))
	}
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooLarge):
		pc.cut(cutBodyTooLarge)
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, CodeBadRequest,
			fmt.Sprintf("request body over %d bytes; the API takes its parameters in the query", limit))
	default:
		// A read deadline that passed was counted by the connection.
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestTimeout, CodeBadRequest, "request body not received in time")
	}
	return false
}

// uidRateFactor is how many identities' worth of requests one uid's
// units may make together: a flood from one unit leaves the uid's other
// units their own budget, yet a user who starts many units of their own
// cannot multiply theirs without bound.
const uidRateFactor = 4

// rateKey names a token bucket: one attested identity (uid and unit), or
// with wholeUID all of a uid's identities.
type rateKey struct {
	uid      uint32
	unit     string
	wholeUID bool
}

// allowRate spends one request from the caller's identity bucket and its
// uid's, or says how long to wait.
func (s *Server) allowRate(c *caller) (time.Duration, bool) {
	s.rateMu.Lock()
	if s.rates == nil || len(s.rates) > 10000 {
		s.rates = map[rateKey]*rate.Limiter{}
	}
	limiter := func(k rateKey, factor int) *rate.Limiter {
		l := s.rates[k]
		if l == nil {
			l = rate.NewLimiter(rate.Limit(s.limits.RequestsPerSecond*float64(factor)), s.limits.Burst*factor)
			s.rates[k] = l
		}
		return l
	}
	own := limiter(rateKey{uid: c.cred.UID, unit: c.id.Unit}, 1)
	all := limiter(rateKey{uid: c.cred.UID, wholeUID: true}, uidRateFactor)
	s.rateMu.Unlock()
	r := own.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return d, false
	}
	ra := all.Reserve()
	if d := ra.Delay(); d > 0 {
		ra.Cancel()
		r.Cancel()
		return d, false
	}
	return 0, true
}
