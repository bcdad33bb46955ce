package detectors

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshward/meshward/intel/kev"
	"github.com/meshward/meshward/internal/testenv"
)

// Every CVE an exploit-attempt rule of the built-in pack names is one
// CISA lists as exploited in the wild (the shared KEV catalog); a rule
// with a malformed CVE ID is refused, naming the field.
func TestBuiltinRuleCVEsInKEV(t *testing.T) {
	cat, err := kev.Load(filepath.Join(testenv.SharedData(t, "kev"), "known_exploited_vulnerabilities.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range BuiltinRules().Rules() {
		for _, id := range r.CVEs {
			n++
			if _, ok := cat.Lookup(id); !ok {
				t.Errorf("rule %s: %s is not in the KEV catalog", r.Name, id)
			}
		}
	}
	if n < 8 {
		t.Errorf("%d CVEs named by the built-in pack, want the exploit-attempt rules' 8", n)
	}
	r := DefaultSSHRule()
	r.CVEs = []string{"CVE-2021-44228", "log4shell"}
	if _, err := NewRuleSet(r); !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), `field "cves[1]"`) {
		t.Errorf("a malformed CVE ID: %v, want an invalid rule naming cves[1]", err)
	}
}
