package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Request makes one request and reports whether the answer was a good one.
// The load generator calls it from many goroutines at once.
type Request func(ctx context.Context) error

// LoadOptions shape one measured run.
type LoadOptions struct {
	Concurrency int           // requests in flight at once
	Warmup      time.Duration // run, unrecorded, before measuring
	Duration    time.Duration // measured window
}

// Sample is what one run measured: every recorded latency, sorted.
type Sample struct {
	Latencies []time.Duration // sorted ascending
	Errors    int
	FirstErr  error
	Elapsed   time.Duration // from the end of warm-up to the last recorded reply
}

// Load runs req from opts.Concurrency goroutines for the warm-up and then
// the measured window. A request is recorded when it started inside the
// window; requests failing are counted, not recorded.
func Load(ctx context.Context, opts LoadOptions, req Request) Sample {
	if opts.Concurrency < 1 {
		opts.Concurrency = 1
	}
	start := time.Now()
	measureFrom := start.Add(opts.Warmup)
	end := measureFrom.Add(opts.Duration)

	type worker struct {
		lat      []time.Duration
		errs     int
		firstErr error
		last     time.Time
	}
	workers := make([]worker, opts.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.lat = make([]time.Duration, 0, 1024)
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				err := req(ctx)
				t1 := time.Now()
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					if w.errs == 0 {
						w.firstErr = err
					}
					w.errs++
					// Do not spin on a dead target.
					time.Sleep(time.Millisecond)
					continue
				}
				w.lat = append(w.lat, t1.Sub(t0))
				w.last = t1
			}
		})
	}
	wg.Wait()

	var s Sample
	n := 0
	for i := range workers {
		n += len(workers[i].lat)
	}
	s.Latencies = make([]time.Duration, 0, n)
	last := measureFrom
	for i := range workers {
		w := &workers[i]
		s.Latencies = append(s.Latencies, w.lat...)
		s.Errors += w.errs
		if s.FirstErr == nil {
			s.FirstErr = w.firstErr
		}
		if w.last.After(last) {
			last = w.last
		}
	}
	slices.Sort(s.Latencies)
	s.Elapsed = max(last.Sub(measureFrom), opts.Duration)
	return s
}

// Merge pools samples of the same measure taken at different times.
func Merge(samples ...Sample) Sample {
	var m Sample
	for _, s := range samples {
		m.Latencies = append(m.Latencies, s.Latencies...)
		m.Errors += s.Errors
		m.Elapsed += s.Elapsed
		if m.FirstErr == nil {
			m.FirstErr = s.FirstErr
		}
	}
	slices.Sort(m.Latencies)
	return m
}

// Percentile returns the q-quantile (0 ≤ q ≤ 1) of sorted latencies by the
// nearest-rank method, or 0 for none.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Throughput is requests per second over the measured window.
func (s Sample) Throughput() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(len(s.Latencies)) / s.Elapsed.Seconds()
}

// UnixTransport returns an HTTP transport that reaches a Unix socket
// whatever the URL's host. With keepAlive it keeps up to conc idle
// connections, so each of conc workers reuses its own; without, every
// request dials, is attested and is closed.
func UnixTransport(socket string, keepAlive bool, conc int) *http.Transport {
	var d net.Dialer
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives:   !keepAlive,
		MaxIdleConns:        conc,
		MaxIdleConnsPerHost: conc,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// tokenReply is the part of a reply the load generator checks: exlessd's
// TokenResponse and the floor's fixed body both carry a token.
type tokenReply struct {
	Token string `json:"token"`
}

// errEmptyToken is a 200 reply without a token.
var errEmptyToken = errors.New("reply carries no token")

// GetToken returns a Request that GETs url with hc and decodes the reply as
// a script would: status 200, a JSON body with a non-empty "token". It is
// the one client used for exlessd and the floor alike.
func GetToken(hc *http.Client, url string) Request {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			// The error body names no secret (it is exlessd's
			// {"error","code"} or the floor's), but keep it short.
			return fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
		}
		var r tokenReply
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("decode reply: %w", err)
		}
		if r.Token == "" {
			return errEmptyToken
		}
		return nil
	}
}
