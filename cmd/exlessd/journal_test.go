package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

type secret string

func (secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

type sentMsg struct {
	msg    string
	pri    journal.Priority
	fields map[string]string
}

func TestJournalHandlerFields(t *testing.T) {
	var sent []sentMsg
	h := newJournalHandler(slog.LevelInfo, func(msg string, p journal.Priority, f map[string]string) error {
		sent = append(sent, sentMsg{msg, p, f})
		return nil
	}, nil)
	log := slog.New(h).With("system", "server")
	log.Debug("hidden")
	log.Warn("audit", "decision", "deny", "uid", 1000, "token", secret("hunter2"), "message", "x")
	log.WithGroup("req").Info("hello", "exe-path", "/usr/bin/x", slog.Group("peer", "pid", 7))

	if len(sent) != 2 {
		t.Fatalf("sent %d messages, want 2 (debug is below the level)", len(sent))
	}
	a := sent[0]
	if a.msg != "audit system=server decision=deny uid=1000 token=REDACTED message=x" {
		t.Errorf("MESSAGE = %q", a.msg)
	}
	if a.pri != journal.PriWarning {
		t.Errorf("PRIORITY = %d, want %d", a.pri, journal.PriWarning)
	}
	for k, want := range map[string]string{
		"SYSTEM": "server", "DECISION": "deny", "UID": "1000", "TOKEN": "REDACTED",
		"X_MESSAGE": "x", "SYSLOG_IDENTIFIER": "exlessd",
	} {
		if got := a.fields[k]; got != want {
			t.Errorf("field %s = %q, want %q", k, got, want)
		}
	}
	for k, v := range a.fields {
		if strings.Contains(v, "hunter2") {
			t.Errorf("field %s carries the secret", k)
		}
	}
	b := sent[1]
	for k, want := range map[string]string{"SYSTEM": "server", "REQ_EXE_PATH": "/usr/bin/x", "REQ_PEER_PID": "7"} {
		if got := b.fields[k]; got != want {
			t.Errorf("grouped field %s = %q, want %q (all: %v)", k, got, want, b.fields)
		}
	}
}

func TestJournalHandlerFallsBackToText(t *testing.T) {
	var buf bytes.Buffer
	h := newJournalHandler(slog.LevelInfo, func(string, journal.Priority, map[string]string) error {
		return errors.New("no journal")
	}, &buf)
	slog.New(h).Error("boom", "k", "v")
	if got := buf.String(); got != "ERROR boom k=v\n" {
		t.Errorf("fallback wrote %q", got)
	}
	_ = h.Handle(context.Background(), slog.Record{})
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"uid": "UID", "exe-path": "EXE_PATH", "_x": "X_X", "9lives": "X9LIVES", "": "X", "Ünï": "X_N_",
	} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}
