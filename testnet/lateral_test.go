package testnet

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// Lateral movement: an office host guessing SSH passwords at one site is
// quarantined on every node of a 3-node mesh, by the FSM's check of that
// site's signed sighting; every node's segmentation then drops its
// traffic except to the management zone. An internal host in no zone
// that the same rule catches is not quarantined anywhere.
func TestLateralMovementQuarantined(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunLateral(ctx, LateralOptions{Options: Options{Nodes: 3, Dir: t.TempDir(), Logger: testLogger(t)}})
	if err != nil {
		t.Fatalf("scenario: %v (report %+v)", err, rep)
	}
	q := rep.Quarantine
	if !rep.OK() || q.Host != netip.MustParseAddr("10.1.0.66") || q.Zone != "office" || q.By != "auto:ssh-internal-bruteforce" ||
		q.ExpiresAt.Sub(q.Since) != time.Hour || rep.Stats.Refused != 0 {
		t.Fatalf("report %+v", rep)
	}
	// The detecting node's counters, as /metrics exposes them.
	if got := rep.Metrics["committed"]; got != 1 {
		t.Fatalf("meshward_quarantine_auto_total{result=committed} = %v, want 1 (%v)", got, rep.Metrics)
	}
	if got := rep.Metrics["not_allowed"]; got < 1 {
		t.Fatalf("meshward_quarantine_auto_total{result=not_allowed} = %v, want at least 1", got)
	}
	t.Logf("quarantined on all %d nodes %.0f ms after the log lines; detecting node %+v", rep.Nodes, rep.QuarantinedEverywhereMs, rep.Stats)
}
