package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/journal"
	"github.com/urfave/cli/v2"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/policy"
	"github.com/exless/exless/vaultstore"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func run(ctx context.Context, args []string, stderr io.Writer) error {
	app := &cli.App{
		Name:      "exlessd",
		Usage:     "keep Exceptionless tokens in Vault and hand them to permitted local processes",
		Writer:    stderr,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: daemon.DefaultConfigPath, Usage: "config `FILE`", EnvVars: []string{"EXLESSD_CONFIG"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Action: func(c *cli.Context) error {
			return serve(c.Context, c.String("config"), c.String("log-level"), stderr)
		},
		Commands: []*cli.Command{{
			Name:  "version",
			Usage: "print the version",
			Action: func(c *cli.Context) error {
				fmt.Fprintln(c.App.Writer, "exlessd", version)
				return nil
			},
		}},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	return app.RunContext(ctx, args)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if isJournal, _ := journal.StderrIsJournalStream(); isJournal {
		// journald stamps each line itself.
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func serve(ctx context.Context, configPath, level string, stderr io.Writer) error {
	log, err := newLogger(stderr, level)
	if err != nil {
		return err
	}
	cfg, err := daemon.LoadConfig(configPath)
	if err != nil {
		return err
	}
	pol, warnings, err := policy.Compile(cfg.Rules, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", configPath, err)
	}
	for _, w := range warnings {
		log.Warn("policy: " + w)
	}

	store, err := vaultstore.New(ctx, vaultstore.Config{
		Address:   cfg.Vault.Address,
		TokenFile: cfg.Vault.TokenFile,
		Mount:     cfg.Vault.Mount,
		Path:      cfg.Vault.Path,
	})
	if err != nil {
		return err
	}
	api, err := exceptionless.New(cfg.Exceptionless.URL, nil)
	if err != nil {
		return fmt.Errorf("exceptionless.url: %w", err)
	}
	host, _ := os.Hostname()
	broker := daemon.NewBroker(daemon.BrokerConfig{
		Store:    store,
		Upstream: api,
		Email:    cfg.Exceptionless.Email,
		Password: passwordReader(cfg.Exceptionless.PasswordFile),
		Host:     host,
		Logger:   log,
	})

	ln, err := listen(cfg, log)
	if err != nil {
		return err
	}
	defer ln.Close()

	// Load state before announcing readiness, but never wait forever: a
	// daemon that cannot reach Vault still starts and says why.
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := broker.Start(startCtx); err != nil {
		log.Warn("starting degraded", "err", err)
	}
	cancel()

	srv := daemon.NewServer(daemon.ServerConfig{Broker: broker, Policy: pol, Logger: log})
	log.Info("serving", "socket", ln.Addr().String(), "version", version)
	notify(log, sddaemon.SdNotifyReady, "STATUS="+statusLine(srv.Status()))
	err = srv.Serve(ctx, ln)
	notify(log, sddaemon.SdNotifyStopping)
	return err
}

func statusLine(s daemon.Status) string {
	if s.State == "ok" {
		return fmt.Sprintf("logged in; %d client tokens held", s.ClientTokens)
	}
	return fmt.Sprintf("degraded: %v", s.DegradedReasons)
}

func notify(log *slog.Logger, lines ...string) {
	msg := ""
	for _, l := range lines {
		msg += l + "\n"
	}
	// (false, nil) means we are not running under systemd: nothing to do.
	if _, err := sddaemon.SdNotify(false, msg); err != nil {
		log.Debug("sd_notify", "err", err)
	}
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

// listen uses the socket systemd passed us when socket-activated, else
// creates the configured one.
func listen(cfg daemon.Config, log *slog.Logger) (net.Listener, error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	for _, ln := range lns {
		if ln != nil {
			log.Info("using the socket passed by systemd", "addr", ln.Addr().String())
			return ln, nil
		}
	}
	return listenUnix(cfg.Socket, cfg.SocketMode, cfg.SocketGroup)
}

func listenUnix(path string, mode os.FileMode, group string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket %s exists and is not a socket; remove it or change socket in the config", path)
		}
		// Dial first so that a live daemon's socket is never removed. A
		// daemon starting between the dial and the remove could still lose
		// its socket; systemd socket activation avoids that race entirely.
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another exlessd is already serving %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	gid := -1
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("socket_group %q: %w", group, err)
		}
		gid = g
	}
	// Create the socket with no access at all, then open it up: there is no
	// moment when it is reachable with wider permissions than configured.
	old := syscallUmask(0o777)
	ln, err := net.Listen("unix", path)
	syscallUmask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("chown socket to group %q: %w", group, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return ln, nil
}

func lookupGroup(name string) (int, error) {
	if id, err := strconv.Atoi(name); err == nil {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("no such group; create it (e.g. groupadd %s) or change socket_group", name)
		}
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}
