package policy

import (
	"regexp"
	"strings"
	"testing"
)

// The hand-written shape checks say what these regexps (their former
// definitions) say.
func TestShapesMatchTheirRegexps(t *testing.T) {
	projectID := regexp.MustCompile(`^[a-zA-Z0-9]{24,36}$`)
	sha := regexp.MustCompile(`^[0-9a-f]{64}$`)
	userPrefix := regexp.MustCompile(`^user@[0-9]+\.service/`)
	inputs := []string{
		"", "abc", strings.Repeat("a", 23), strings.Repeat("a", 24), strings.Repeat("Z9", 18), strings.Repeat("a", 37),
		strings.Repeat("a", 23) + "-", strings.Repeat("é", 12), strings.Repeat("0f", 32), strings.Repeat("0F", 32),
		strings.Repeat("0f", 32) + "0", strings.Repeat("0g", 32),
		"user@1000.service/x.service", "user@.service/x", "user@1000.service", "user@10a.service/", "user@1.service/",
		"xuser@1.service/", "user@1000.service/app.slice/*",
	}
	for _, s := range inputs {
		if got, want := ValidProjectID(s), projectID.MatchString(s); got != want {
			t.Errorf("ValidProjectID(%q) = %v, want %v", s, got, want)
		}
		if got, want := isSHA256Hex(s), sha.MatchString(s); got != want {
			t.Errorf("isSHA256Hex(%q) = %v, want %v", s, got, want)
		}
		if got, want := userUnitPrefix(s), userPrefix.FindString(s); got != want {
			t.Errorf("userUnitPrefix(%q) = %q, want %q", s, got, want)
		}
	}
}
