package exceptionless

import (
	"fmt"
	"log/slog"
)

// Token is an Exceptionless token id. The id is the credential itself (the
// server looks tokens up by id), so a Token hides its value from every
// formatting path: fmt verbs, %#v, slog. Code that must send it calls Reveal.
type Token string

const redacted = "[REDACTED]"

// Reveal returns the secret value. Call it only where the token leaves the
// process on purpose: an Authorization header, a Vault write, a socket reply.
func (t Token) Reveal() string { return string(t) }

// IsZero reports whether the token is empty.
func (t Token) IsZero() bool { return t == "" }

// String implements fmt.Stringer without revealing the token.
func (t Token) String() string {
	if t == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer without revealing the token.
func (t Token) GoString() string { return fmt.Sprintf("exceptionless.Token(%q)", t.String()) }

// Format implements fmt.Formatter so that no verb (%x included) prints the value.
func (t Token) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(t.GoString()))
		return
	}
	_, _ = f.Write([]byte(t.String()))
}

// LogValue implements slog.LogValuer without revealing the token.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }
