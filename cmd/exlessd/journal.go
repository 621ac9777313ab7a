package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// newLogger logs to journald with structured fields when stderr is the
// journal (as under systemd), and as slog text to w otherwise.
//
// Why native journal messages and not text on stderr: journald then keeps
// every attribute as a field of its own (journalctl -u exlessd UID=1000,
// -o json for tools) and the level as PRIORITY, so warnings and errors are
// coloured and filterable with -p. MESSAGE still carries the attributes as
// key=value text, so the plain journalctl view reads like the text log.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	if isJournal, _ := journal.StderrIsJournalStream(); isJournal {
		return slog.New(newJournalHandler(lv, journal.Send, w)), nil
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv})), nil
}

// journalHandler is a slog.Handler that sends each record to journald as
// one native message: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and one field per
// attribute (upper-cased, groups joined with "_"). Values are resolved
// first, so types that redact themselves (slog.LogValuer) stay redacted.
type journalHandler struct {
	level slog.Leveler
	send  func(msg string, p journal.Priority, fields map[string]string) error
	// fallback receives the text line when journald cannot be reached.
	fallback io.Writer

	// text renders the attributes of MESSAGE into buf, under mu.
	mu   *sync.Mutex
	buf  *bytes.Buffer
	text slog.Handler

	fields map[string]string // from WithAttrs
	prefix string            // from WithGroup, e.g. "REQ_"
}

func newJournalHandler(level slog.Leveler, send func(string, journal.Priority, map[string]string) error, fallback io.Writer) *journalHandler {
	buf := new(bytes.Buffer)
	text := slog.NewTextHandler(buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		// journald stamps time and keeps the level as PRIORITY; MESSAGE
		// starts with the message itself.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
				return slog.Attr{}
			}
			return a
		},
	})
	return &journalHandler{level: level, send: send, fallback: fallback, mu: new(sync.Mutex), buf: buf, text: text, fields: map[string]string{}}
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	fields := make(map[string]string, len(h.fields)+r.NumAttrs()+1)
	for k, v := range h.fields {
		fields[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		addField(fields, h.prefix, a)
		return true
	})
	fields["SYSLOG_IDENTIFIER"] = "exlessd"

	h.mu.Lock()
	h.buf.Reset()
	err := h.text.Handle(ctx, r)
	attrs := strings.TrimSpace(h.buf.String())
	h.mu.Unlock()
	if err != nil {
		return err
	}
	msg := r.Message
	if attrs != "" {
		msg += " " + attrs
	}
	if err := h.send(msg, priority(r.Level), fields); err != nil {
		_, werr := fmt.Fprintf(h.fallback, "%s %s\n", r.Level, msg)
		return werr
	}
	return nil
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.fields = make(map[string]string, len(h.fields)+len(as))
	for k, v := range h.fields {
		c.fields[k] = v
	}
	for _, a := range as {
		addField(c.fields, h.prefix, a)
	}
	c.text = h.text.WithAttrs(as)
	return &c
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + fieldName(name) + "_"
	c.text = h.text.WithGroup(name)
	return &c
}

// reservedFields are journal fields with a meaning of their own; an
// attribute of that name gets an "X_" prefix instead of overriding it.
var reservedFields = map[string]bool{
	"MESSAGE": true, "MESSAGE_ID": true, "PRIORITY": true, "CODE_FILE": true, "CODE_LINE": true,
	"CODE_FUNC": true, "ERRNO": true, "SYSLOG_IDENTIFIER": true, "SYSLOG_FACILITY": true,
	"SYSLOG_PID": true, "SYSLOG_TIMESTAMP": true, "INVOCATION_ID": true, "USER_INVOCATION_ID": true,
	"DOCUMENTATION": true, "TID": true,
}

func addField(fields map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if a.Key == "" && v.Kind() != slog.KindGroup {
		return
	}
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += fieldName(a.Key) + "_"
		}
		for _, ga := range v.Group() {
			addField(fields, p, ga)
		}
		return
	}
	name := prefix + fieldName(a.Key)
	if reservedFields[name] {
		name = "X_" + name
	}
	if len(name) > 64 {
		name = name[:64]
	}
	switch v.Kind() {
	case slog.KindTime:
		fields[name] = v.Time().Format(time.RFC3339Nano)
	default:
		fields[name] = v.String()
	}
}

// fieldName maps an attribute key to a journal field name: upper-case
// letters, digits and underscores, not starting with an underscore (those
// are journald's trusted fields) or a digit.
func fieldName(key string) string {
	var b strings.Builder
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if s == "" || s[0] == '_' || (s[0] >= '0' && s[0] <= '9') {
		s = "X" + s
	}
	return s
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}
