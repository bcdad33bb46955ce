package testnet

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestDistributedSubThresholdAttackBlocked is the distributed scenario at
// 10 sites (k = 5 sites, threshold 14, a site counting for at most 4): an
// attacker trying two passwords at every site fires no rule anywhere and
// is blocked mesh-wide within one window; a benign user failing once at 4
// sites (fewer than k) and one failing once at 8 (8 < 14) are not. The
// 20-site variant is BenchmarkDistributed20Sites.
func TestDistributedSubThresholdAttackBlocked(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 10-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	benignFew, benignLight := netip.MustParseAddr("198.51.100.21"), netip.MustParseAddr("198.51.100.22")
	rep, err := RunDistributed(ctx, DistributedOptions{
		Options: Options{Nodes: 10, Dir: t.TempDir(), Logger: testLogger(t)},
		Benign:  []BenignUser{{Addr: benignFew, Sites: 4}, {Addr: benignLight, Sites: 8}},
		Timeout: 4 * time.Minute,
	})
	if rep != nil {
		t.Logf("report: %+v", *rep)
	}
	if err != nil {
		t.Fatalf("scenario: %v", err)
	}
	if rep.FullSightings != 0 || rep.Detections != 0 {
		t.Fatalf("%d full sightings of the attacker, %d local detections: a rule fired somewhere", rep.FullSightings, rep.Detections)
	}
	if rep.BlockedOn != rep.Nodes {
		t.Fatalf("blocked on %d of %d nodes", rep.BlockedOn, rep.Nodes)
	}
	if !strings.HasPrefix(rep.PolicyReason, "distributed: ") || rep.PolicyEvidence < 5 {
		t.Fatalf("block reason %q with %d proofs, want a distributed block of at least 5 sites", rep.PolicyReason, rep.PolicyEvidence)
	}
	// Within one window: the block was enforced everywhere before the
	// mesh's window (10 minutes) from the attack's lines passed.
	if rep.LineBlockMs <= 0 || rep.LineBlockMs > float64((10*time.Minute).Milliseconds()) {
		t.Fatalf("blocked %v ms after the attack's lines, want within the window", rep.LineBlockMs)
	}
	if len(rep.BenignBlocked) != 0 || rep.BenignProposals != 0 {
		t.Fatalf("benign users blocked: %v; %d proposals on them", rep.BenignBlocked, rep.BenignProposals)
	}
	if rep.Partials == 0 || rep.PartialBytes == 0 {
		t.Fatalf("no partials measured: %+v", *rep)
	}
}

// BenchmarkDistributed20Sites runs the scenario at 20 sites (k = 10,
// threshold 30): the time from the attack's lines to the block on every
// node, and the summaries' bytes per node per second. Heavy: run it
// alone, with -benchtime 1x.
func BenchmarkDistributed20Sites(b *testing.B) {
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		rep, err := RunDistributed(ctx, DistributedOptions{
			Options:  Options{Nodes: 20, Dir: b.TempDir()},
			MinSites: 10, Threshold: 30, SiteCap: 4,
			Benign:  []BenignUser{{Addr: netip.MustParseAddr("198.51.100.21"), Sites: 9}},
			Timeout: 6 * time.Minute,
		})
		cancel()
		if err != nil {
			b.Fatalf("scenario: %v", err)
		}
		if rep.FullSightings != 0 || rep.BlockedOn != rep.Nodes || len(rep.BenignBlocked) != 0 {
			b.Fatalf("report %+v", *rep)
		}
		b.ReportMetric(rep.LineBlockMs, "ms-line-to-block")
		b.ReportMetric(rep.BytesPerNodeSecond, "partial-bytes/node/s")
		b.ReportMetric(float64(rep.PartialBytes)/float64(max(rep.Partials, 1)), "bytes/partial")
	}
}
