// Package api is exlessd's socket API as its clients see it: the Client
// and the JSON bodies it exchanges. It links little beyond net/http, so
// that exlessctl, which starts once per token, does not pay at start-up for
// the daemon's config parsing and broker; package daemon re-exports these
// names.
package api
