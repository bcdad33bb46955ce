package responders_test

import (
	"testing"

	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/backendtest"
)

// testBackend runs the conformance suite against b.
func testBackend(t *testing.T, b responders.Backend) {
	t.Helper()
	backendtest.Run(t, b)
}

func TestDryRunConformance(t *testing.T) {
	testBackend(t, responders.NewDryRun(nil))
}

func TestDryRunHasAndBlocked(t *testing.T) {
	d := responders.NewDryRun(nil)
	a, b := mustInd(t, "203.0.113.9"), mustInd(t, "2001:db8::1")
	if err := d.Apply(t.Context(), blocks(t0, b, a), nil); err != nil {
		t.Fatal(err)
	}
	if !d.Has(a) || !d.Has(b) || d.Has(mustInd(t, "203.0.113.10")) {
		t.Fatalf("Has is wrong: %v", d.Blocked())
	}
	got := d.Blocked()
	if len(got) != 2 || got[0] != a || got[1] != b { // sorted by key: ipv4 before ipv6
		t.Fatalf("Blocked = %v, want [%v %v]", got, a, b)
	}
}
