package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exless/exless/daemon/policy"
	"github.com/exless/exless/daemon/policy/policytest"
	"github.com/exless/exless/internal/fuzzcorpus"
)

// TestWriteFuzzCorpus writes the seed corpora of FuzzParseConfig and
// FuzzSocketAPI when run with -write-corpus (see internal/fuzzcorpus).
func TestWriteFuzzCorpus(t *testing.T) {
	if !fuzzcorpus.Writing() {
		t.Skip("writes testdata/fuzz only with -write-corpus")
	}

	// Configs: the packaged one, the README's examples, the issue's
	// contract, and policies of many rules (the policy is parsed only as
	// part of a config, so this is also the policy parser's corpus).
	cfg := fuzzcorpus.New(t, "FuzzParseConfig")
	pkg, err := os.ReadFile(filepath.Join("..", "packaging", "exlessd.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Add("packaging-exlessd.hcl", string(pkg))
	// exlessd takes its configured marker out before ParseConfig sees it.
	cfg.Add("packaging-exlessd.hcl-configured", strings.Replace(string(pkg), "configured = false", "", 1))
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range regexp.MustCompile("(?s)```hcl\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		cfg.Add("readme-"+strconv.Itoa(i+1), m[1])
	}
	cfg.Add("contract", contractConfig)
	header := strings.SplitN(contractConfig, `rule "deployers"`, 2)[0]
	for _, n := range []int{1, 10, 60} {
		cfg.Add(fmt.Sprintf("policytest-%d-rules", n), header+rulesHCL(policytest.Rules(n, n/2)))
	}
	cfg.Add("every-matcher", header+rulesHCL([]policy.Rule{{
		Name: "all", Users: []string{"root", "1000"}, Groups: []string{"exless", "100"},
		Units: []string{"deploy.service", "user@1000.service/app.slice/*.service"}, ExePaths: []string{"/usr/local/bin/*"},
		ExeSHA256: []string{strings.Repeat("ab", 32)}, NotUsers: []string{"65534"}, NotGroups: []string{"nogroup"},
		NotUnits: []string{"*.scope"}, Scopes: []string{"user", "client"}, Projects: []string{"Acme/web", "537650f3b77efe23a47914f4", "*"},
		Actions: []string{"token", "status", "rotate", "reload", "metrics"},
	}, {
		Name: "status only", Groups: []string{"adm"}, Actions: []string{"status"},
	}}))
	cfg.Done()

	// Requests as exlessctl's client sends them.
	api := fuzzcorpus.New(t, "FuzzSocketAPI")
	for i, r := range clientRequests(t) {
		api.Add(fmt.Sprintf("client-%02d-%s", i, strings.Trim(strings.ReplaceAll(r.URL.Path, "/", "-"), "-")), r.Method, r.URL.Path, r.URL.RawQuery)
	}
	api.Done()
}

// rulesHCL renders rules as config blocks.
func rulesHCL(rules []policy.Rule) string {
	var b strings.Builder
	list := func(key string, xs []string) {
		if len(xs) == 0 {
			return
		}
		q := make([]string, len(xs))
		for i, x := range xs {
			q[i] = strconv.Quote(x)
		}
		fmt.Fprintf(&b, "  %s = [%s]\n", key, strings.Join(q, ", "))
	}
	for _, r := range rules {
		fmt.Fprintf(&b, "\nrule %q {\n", r.Name)
		list("users", r.Users)
		list("groups", r.Groups)
		list("units", r.Units)
		list("exe_paths", r.ExePaths)
		list("exe_sha256", r.ExeSHA256)
		list("not_users", r.NotUsers)
		list("not_groups", r.NotGroups)
		list("not_units", r.NotUnits)
		list("scopes", r.Scopes)
		list("projects", r.Projects)
		list("actions", r.Actions)
		b.WriteString("}\n")
	}
	return b.String()
}

// clientRequests runs every Client call against a socket that records
// the requests.
func clientRequests(t *testing.T) []*http.Request {
	dir, err := os.MkdirTemp("", "corpus")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *http.Request, 100)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	c := NewClient(sock)
	ctx := context.Background()
	_, _ = c.Token(ctx, "user", "")
	_, _ = c.Token(ctx, "client", "537650f3b77efe23a47914f4")
	_, _ = c.Token(ctx, "client", "Acme/web")
	_, _ = c.WhoAmI(ctx)
	_, _ = c.Status(ctx)
	_, _ = c.Rotate(ctx, "537650f3b77efe23a47914f4", 0)
	_, _ = c.Rotate(ctx, "Acme/api", 90*time.Second)
	_ = c.Reload(ctx)
	_, _ = c.Explain(ctx, url.Values{"uid": {"1000"}, "scope": {"client"}, "project": {"Acme/web"}})
	_, _ = c.Explain(ctx, url.Values{"uid": {"0"}, "gid": {"0"}, "groups": {"4,24,27"}, "unit": {"deploy.service"}, "exe": {"/usr/local/bin/deploy"}, "scope": {"user"}})
	close(got)
	var out []*http.Request
	for r := range got {
		out = append(out, r)
	}
	if len(out) < 10 {
		t.Fatalf("recorded %d requests", len(out))
	}
	return out
}
