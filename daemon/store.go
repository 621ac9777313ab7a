package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/exless/exless/daemon/exceptionless"
)

// RecordSchema is the version of the Record layout this build writes. A
// record with a newer schema is refused rather than misread.
const RecordSchema = 1

// Record is one token as kept in durable storage: the user token under the
// key "user", a project's client token under "client/<project id>".
type Record struct {
	Schema         int
	Token          exceptionless.Token
	Scope          string // ScopeUser or ScopeClient
	ProjectID      string // client tokens only
	OrganizationID string // client tokens only
	ObtainedAt     time.Time
	ObtainedBy     string    // host name of the daemon that obtained the token
	ExpiresAt      time.Time // zero when unknown
	// Retiring lists tokens this one replaced that are still valid during
	// their grace period. They are revoked in Exceptionless after
	// RevokeAfter by whichever daemon gets there first, so a pending
	// revocation survives restarts and is finished by another host.
	Retiring []Retiring
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
