// Package floor is the benchmark floor's handler, in a package of its own so
// that the floor program links nothing else.
package floor

import (
	"net/http"
	"strings"
)

// Body is the floor's reply: a fixed 60-byte JSON body shaped like a
// token reply, so the load generator's client code handles it as it handles
// exlessd's. The token is filler, not a secret.
var Body = []byte(`{"token":"` + strings.Repeat("f", 47) + "\"}\n")

// Handler is the floor: a bare net/http handler that answers every
// request with Body. Nothing a real daemon must do (identify the peer,
// decide, look up, log) happens here, so exlessd can only be as fast as it.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(Body)
	})
}
