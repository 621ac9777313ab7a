// Package exceptionless is the daemon's client for the Exceptionless HTTP API
// (/api/v2). It owns the wire format (snake_case JSON, problem+json errors,
// paging, the two date forms the server sends) and the mapping of answers to
// Go errors. It keeps no state, caches nothing and never retries: deciding
// when to log in again is the caller's job, because login is throttled per
// account (see ErrLoginDenied).
//
// Every token value is a Token, which redacts itself when formatted. A token
// id is the credential itself (the server looks tokens up by id), and ids
// appear in URLs such as /api/v2/tokens/{id} and in Location headers. Errors
// from this package therefore never quote response bodies and name request
// paths with token ids replaced by [REDACTED].
//
// The server behaviour this package relies on is described in
// docs/exceptionless-api.md; package exceptionlesstest reproduces it.
package exceptionless
