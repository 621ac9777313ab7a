package credsock

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/exless/exless/internal/fuzzcorpus"
)

// TestWriteFuzzCorpus writes the seed corpus of FuzzParseAddr when run with
// -write-corpus (see internal/fuzzcorpus): peer addresses as systemd binds
// them for LoadCredential= ("\0%<random u64 in hex>/unit/<unit>/<id>"),
// as Go reports them (the NUL shown as "@").
func TestWriteFuzzCorpus(t *testing.T) {
	if !fuzzcorpus.Writing() {
		t.Skip("writes testdata/fuzz only with -write-corpus")
	}
	c := fuzzcorpus.New(t, "FuzzParseAddr")
	for _, u := range []struct{ label, unit, id string }{
		{"readme-deploy", "deploy.service", "exceptionless-client.537650f3b77efe23a47914f4"},
		{"org-project-name", "web-deploy.service", "exceptionless-client.Acme-web"},
		{"template-instance", "app@blue.service", "exceptionless-client.65e0ac0000000000000000c1"},
		{"escaped-unit", "srv-data\\x2dsync.service", "exceptionless-client.65e0ac0000000000000000c2"},
		{"socket-unit", "deploy.socket", "exceptionless-client.537650f3b77efe23a47914f4"},
		{"user-scope", "exceptionless-user.service", "exceptionless-user"},
	} {
		// systemd prints random_u64() with %" PRIx64 ": no zero padding.
		c.Add(u.label, fmt.Sprintf("@%x/unit/%s/%s", rand.Uint64(), u.unit, u.id))
	}
	c.Add("short-random", "@1f/unit/deploy.service/exceptionless-client.537650f3b77efe23a47914f4")
	c.Done()
}
