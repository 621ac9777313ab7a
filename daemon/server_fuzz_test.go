package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/exless/exless/daemon/peer"
	"github.com/exless/exless/daemon/policy"
)

// FuzzSocketAPI sends arbitrary methods, paths and queries through the
// server's routing and checks, as a peer that no rule grants anything: the
// server must answer every one with a JSON error of a sensible status and
// never panic. (The broker is never reached: the policy denies first.)
func FuzzSocketAPI(f *testing.F) {
	f.Add("GET", "/v1/token", "scope=client&project=537650f3b77efe23a47914f4")
	f.Add("GET", "/v1/token", "scope=client&project=Acme%2Fweb")
	f.Add("POST", "/v1/rotate", "scope=client&project=x&grace=-1s")
	f.Add("GET", "/v1/policy/explain", "uid=99999999999&groups=1,,2")
	f.Add("DELETE", "/v1/../v1/status", "")
	f.Add("GET", "/v1/whoami", "%zz")
	pol, _, err := policy.Compile(nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	s := NewServer(ServerConfig{Policy: pol})
	pc := &peerConn{caller: &caller{cred: peer.Cred{PID: 1, UID: 4242, GID: 4242}, id: policy.Identity{UID: 4242, GID: 4242}, pin: "test"}}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		if !validMethod(method) {
			method = "GET"
		}
		u := &url.URL{Path: path, RawQuery: query}
		req, err := http.NewRequestWithContext(context.WithValue(context.Background(), connKey{}, pc), method, "http://exlessd"+u.RequestURI(), nil)
		if err != nil {
			return
		}
		req.Host = "exlessd"
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK:
			// whoami is open to every peer.
			if req.URL.Path != "/v1/whoami" {
				t.Fatalf("%s %s?%s answered 200 to a peer no rule grants anything", method, path, query)
			}
			return
		case 400, 403, 404, 405, 429, 503:
		default:
			t.Fatalf("%s %s?%s: status %d", method, path, query, w.Code)
		}
		var e ErrorResponse
		if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" || e.Code == "" {
			t.Fatalf("%s %s?%s: body is not a JSON error: %q", method, path, query, w.Body.String())
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
