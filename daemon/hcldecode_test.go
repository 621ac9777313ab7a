package daemon

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// decodeBody must read every config as gohcl.DecodeBody did before it
// replaced it (see decodeBody for why), and refuse what gohcl refused.
func TestDecodeBodyAgreesWithGohcl(t *testing.T) {
	full := contractConfig + `
poll_interval    = "1m"
allow_plain_http = true
max_staleness    = "2h"
vault {
  addresses = ["https://a:8200", "https://b:8200"]
  approle {
    role_id_file   = "role"
    secret_id_file = "secret"
    mount          = "ar"
  }
}
rotation {
  grace   = "10m"
  max_age = "720h"
}
fleet {
  lease_ttl    = "30s"
  login_budget = 3
}
limits {
  max_connections     = 10
  requests_per_second = 2.5
  burst               = 7
}
rule "all" {
  users      = ["a"]
  groups     = ["b"]
  units      = ["c.service"]
  exe_paths  = ["/usr/bin/x"]
  exe_sha256 = ["ab"]
  not_users  = ["d"]
  not_groups = ["e"]
  not_units  = ["f.service"]
  scopes     = ["client"]
  projects   = ["*"]
  actions    = ["token"]
}
`
	for _, src := range []string{
		contractConfig,
		full,
		`socket = 1`,                // converted to "1", as gohcl does
		`allow_plain_http = "true"`, // likewise
		`limits { burst = 1.5 }`,    // not a whole number
		`limits { burst = "x" }`,    // not a number
		`limits { max_connections = null }`,
		`socket = ["x"]`,                                    // not a string
		`rule "x" { users = "root" }`,                       // not a list
		`rule "x" { users = [null] }`,                       // a null in the list
		`rule { users = ["root"] }`,                         // no label
		`exceptionless {}` + "\n" + `exceptionless {}`,      // two blocks
		"vault {\n approle {\n role_id_file = \"r\"\n }\n}", // required attribute missing
		`socket = var.x`,                                    // no variables
		`nonsense = 1`,                                      // unknown attribute
		`rule "x" { scopes = ["client"] }` + "\n" + `rule "y" {}`,
	} {
		f, diags := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("%q: %v", src, diags)
		}
		var got, want fileConfig
		gotDiags := decodeBody(f.Body, &got)
		wantDiags := gohcl.DecodeBody(f.Body, nil, &want)
		if gotDiags.HasErrors() != wantDiags.HasErrors() {
			t.Errorf("%q: decodeBody errors %v, gohcl errors %v", src, gotDiags, wantDiags)
			continue
		}
		if !wantDiags.HasErrors() && !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\n got %+v\nwant %+v", src, got, want)
		}
		if gotDiags.HasErrors() && !strings.Contains(gotDiags.Error(), "t.hcl:") {
			t.Errorf("%q: error %q names no line", src, gotDiags)
		}
	}
}
