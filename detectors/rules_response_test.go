package detectors

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// A rule may ask for a quarantine; any other response is refused, naming
// the field; the example lateral-movement rule loads and fires on an
// internal address only.
func TestRuleResponse(t *testing.T) {
	rules, err := ParseRules("lateral.yaml", []byte(`rules:
  - name: lateral
    match: [{field: kind, equals: ssh_failed}]
    threshold: 2
    window: 60s
    cooldown: 0s
    severity: high
    confidence: 80
    response: quarantine
`))
	if err != nil || len(rules) != 1 || rules[0].Response != ResponseQuarantine {
		t.Fatalf("rules %+v, %v", rules, err)
	}
	r := rules[0]
	r.Response = "isolate"
	if _, err := NewRuleSet(r); !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), `field "response"`) {
		t.Fatalf("response isolate: %v, want an invalid rule naming the field", err)
	}

	data, err := os.ReadFile(filepath.Join("..", "examples", "rules", "lateral-movement.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := ParseRules("lateral-movement.yaml", data)
	if err != nil || len(ex) != 1 || ex[0].Response != ResponseQuarantine {
		t.Fatalf("example rule: %+v, %v", ex, err)
	}
	rs, err := NewRuleSet(ex...)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := NewRulesEngine(rs, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []intel.Sighting
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i, src := range []string{"10.1.0.66", "203.0.113.9"} {
		for j := range 5 {
			line := at.Add(time.Duration(i*10+j)*time.Second).Format("Jan _2 15:04:05") +
				" host sshd[123]: Failed password for root from " + src + " port 4242 ssh2"
			eng.Process([]byte(line), func(s intel.Sighting) { got = append(got, s) })
		}
	}
	if len(got) != 1 || got[0].Indicator != intel.IndicatorFromAddr(netip.MustParseAddr("10.1.0.66")) || got[0].Detector != "ssh-internal-bruteforce" {
		t.Fatalf("sightings %+v, want one of 10.1.0.66 by ssh-internal-bruteforce", got)
	}
}
