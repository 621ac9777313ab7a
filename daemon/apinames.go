package daemon

import "github.com/exless/exless/daemon/api"

// The socket API's client and wire types live in package api, which
// clients can link without the daemon; these names keep daemon.Client and
// the rest working for the daemon's own code and tests.
type (
	Client                 = api.Client
	AccessDeniedError      = api.AccessDeniedError
	UnreachableError       = api.UnreachableError
	APIError               = api.APIError
	TokenResponse          = api.TokenResponse
	WhoAmI                 = api.WhoAmI
	Status                 = api.Status
	ErrorResponse          = api.ErrorResponse
	TokenStatus            = api.TokenStatus
	RotateResult           = api.RotateResult
	RotateResponse         = api.RotateResponse
	PasswordResult         = api.PasswordResult
	PasswordRotateResponse = api.PasswordRotateResponse
)

// DefaultSocket is where exlessd listens unless configured otherwise.
const DefaultSocket = api.DefaultSocket

// Token scopes.
const (
	ScopeUser   = api.ScopeUser
	ScopeClient = api.ScopeClient
)

// Error codes in ErrorResponse.Code.
const (
	CodeBadRequest  = api.CodeBadRequest
	CodeDenied      = api.CodeDenied
	CodeNotFound    = api.CodeNotFound
	CodeUnavailable = api.CodeUnavailable
	CodeInternal    = api.CodeInternal
	CodeMethod      = api.CodeMethod
	CodeRateLimited = api.CodeRateLimited
)

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client { return api.NewClient(socket) }
