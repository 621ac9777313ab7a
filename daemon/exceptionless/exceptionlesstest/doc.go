// Package exceptionlesstest is an in-process Exceptionless API server for
// tests and demos, in the style of net/http/httptest. It reproduces the
// behaviour that exless depends on, as described in
// docs/exceptionless-api.md: the shared login token and its three-month
// life, the per-email and per-IP login throttle with its wall-clock
// 15-minute windows, problem+json errors, snake_case JSON, paging headers,
// the token API's rules (scopes, delete semantics, who gets 401 or 403), the
// client-token endpoints /projects/config and /events, and the optional API
// rate limit.
//
// Fidelity matters more than breadth: the endpoints it serves behave like
// the real ones, and the ones it does not serve answer 404.
//
// Tests control it through hooks on Handler: an injectable clock
// (Config.Now, see Clock), a call recorder with token ids redacted, failure
// injection, and functions to add users, organizations, projects and tokens
// or to expire, disable and delete tokens. NewServer seeds one account
// (Account) so that most tests need no setup.
package exceptionlesstest
