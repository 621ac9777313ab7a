package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
)

// RecordSchema is the version of the Record layout this build writes. A
// record with a newer schema is refused rather than misread.
const RecordSchema = 1

// Record is one token as kept in durable storage: the user token under the
// key "user" (or under exceptionless.password_vault_key, beside the
// password), a project's client token under "client/<project id>".
type Record struct {
	Schema         int
	Token          exceptionless.Token
	Scope          string // ScopeUser or ScopeClient
	ProjectID      string // client tokens only
	OrganizationID string // client tokens only
	ObtainedAt     time.Time
	ObtainedBy     string    // host name of the daemon that obtained the token
	ExpiresAt      time.Time // zero when unknown
	// Password and the Pending fields exist only in the user record, and
	// only when the password is kept in the store
	// (exceptionless.password_vault_key). Such a record may hold a password
	// and no token yet (as an operator first writes it). A password change
	// writes the new password as pending before asking Exceptionless, so a
	// crash between the two is resolved by trying it; see RotatePassword.
	Password        Password
	PendingPassword Password
	PendingSince    time.Time
	PendingBy       string // host name of the daemon changing the password

	// Retiring lists tokens this one replaced that are still valid during
	// their grace period. They are revoked in Exceptionless after
	// RevokeAfter by whichever daemon gets there first, so a pending
	// revocation survives restarts and is finished by another host.
	Retiring []Retiring
}

// Password is the Exceptionless account password. Like exceptionless.Token
// it hides its value from every formatting path (fmt verbs, %#v, slog), so
// a record printed by mistake does not leak it.
type Password []byte

// String implements fmt.Stringer without revealing the password.
func (p Password) String() string {
	if len(p) == 0 {
		return ""
	}
	return "[REDACTED]"
}

// GoString implements fmt.GoStringer without revealing the password.
func (p Password) GoString() string { return fmt.Sprintf("daemon.Password(%q)", p.String()) }

// Format implements fmt.Formatter so that no verb prints the value.
func (p Password) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// LogValue implements slog.LogValuer without revealing the password.
func (p Password) LogValue() slog.Value { return slog.StringValue(p.String()) }

// MarshalJSON refuses: a password never goes into JSON by accident (the
// store encodes it field by field).
func (p Password) MarshalJSON() ([]byte, error) {
	return nil, errors.New("daemon.Password is not JSON-encodable")
}

// Retiring is a replaced token awaiting revocation.
type Retiring struct {
	Token       exceptionless.Token
	RevokeAfter time.Time
}

// Control is a small coordination record shared by a fleet: the lease that
// lets one daemon at a time log in, mint or rotate, and the fleet's login
// budget. It never holds a token.
type Control struct {
	// Lease fields.
	Holder   string        // the holding daemon's id
	Purpose  string        // e.g. "login", "mint/<project>", "rotate/<project>"
	Nonce    string        // tags what the holder creates, for orphan clean-up
	TTL      time.Duration // the lease ends TTL after Meta.Written
	Released bool
	// Budget fields.
	Window time.Time // start of the quarter hour counted
	Count  int
}

// Meta is what the store knows of a control record's version.
type Meta struct {
	Version int
	// Written is when the version was written, by the store's clock (Vault's
	// created_time), so that lease expiry never compares host clocks.
	Written time.Time
}

// Keys of the control records.
const (
	LeaseKey  = "lease"
	BudgetKey = "login-budget"
)

// UserKey is the storage key of the user token.
const UserKey = "user"

// ClientKey returns the storage key of a project's client token.
func ClientKey(projectID string) string { return "client/" + projectID }

// CheckPasswordKey checks a key for exceptionless.password_vault_key: a
// relative KV path under vault.path that does not collide with the keys
// exless writes itself.
func CheckPasswordKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return errors.New(`must be a key under vault.path such as "account", without leading or trailing "/"`)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%q has an empty, \".\" or \"..\" segment", key)
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return fmt.Errorf("%q: use letters, digits, '-', '_', '.' and '/' only", key)
			}
		}
	}
	// Not UserKey either: a daemon of the fleet still on password_file
	// writes the user record there without the password fields.
	if key == UserKey || key == LeaseKey || key == BudgetKey || strings.HasPrefix(key, ClientKey("")) {
		return fmt.Errorf("%q is a key exless uses for itself; choose another, e.g. \"account\"", key)
	}
	return nil
}

// TokenStore is the durable store the daemon needs. Versions are those of
// Vault KV v2: every Save is a check-and-set against the version last read,
// so that several daemons sharing one store never overwrite each other.
type TokenStore interface {
	// Load returns the record under key and its version. When there is no
	// record it returns ErrNotFound, with the version a check-and-set must
	// name (0 if the key never existed, the current version if the latest
	// one was deleted).
	Load(ctx context.Context, key string) (Record, int, error)
	// Save writes rec under key if the stored version is still version
	// (0: only if absent) and returns the new version. A lost race returns
	// ErrConflict.
	Save(ctx context.Context, key string, rec Record, version int) (int, error)
	// Ping checks that the store answers and is set up (credentials, the
	// mount). A store that is missing or misconfigured can look empty, and
	// an empty store makes the daemon log in: Ping guards that login.
	Ping(ctx context.Context) error
	// LoadControl and SaveControl read and check-and-set a Control record.
	LoadControl(ctx context.Context, key string) (Control, Meta, error)
	SaveControl(ctx context.Context, key string, c Control, version int) (int, error)
	// Now is the store's own clock, against which Meta.Written is judged.
	Now(ctx context.Context) (time.Time, error)
}

// Errors a TokenStore returns; callers test for them with errors.Is.
var (
	// ErrNotFound means no live record exists under the key.
	ErrNotFound = errors.New("record not found")
	// ErrConflict means a check-and-set lost: someone else wrote first.
	ErrConflict = errors.New("record changed concurrently (check-and-set failed)")
)
