// Command exceptionless-testserver serves the in-process Exceptionless test
// server (package exceptionlesstest) on a TCP port, for demos and shell
// scripts. It seeds one account and, once listening, writes a ready file
// with the URL and the seeded ids so a script can wait for it:
//
//	exceptionless-testserver -write-password-file pw -ready-file ready.json &
//	until [ -s ready.json ]; do sleep 0.1; done
//
// The password is never on the command line: it is read from
// -password-file, or generated and written to -write-password-file. The
// server runs until SIGINT or SIGTERM and then exits 0.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/exless/exless/daemon/exceptionless/exceptionlesstest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "exceptionless-testserver: %v\n", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	listen            string
	email             string
	passwordFile      string
	writePasswordFile string
	readyFile         string
	legacy            bool
	rateLimit         int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("exceptionless-testserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "TCP address to listen on")
	fs.StringVar(&o.email, "email", exceptionlesstest.DefaultEmail, "email of the seeded account")
	fs.StringVar(&o.passwordFile, "password-file", "", "read the seeded account's password from this file")
	fs.StringVar(&o.writePasswordFile, "write-password-file", "", "without -password-file: generate a password and write it here (mode 0600)")
	fs.StringVar(&o.readyFile, "ready-file", "", "once listening, write a JSON line with url, email, organization_id and projects here")
	fs.BoolVar(&o.legacy, "legacy", false, "answer login 401s with one generic title, like servers up to v8.6.2")
	fs.IntVar(&o.rateLimit, "rate-limit", 0, "API requests per 15-minute window and bucket (0: off, as in Development)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.passwordFile == "" && o.writePasswordFile == "" {
		return o, errors.New("need -password-file or -write-password-file (the password is never taken from argv)")
	}
	return o, nil
}

// ready is the ready file's content. It leaves the password out: that is
// in the password file only.
type ready struct {
	URL            string         `json:"url"`
	Email          string         `json:"email"`
	OrganizationID string         `json:"organization_id"`
	Projects       []readyProject `json:"projects"`
}

type readyProject struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	password, err := obtainPassword(o)
	if err != nil {
		return err
	}
	h := exceptionlesstest.NewHandler(exceptionlesstest.Config{
		Email: o.email, Password: password, Legacy: o.legacy, RateLimit: o.rateLimit,
	})

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	url := "http://" + ln.Addr().String()
	if o.readyFile != "" {
		r := ready{URL: url, Email: h.Account.Email, OrganizationID: h.Account.OrganizationID}
		for _, p := range h.Account.Projects {
			r.Projects = append(r.Projects, readyProject{ID: p.ID, Name: p.Name})
		}
		b, _ := json.Marshal(r)
		if err := writeFileAtomic(o.readyFile, append(b, '\n'), 0o644); err != nil {
			srv.Close()
			return fmt.Errorf("write ready file: %w", err)
		}
	}
	log.Info("serving", "url", url, "email", h.Account.Email, "organization_id", h.Account.OrganizationID)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// obtainPassword reads the password file, or makes a password and writes
// it to the other file.
func obtainPassword(o options) (string, error) {
	if o.passwordFile != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return "", fmt.Errorf("read password file: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", errors.New("password file is empty")
		}
		return pw, nil
	}
	pw := rand.Text() // 26 characters of base32 from crypto/rand
	if err := writeFileAtomic(o.writePasswordFile, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write password file: %w", err)
	}
	return pw, nil
}

// writeFileAtomic writes through a temporary file and a rename, so a script
// polling for the file never reads it half written.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
