package node

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// BenchmarkDistributedAggregate measures the distributed rule's cost at
// N sources × M sites: every site has sent one partial sighting (count 2)
// of every source into a real (in-memory) store, the aggregate the rule
// reads; one op is one evaluation of one source (read its records of the
// window, sum them per site, build the proof). B/op is the aggregator's
// memory per evaluation (nothing is held between evaluations); the store
// holds N×M envelopes of bytes/partial each. bytes/s/node(top_n) is the
// most one node's summaries send: top_n envelopes every 5 s interval.
func BenchmarkDistributedAggregate(b *testing.B) {
	for _, sz := range []struct{ sources, sites int }{{1000, 20}, {200, 100}} {
		b.Run(fmt.Sprintf("sources=%d/sites=%d", sz.sources, sz.sites), func(b *testing.B) {
			benchAggregate(b, sz.sources, sz.sites)
		})
	}
}

func benchAggregate(b *testing.B, sources, sites int) {
	st, err := store.Open(store.Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	now := time.Now().UTC().Truncate(time.Second)
	members := map[string]bool{}
	keys := make([]ed25519.PrivateKey, sites)
	for i := range keys {
		seed := sha256.Sum256(fmt.Appendf(nil, "bench site %d", i))
		keys[i] = ed25519.NewKeyFromSeed(seed[:])
		members[intel.NodeID(keys[i].Public().(ed25519.PublicKey))] = true
	}
	inds := make([]intel.Indicator, sources)
	var bytes int
	for s := range sources {
		inds[s] = intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{10, byte(s >> 16), byte(s >> 8), byte(s)}))
		for i, k := range keys {
			p := intel.Sighting{Indicator: inds[s], Detector: "ssh-bruteforce", Technique: "T1110.001", Severity: intel.SeverityHigh,
				Confidence: 80, Count: 2, FirstSeen: now.Add(-time.Minute), LastSeen: now.Add(-30 * time.Second), Site: fmt.Sprintf("site-%03d", i), Partial: true}
			raw, err := intel.SealJSON(k, intel.KindSighting, uint64(s+1), now.Add(-30*time.Second), p)
			if err != nil {
				b.Fatal(err)
			}
			env, err := intel.Open(raw)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := st.PutEnvelope(env, now); err != nil {
				b.Fatal(err)
			}
			bytes += len(raw)
		}
	}
	rules := consensus.DefaultRules()
	rules.DistributedMinSites, rules.DistributedThreshold, rules.DistributedSiteCap = 5, 20, 4
	mesh := &fakeMesh{members: members, policies: map[string]bool{}, rules: rules}
	c := newCorroborator("self", CorroborationConfig{MinNodes: 2, Window: 10 * time.Minute, BlockTTL: time.Hour},
		st, mesh, &fakeProposer{}, func() time.Time { return now }, slog.New(slog.DiscardHandler), &counters{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, ok, err := c.decide(inds[i%sources], now); err != nil || !ok {
			b.Fatalf("no proposal: %v", err)
		}
	}
	b.StopTimer()
	per := float64(bytes) / float64(sources*sites)
	b.ReportMetric(per, "bytes/partial")
	b.ReportMetric(float64(bytes)/(1<<20), "store-MiB-envelopes")
	b.ReportMetric(per*256/5, "bytes/s/node(top_n=256,5s)")
}
