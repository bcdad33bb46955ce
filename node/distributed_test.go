package node

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/confcheck"
	"github.com/meshward/meshward/store"
)

// The node's side of the distributed rule, on fakes: partials never count
// under min_nodes; the mesh's k sites and threshold, each site capped,
// decide; partials from before the window are left out and counted.
func TestDecideDistributed(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.5"))
	seq := uint64(0)
	part := func(origin string, count int, first time.Duration) store.SightingRecord {
		seq++
		return store.SightingRecord{Origin: origin, Seq: seq, Sent: now.Add(-time.Minute), Received: now.Add(-time.Minute),
			Sighting: intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Count: count, Partial: true,
				FirstSeen: now.Add(-first), LastSeen: now.Add(-time.Minute)}}
	}
	full := func(origin string) store.SightingRecord {
		seq++
		return store.SightingRecord{Origin: origin, Seq: seq, Sent: now.Add(-time.Minute), Received: now.Add(-time.Minute),
			Sighting: intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Count: 5, FirstSeen: now.Add(-2 * time.Minute), LastSeen: now.Add(-time.Minute)}}
	}
	members := map[string]bool{}
	for i := range 12 {
		members[fmt.Sprintf("s%02d", i)] = true
	}
	on := consensus.DefaultRules() // min_nodes 2, window 10m
	on.DistributedMinSites, on.DistributedThreshold, on.DistributedSiteCap = 5, 20, 4
	sites := func(n, count int) []store.SightingRecord {
		var out []store.SightingRecord
		for i := range n {
			out = append(out, part(fmt.Sprintf("s%02d", i), count, 2*time.Minute))
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		rules  consensus.Rules
		recs   []store.SightingRecord
		proofs int    // 0: no proposal
		stale  uint64 // partials left out for the window
	}{
		{name: "partials never make up min_nodes", rules: consensus.DefaultRules(), recs: sites(3, 4)},
		{name: "ten sites of two events reach 20", rules: on, recs: sites(10, 2), proofs: 10},
		{name: "nine sites of two events do not", rules: on, recs: sites(9, 2)},
		{name: "four sites, however many events, are too few", rules: on, recs: sites(4, 1000)},
		{name: "a site counts for its cap: five sites of 4 reach 20", rules: on, recs: sites(5, 1000), proofs: 5},
		{name: "a site's reports add up to its cap",
			rules: on, recs: append(sites(4, 4), part("s09", 1, time.Minute), part("s09", 2, time.Minute), part("s09", 1, time.Minute)), proofs: 4 + 3},
		{name: "one full sighting and partials", rules: on, recs: append(sites(4, 4), full("s10")), proofs: 5},
		{name: "a partial from before the window is left out",
			rules: on, recs: append(sites(4, 4), part("s09", 4, 10*time.Minute)), stale: 1},
		{name: "strangers do not count", rules: on, recs: append(sites(4, 4), part("stranger", 4, time.Minute))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mesh := &fakeMesh{members: members, policies: map[string]bool{}, rules: tc.rules}
			c := newCorroborator("self", CorroborationConfig{MinNodes: 2, Window: 10 * time.Minute, BlockTTL: time.Hour},
				&fakeSightings{recs: tc.recs}, mesh, &fakeProposer{}, func() time.Time { return now }, slog.New(slog.DiscardHandler), &counters{})
			p, ok, err := c.decide(ind, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.dist.stalePartials.Load(); got != tc.stale {
				t.Errorf("stale partials %d, want %d", got, tc.stale)
			}
			if tc.proofs == 0 {
				if ok {
					t.Fatalf("proposed %+v, want nothing", p.policy)
				}
				return
			}
			if !ok {
				t.Fatal("no proposal")
			}
			if len(p.proofs) != tc.proofs || len(p.policy.Evidence) != tc.proofs {
				t.Fatalf("%d proofs, %d evidence, want %d", len(p.proofs), len(p.policy.Evidence), tc.proofs)
			}
			if !strings.HasPrefix(p.policy.Reason, "distributed: ") || p.policy.ExpiresAt.Sub(p.policy.CreatedAt) != tc.rules.BlockTTL {
				t.Fatalf("policy %+v", p.policy)
			}
			// What the FSM will sum: every chosen site within its cap.
			per := map[string][]int{}
			for _, r := range tc.recs {
				for _, e := range p.policy.Evidence {
					if e.Origin == r.Origin && e.Seq == r.Seq {
						per[r.Origin] = append(per[r.Origin], r.Sighting.Count)
					}
				}
			}
			sum := 0
			for _, counts := range per {
				sum += tc.rules.SiteContribution(counts...)
			}
			if len(per) < tc.rules.DistributedMinSites || sum < tc.rules.DistributedThreshold {
				t.Fatalf("proof of %d sites summing %d, below the rule", len(per), sum)
			}
		})
	}
}

func TestDistributedConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		edit  func(*DistributedConfig)
		field string // "" valid
	}{
		{func(*DistributedConfig) {}, ""},
		{func(c *DistributedConfig) { c.MinSites, c.Summaries = 5, true }, ""},
		{func(c *DistributedConfig) { c.Interval = time.Millisecond }, "corroboration.distributed.interval"},
		{func(c *DistributedConfig) { c.TopN = 0 }, "corroboration.distributed.top_n"},
		{func(c *DistributedConfig) { c.Rules = []string{"ssh-bruteforce", ""} }, "corroboration.distributed.rules[1]"},
		{func(c *DistributedConfig) { c.MinSites = 1 }, "corroboration.distributed.min_sites"},
		{func(c *DistributedConfig) { c.MinSites, c.SiteCap = 5, 0 }, "corroboration.distributed.site_cap"},
		{func(c *DistributedConfig) { c.MinSites, c.Threshold = 5, 4 }, "corroboration.distributed.threshold"},
	} {
		cfg := DefaultConfig()
		tc.edit(&cfg.Corroboration.Distributed)
		err := cfg.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("valid config refused: %v", err)
			}
			continue
		}
		var found bool
		for _, fe := range confcheck.Fields(err) {
			found = found || fe.Field == tc.field
		}
		if !found {
			t.Errorf("want an error naming %s, got %v", tc.field, err)
		}
	}
	cfg := DefaultConfig()
	cfg.Corroboration.MinNodes = 6
	cfg.Corroboration.Distributed.MinSites = 5
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "at least corroboration.min_nodes (6)") {
		t.Errorf("min_sites below min_nodes: %v", err)
	}
	// The founding rule is what the FSM accepts.
	r := consensus.DefaultRules()
	d := DefaultDistributedConfig()
	d.MinSites = 5
	d.withFoundingRule(&r)
	if err := r.Validate(); err != nil || r.DistributedMinSites != 5 || r.DistributedThreshold != 20 || r.DistributedSiteCap != 4 {
		t.Errorf("founding rule %+v: %v", r, err)
	}
	if DefaultDistributedConfig().partialOptions() != nil {
		t.Error("summaries on by default")
	}
}

// The engine's dropped and lost summaries are carried into the node's
// counters, across an engine swap (a reload) without going back.
func TestDistributedStatsFollowEngine(t *testing.T) {
	line := func(addr string) string {
		return time.Now().Format(time.Stamp) + " web-1 sshd[4242]: Failed password for root from " + addr + " port 52311 ssh2"
	}
	newEng := func() *detectors.Engine {
		e, err := detectors.NewEngine(detectors.DefaultSSHRule(), detectors.EngineOptions{Partial: &detectors.PartialOptions{TopN: 1}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	var st distributedStats
	e1 := newEng()
	e1.Feed(line("203.0.113.7"))
	e1.Feed(line("203.0.113.8"))
	if got := e1.TakePartials(); len(got) != 1 {
		t.Fatalf("%d partials, want top_n 1", len(got))
	}
	st.follow(e1)
	st.follow(e1)
	if st.dropped.Load() != 1 {
		t.Fatalf("dropped %d, want 1", st.dropped.Load())
	}
	e2 := newEng()
	st.follow(e2)
	e2.Feed(line("203.0.113.7"))
	e2.Feed(line("203.0.113.8"))
	e2.Feed(line("203.0.113.9"))
	e2.TakePartials()
	st.follow(e2)
	if st.dropped.Load() != 3 {
		t.Fatalf("dropped %d after the swap, want 1 + 2", st.dropped.Load())
	}
}
