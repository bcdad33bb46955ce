package responders_test

import (
	"testing"

	"github.com/meshward/meshward/responders"
)

// Whatever the policies say, the safety floors hold at the responders:
// loopback, link-local, unspecified and multicast addresses and public
// suffixes never reach a backend, and each drop is counted. Breadth is
// the FSM's decision: a wide block passes.
func TestFloorsHoldAtTheResponders(t *testing.T) {
	dry := responders.NewDryRun(nil)
	mesh := blocks(t0, mustInd(t, "127.0.0.1"), mustInd(t, "::1"), mustInd(t, "169.254.3.3"), mustInd(t, "224.0.0.1"),
		mustInd(t, "com"), mustInd(t, "0.0.0.0/0"), mustInd(t, "10.0.0.0/8"), mustInd(t, "203.0.113.9"))
	src := &state{mesh: mesh}
	r := responders.NewReconciler(src, []responders.Backend{dry}, responders.Options{Now: (&clock{t: t0}).Now})
	defer r.Close()
	if err := r.ReconcileOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, ind := range dry.Blocked() {
		got[ind.Key()] = true
	}
	if len(got) != 2 || !got["cidr:10.0.0.0/8"] || !got["ipv4:203.0.113.9"] {
		t.Fatalf("blocked %v, want only 10.0.0.0/8 and 203.0.113.9", dry.Blocked())
	}
	if n := r.Stats().BelowFloor; n != 6 {
		t.Errorf("BelowFloor = %d, want 6", n)
	}
}
