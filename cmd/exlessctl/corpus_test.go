package main

import (
	"fmt"
	"testing"

	"github.com/exless/exless/internal/fuzzcorpus"
)

// TestWriteFuzzCorpus writes the seed corpus of FuzzMaskWriter when run
// with -write-corpus (see internal/fuzzcorpus): a token in the shape the
// server issues, in output that commands run under `exlessctl exec` print,
// cut into writes of several sizes.
func TestWriteFuzzCorpus(t *testing.T) {
	if !fuzzcorpus.Writing() {
		t.Skip("writes testdata/fuzz only with -write-corpus")
	}
	const tok = "Zq8RkT2mVb7xLc4NpW9sYd3HfJ6aGe1uQo5tKr0i" // made up, 40 of [A-Za-z0-9]
	outputs := []struct{ label, text string }{
		{"env", "HOME=/root\nEXCEPTIONLESS_API_KEY=" + tok + "\nPATH=/usr/bin:/bin\n"},
		{"curl-verbose", "> GET /api/v2/projects HTTP/1.1\r\n> Host: api.exceptionless.com\r\n> Authorization: Bearer " + tok + "\r\n> \r\n< HTTP/1.1 200 OK\r\n"},
		{"json-config", `{"ApiKey":"` + tok + `","ServerUrl":"https://collector.exceptionless.com"}` + "\n"},
		{"prefix-then-token", tok[:39] + tok + tok[:20] + "\n"},
		{"repeated", tok + tok + tok},
		{"no-token", "deploying web to 3 hosts\nok\n"},
		{"python-traceback", "Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n    client = Client(api_key='" + tok + "')\nValueError: bad key\n"},
	}
	c := fuzzcorpus.New(t, "FuzzMaskWriter")
	for _, o := range outputs {
		for _, step := range []uint8{1, 7, 40, 255} {
			c.Add(fmt.Sprintf("%s-step%d", o.label, step), tok, o.text, step)
		}
	}
	c.Done()
}
