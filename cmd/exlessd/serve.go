package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/credsock"
	"github.com/exless/exless/daemon/policy"
	"github.com/exless/exless/vaultstore"
)

// serveOptions are what `exlessd` (no command) runs with.
type serveOptions struct {
	configPath string
	logLevel   string
	stderr     io.Writer
	// startWait bounds loading state from Vault before READY=1; after it
	// the daemon serves degraded and says why.
	startWait time.Duration
	// statusEvery is how often STATUS= is refreshed when it changed.
	statusEvery time.Duration
	// drain bounds finishing requests in flight on shutdown.
	drain time.Duration
}

func serve(ctx context.Context, o serveOptions) error {
	// Catch SIGHUP before anything else: its default action kills the
	// process, and systemctl reload may come right after READY=1.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	log, err := newLogger(o.stderr, o.logLevel)
	if err != nil {
		return err
	}
	lc, err := loadConfig(o.configPath)
	if err != nil {
		return err
	}
	ls, err := listen(lc.Config, log)
	if err != nil {
		return err
	}
	defer ls.Close()

	wd, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("ignoring the watchdog settings systemd passed", "err", err)
	}
	l := &lifecycle{log: log, n: newNotifier(log), hup: hup, reloads: make(chan chan error), watchdog: wd, statusEvery: o.statusEvery}

	var svc service
	if lc.Configured {
		svc, err = configuredService(ctx, log, ls, lc, o, l.requestReload)
		if err != nil {
			return err
		}
	} else {
		svc = unconfiguredService(log, ls, o)
	}
	if ctx.Err() != nil {
		// Told to stop while loading state: never announce READY=1.
		return nil
	}
	return l.run(ctx, svc)
}

// configuredService is the daemon proper: broker, policy and socket server.
//
// requestReload is how POST /v1/reload reaches the lifecycle.
func configuredService(ctx context.Context, log *slog.Logger, ls listeners, lc loadedConfig, o serveOptions, requestReload func(context.Context) error) (service, error) {
	cfg := lc.Config
	ln := ls.api
	pol, warnings, err := policy.Compile(cfg.Rules, nil)
	if err != nil {
		return service{}, &configError{fmt.Errorf("%s: %w", o.configPath, err)}
	}
	for _, w := range warnings {
		log.Warn("policy: " + w)
	}
	api, err := daemon.NewUpstream(cfg.Exceptionless)
	if err != nil {
		return service{}, &configError{err}
	}
	store, err := vaultstore.New(ctx, vaultConfig(cfg.Vault))
	if err != nil {
		return service{}, &configError{err}
	}
	host, _ := os.Hostname()
	broker := daemon.NewBroker(daemon.BrokerConfig{
		Store:        store,
		Upstream:     api,
		Email:        cfg.Exceptionless.Email,
		Password:     passwordReader(cfg.Exceptionless.PasswordFile),
		PasswordKey:  cfg.Exceptionless.PasswordVaultKey,
		Host:         host,
		Logger:       log,
		PollInterval: cfg.PollInterval,
		MaxStaleness: cfg.MaxStaleness,
		LeaseTTL:     cfg.Fleet.LeaseTTL,
		LoginBudget:  cfg.Fleet.LoginBudget,
		Grace:        cfg.Rotation.Grace,
		MaxAge:       cfg.Rotation.MaxAge,
	})

	// Load state before announcing readiness, but never wait forever: a
	// daemon that cannot reach Vault still starts and says why.
	startCtx, cancel := context.WithTimeout(ctx, o.startWait)
	if err := broker.Start(startCtx); err != nil {
		log.Warn("starting degraded", "err", err)
	}
	cancel()

	srv := daemon.NewServer(daemon.ServerConfig{Broker: broker, Policy: pol, Logger: log, Reload: requestReload, Limits: cfg.Limits})
	creds := &credentials{log: log.With("system", "credentials"), broker: broker}
	if err := creds.setRules(cfg.Rules); err != nil {
		return service{}, &configError{fmt.Errorf("%s: %w", o.configPath, err)}
	}
	serveAPI := func(ctx context.Context) error { return srv.Serve(ctx, ln) }
	if cfg.Metrics.Listen != "" {
		mln, err := listenMetrics(cfg)
		if err != nil {
			return service{}, err
		}
		log.Info("serving metrics for a scraper", "addr", mln.Addr().String())
		apiOnly := serveAPI
		serveAPI = func(ctx context.Context) error {
			return withMetrics(ctx, apiOnly, mln, srv.MetricsHandler(), log)
		}
	}
	log.Info("serving", "socket", ln.Addr().String(), "version", version, "rules", len(cfg.Rules))
	self := daemon.NewClient(ln.Addr().String())
	return service{
		serve: func(ctx context.Context) error {
			// The Vault token's renewal and the broker's polling and
			// rotation run as long as the daemon serves.
			bg, stopBG := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); _ = store.Run(bg) }()
			go func() { defer wg.Done(); broker.Run(bg) }()
			defer func() { stopBG(); wg.Wait() }()
			return serveBoth(ctx, serveAPI, ls.credentials, creds.credential, log)
		},
		status: func() string {
			st := srv.Status()
			// Why Vault refuses (an empty token file, an expired token)
			// tells an operator more than "vault unreachable".
			if ok, reason := store.AuthStatus(); !ok && reason != "" && !st.VaultReachable {
				st.DegradedReasons = append(st.DegradedReasons, "vault auth: "+reason)
			}
			return statusLine(st)
		},
		reload: func() (string, error) {
			next, err := loadConfig(o.configPath)
			if err != nil {
				return "", err
			}
			if !next.Configured {
				return "", fmt.Errorf("%s now says %s = false; remove that line to reload", o.configPath, configuredAttr)
			}
			pol, warnings, err := policy.Compile(next.Rules, nil)
			if err != nil {
				return "", fmt.Errorf("%s: %w", o.configPath, err)
			}
			for _, w := range warnings {
				log.Warn("policy: " + w)
			}
			if err := creds.setRules(next.Rules); err != nil {
				return "", fmt.Errorf("%s: %w", o.configPath, err)
			}
			srv.SetPolicy(pol)
			for _, f := range restartNeeded(cfg, next.Config) {
				log.Warn("changed setting takes effect only at restart (systemctl restart exlessd)", "field", f)
			}
			return fmt.Sprintf("policy applied (%d rules)", len(next.Rules)), nil
		},
		check: func(ctx context.Context) error {
			if err := selfRequest(ctx, self); err != nil {
				return err
			}
			// The broker's lock, held forever, would hang every request
			// that needs a token; Status takes it.
			_ = srv.Status()
			return nil
		},
	}, nil
}

// selfRequest asks the daemon's own socket who it is: the request goes
// through accept, the peer check, routing and a handler, so an answer
// proves the serve loop works. Any HTTP answer counts; only no answer
// (a timeout, a refused connection) fails.
func selfRequest(ctx context.Context, c *daemon.Client) error {
	_, err := c.WhoAmI(ctx)
	var apiErr *daemon.APIError
	if err == nil || errors.As(err, &apiErr) {
		return nil
	}
	return fmt.Errorf("request to own socket: %w", err)
}

// vaultConfig maps the config file's vault block to the store's settings.
func vaultConfig(v daemon.VaultConfig) vaultstore.Config {
	c := vaultstore.Config{
		Address: v.Address, Addresses: v.Addresses, TokenFile: v.TokenFile,
		Namespace: v.Namespace, CAFile: v.CAFile, ClientCertFile: v.ClientCertFile,
		ClientKeyFile: v.ClientKeyFile, TLSServerName: v.TLSServerName,
		Mount: v.Mount, Path: v.Path,
	}
	if a := v.AppRole; a != nil {
		c.AppRole = &vaultstore.AppRoleConfig{RoleIDFile: a.RoleIDFile, SecretIDFile: a.SecretIDFile, MountPath: a.Mount}
	}
	return c
}

// restartNeeded lists the settings that differ between old and next and
// that a reload does not apply: they are wired into the socket, the Vault
// client and the broker at start.
func restartNeeded(old, next daemon.Config) []string {
	var fields []string
	add := func(changed bool, name string) {
		if changed {
			fields = append(fields, name)
		}
	}
	add(old.Socket != next.Socket, "socket")
	add(old.SocketMode != next.SocketMode, "socket_mode")
	add(old.SocketGroup != next.SocketGroup, "socket_group")
	add(old.Exceptionless != next.Exceptionless, "exceptionless")
	add(!reflect.DeepEqual(old.Vault, next.Vault), "vault")
	add(old.PollInterval != next.PollInterval || old.MaxStaleness != next.MaxStaleness, "poll_interval/max_staleness")
	add(old.Rotation != next.Rotation, "rotation")
	add(old.Fleet != next.Fleet, "fleet")
	add(old.Limits != next.Limits, "limits")
	add(old.Metrics != next.Metrics, "metrics")
	return fields
}

// statusLine renders daemon.Status for systemctl status.
func statusLine(s daemon.Status) string {
	var b strings.Builder
	if s.State == "ok" {
		b.WriteString("logged in")
	} else {
		b.WriteString("degraded: " + strings.Join(s.DegradedReasons, "; "))
	}
	fmt.Fprintf(&b, "; %d client tokens held; %d tokens served, %d requests denied", s.ClientTokens, s.Served, s.Denied)
	return b.String()
}

// codeNotConfigured is the error code every request gets while exlessd is
// not configured.
const codeNotConfigured = "not_configured"

// unconfiguredService answers every request with a clear "not configured"
// error. It is what a fresh package install runs until the operator edits
// the example config: the socket stays up, exlessctl says what to do, and
// systemd does not restart the daemon into start-limit-hit.
func unconfiguredService(log *slog.Logger, ls listeners, o serveOptions) service {
	ln := ls.api
	msg := fmt.Sprintf("not configured: edit %s (then delete its line %q and run systemctl restart exlessd)", o.configPath, configuredAttr+" = false")
	log.Warn(msg)
	body, _ := json.Marshal(daemon.ErrorResponse{Error: msg, Code: codeNotConfigured})
	body = append(body, '\n')
	var complete atomic.Bool
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	self := daemon.NewClient(ln.Addr().String())
	return service{
		serve: func(ctx context.Context) error {
			api := func(ctx context.Context) error {
				errc := make(chan error, 1)
				go func() { errc <- hs.Serve(ln) }()
				select {
				case err := <-errc:
					return err
				case <-ctx.Done():
				}
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.drain)
				defer cancel()
				err := hs.Shutdown(sctx)
				if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
					err = serr
				}
				return err
			}
			// Units waiting for a credential get an empty one at once
			// rather than hang until their start times out.
			refuse := func(context.Context, credsock.Request) ([]byte, error) { return nil, errors.New(msg) }
			return serveBoth(ctx, api, ls.credentials, refuse, log)
		},
		status: func() string {
			if complete.Load() {
				return "not configured yet; " + o.configPath + " is now complete: run systemctl restart exlessd"
			}
			return "not configured: edit " + o.configPath
		},
		reload: func() (string, error) {
			next, err := loadConfig(o.configPath)
			if err != nil {
				return "", err
			}
			if !next.Configured {
				return "still not configured", nil
			}
			// Serving for real needs the broker, Vault and the policy wired
			// at start; a reload does not build them.
			complete.Store(true)
			return "the config is complete; restart exlessd to start serving", nil
		},
		check: func(ctx context.Context) error { return selfRequest(ctx, self) },
	}
}

// serveBoth runs the API server and, when systemd passed its socket, the
// LoadCredential= provider, until ctx ends or either fails.
func serveBoth(ctx context.Context, api func(context.Context) error, credLn net.Listener,
	credential func(context.Context, credsock.Request) ([]byte, error), log *slog.Logger) error {
	if credLn == nil {
		return api(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs := &credsock.Server{Credential: credential, Logger: log}
	errc := make(chan error, 2)
	go func() { errc <- api(ctx) }()
	go func() { errc <- cs.Serve(ctx, credLn) }()
	err := <-errc
	cancel()
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// passwordReader returns a function that reads the password file each time a
// login needs it, so a rotated password is picked up without a restart.
func passwordReader(path string) func() ([]byte, error) {
	return func() ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read exceptionless.password_file: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("exceptionless.password_file %s is empty", path)
		}
		return b, nil
	}
}
