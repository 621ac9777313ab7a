package packaging

import (
	"testing"

	"github.com/exless/exless/daemon"
)

func TestShippedConfigIsValid(t *testing.T) {
	if _, err := daemon.LoadConfig("exlessd.hcl"); err != nil {
		t.Fatalf("the packaged exlessd.hcl does not load: %v", err)
	}
}
