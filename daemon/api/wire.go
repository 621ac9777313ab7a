package api

import (
	"time"

	"github.com/exless/exless/daemon/exceptionless"
	"github.com/exless/exless/daemon/policy"
)

// TokenResponse is the body of GET /v1/token.
type TokenResponse struct {
	Token          exceptionless.Token `json:"token"`
	Scope          string              `json:"scope"`
	ProjectID      string              `json:"project_id,omitempty"`
	OrganizationID string              `json:"organization_id,omitempty"`
	ObtainedAt     *time.Time          `json:"obtained_at,omitempty"`
	ObtainedBy     string              `json:"obtained_by,omitempty"`
	ExpiresAt      *time.Time          `json:"expires_at,omitempty"` // when known
	// CacheAgeSeconds is how long ago the daemon last read or obtained the
	// record it served (it serves from memory).
	CacheAgeSeconds float64 `json:"cache_age_seconds"`
}

// WhoAmI is the body of GET /v1/whoami: what the daemon sees of the caller
// and what the policy lets it do.
type WhoAmI struct {
	PID        int32    `json:"pid"`
	UID        uint32   `json:"uid"`
	User       string   `json:"user,omitempty"`
	GID        uint32   `json:"gid"`
	Group      string   `json:"group,omitempty"`
	Groups     []uint32 `json:"groups"`
	GroupNames []string `json:"group_names"`
	Unit       string   `json:"unit,omitempty"`
	UserUnit   bool     `json:"user_unit,omitempty"`
	ExePath    string   `json:"exe_path,omitempty"`
	ExeSHA256  string   `json:"exe_sha256,omitempty"`
	// ExeUnknown says why the executable is not known, when it is not.
	ExeUnknown string `json:"exe_unknown,omitempty"`
	// Pin is how the process was pinned against pid reuse.
	Pin       string         `json:"pin"`
	Grants    []policy.Grant `json:"grants"`
	CanStatus bool           `json:"can_status"`
}

// Status is the body of GET /v1/status. It carries no secrets.
type Status struct {
	State           string   `json:"state"` // "ok" or "degraded"
	LoggedIn        bool     `json:"logged_in"`
	VaultReachable  bool     `json:"vault_reachable"`
	ClientTokens    int      `json:"client_tokens"`
	Served          uint64   `json:"tokens_served"`
	Denied          uint64   `json:"requests_denied"`
	DegradedReasons []string `json:"degraded_reasons,omitempty"`
	// Tokens lists what is held, by fingerprint, with ages and source host.
	Tokens       []TokenStatus `json:"tokens"`
	LeaseHolder  string        `json:"lease_holder,omitempty"`
	LastRotation *time.Time    `json:"last_rotation,omitempty"`
	Logins       uint64        `json:"logins"`
	Mints        uint64        `json:"mints"`
	Rotations    uint64        `json:"rotations"`
	Revocations  uint64        `json:"revocations"`
	// PasswordChanges counts account password changes this daemon made or
	// completed (exlessctl rotate --scope user --password).
	PasswordChanges uint64 `json:"password_changes"`
	// ConnectionsCutOff counts connections the daemon's limits closed or
	// refused, CutOffs the same by reason (max_connections,
	// per_uid_connections, unidentified, header_timeout, idle_timeout,
	// request_timeout, write_timeout, header_too_large, body_too_large);
	// RateLimited counts requests answered 429 (the rate limit, too many
	// unknown projects).
	ConnectionsCutOff uint64            `json:"connections_cut_off"`
	CutOffs           map[string]uint64 `json:"connections_cut_off_by_reason,omitempty"`
	RateLimited       uint64            `json:"rate_limited"`
	// Requests counts every request answered; AttestationFailures the
	// connections whose peer could not be identified; VaultErrors and
	// UpstreamErrors the failed calls to Vault and Exceptionless.
	Requests            uint64 `json:"requests"`
	AttestationFailures uint64 `json:"attestation_failures"`
	VaultErrors         uint64 `json:"vault_errors"`
	UpstreamErrors      uint64 `json:"upstream_errors"`
}

// ErrorResponse is the body of every error reply.
type ErrorResponse struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Error codes in ErrorResponse.Code.
const (
	CodeBadRequest  = "bad_request"
	CodeDenied      = "denied"
	CodeNotFound    = "not_found"
	CodeUnavailable = "unavailable"
	CodeInternal    = "internal"
	CodeMethod      = "method_not_allowed"
	CodeRateLimited = "rate_limited"
)

// Token scopes.
const (
	ScopeUser   = "user"
	ScopeClient = "client"
)

// TokenStatus describes one held token, without the token.
type TokenStatus struct {
	Scope        string    `json:"scope"`
	ProjectID    string    `json:"project_id,omitempty"`
	ObtainedBy   string    `json:"obtained_by,omitempty"`
	ObtainedAt   time.Time `json:"obtained_at"`
	AgeSeconds   float64   `json:"age_seconds"`   // since obtained
	StaleSeconds float64   `json:"stale_seconds"` // since last read from Vault
	Version      int       `json:"version"`
	Retiring     int       `json:"retiring,omitempty"`
	Fingerprint  string    `json:"fingerprint"`
}

// RotateResult says what a rotation did, without tokens.
type RotateResult struct {
	ProjectID      string    `json:"project_id"`
	OldFingerprint string    `json:"old_fingerprint"`
	NewFingerprint string    `json:"new_fingerprint"`
	RevokeAfter    time.Time `json:"revoke_after"`
	Revoked        bool      `json:"revoked"` // the old token is already revoked (grace 0)
}

// RotateResponse is the body of POST /v1/rotate.
type RotateResponse struct {
	RotateResult
	// ReceivedBy lists the peers (and units) this daemon handed the old
	// token to, so units that got it by LoadCredential= can be restarted.
	ReceivedBy []string `json:"received_by"`
}

// PasswordResult says what a password change did, without secrets.
type PasswordResult struct {
	// Fingerprints of the user token before and after: the change deletes
	// every login token of the user, so the old one is dead.
	OldFingerprint string    `json:"old_fingerprint"`
	NewFingerprint string    `json:"new_fingerprint"`
	ChangedAt      time.Time `json:"changed_at"`
}

// PasswordRotateResponse is the body of POST /v1/rotate?scope=user&password=true.
type PasswordRotateResponse struct {
	PasswordResult
	// ReceivedBy lists the peers this daemon handed the old user token to;
	// it no longer works.
	ReceivedBy []string `json:"received_by"`
}
