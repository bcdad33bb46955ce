package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// fakeSightings holds sightings and answers SightingsFor like the store:
// the records of ind last seen at or after since.
type fakeSightings struct {
	recs []store.SightingRecord
	err  error
}

func (f *fakeSightings) SightingsFor(ind intel.Indicator, since time.Time) ([]store.SightingRecord, error) {
	var out []store.SightingRecord
	for _, r := range f.recs {
		if r.Sighting.Indicator == ind && !r.Sighting.LastSeen.Before(since) {
			out = append(out, r)
		}
	}
	return out, f.err
}

// GetEnvelope stands in for the stored envelope of one sighting.
func (f *fakeSightings) GetEnvelope(origin string, seq uint64) ([]byte, error) {
	for _, r := range f.recs {
		if r.Origin == origin && r.Seq == seq {
			return []byte(fmt.Sprintf("envelope %s #%d", origin, seq)), nil
		}
	}
	return nil, store.ErrNotFound
}

type fakeMesh struct {
	members  map[string]bool
	policies map[string]bool
	rules    consensus.Rules
}

func (f *fakeMesh) Rules() consensus.Rules { return f.rules }

func (f *fakeMesh) IsMember(id string) bool { return f.members[id] }
func (f *fakeMesh) Policy(id string, _ time.Time) (intel.Policy, bool) {
	return intel.Policy{ID: id}, f.policies[id]
}

// fakeProposer records proposals; with block set it holds each until
// block is closed.
type fakeProposer struct {
	mu    sync.Mutex
	got   []consensus.Command
	err   error
	block chan struct{}
}

func (f *fakeProposer) Propose(ctx context.Context, cmd consensus.Command) error {
	f.mu.Lock()
	f.got = append(f.got, cmd)
	f.mu.Unlock()
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.err
}

func (f *fakeProposer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func TestCorroborationRule(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.5"))
	other := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.6"))
	rule := CorroborationConfig{MinNodes: 2, Window: 10 * time.Minute, BlockTTL: time.Hour}
	seen := func(origin string, ago time.Duration, what intel.Indicator) store.SightingRecord {
		return store.SightingRecord{Origin: origin, Seq: 1, Received: now.Add(-ago),
			Sighting: intel.Sighting{Indicator: what, Detector: "ssh-bruteforce", LastSeen: now.Add(-ago)}}
	}
	members := map[string]bool{"a": true, "b": true, "c": true}
	for _, tc := range []struct {
		name     string
		recs     []store.SightingRecord
		blocked  bool
		want     bool
		evidence []string
	}{
		{name: "two members within the window", recs: []store.SightingRecord{seen("a", time.Minute, ind), seen("b", 2*time.Minute, ind)},
			want: true, evidence: []string{"a", "b"}},
		{name: "one member", recs: []store.SightingRecord{seen("a", time.Minute, ind)}},
		{name: "duplicates from one member count once", recs: []store.SightingRecord{seen("a", time.Minute, ind), seen("a", 2*time.Minute, ind), seen("a", 3*time.Minute, ind)}},
		{name: "non-members are ignored", recs: []store.SightingRecord{seen("a", time.Minute, ind), seen("stranger", time.Minute, ind)}},
		{name: "a sighting just outside the window does not count", recs: []store.SightingRecord{seen("a", time.Minute, ind), seen("b", 10*time.Minute+time.Nanosecond, ind)}},
		{name: "a sighting on the window's edge counts", recs: []store.SightingRecord{seen("a", time.Minute, ind), seen("b", 10*time.Minute, ind)},
			want: true, evidence: []string{"a", "b"}},
		{name: "another indicator's sightings do not count", recs: []store.SightingRecord{seen("a", time.Minute, ind), seen("b", time.Minute, other)}},
		{name: "three members, evidence sorted", recs: []store.SightingRecord{seen("c", time.Minute, ind), seen("a", time.Minute, ind), seen("b", time.Minute, ind)},
			want: true, evidence: []string{"a", "b", "c"}},
		{name: "already blocked mesh-wide", recs: []store.SightingRecord{seen("a", time.Minute, ind), seen("b", time.Minute, ind)}, blocked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mesh := &fakeMesh{members: members, policies: map[string]bool{}}
			if tc.blocked {
				mesh.policies[intel.PolicyID(intel.ActionBlock, ind)] = true
			}
			c := newCorroborator("self", rule, &fakeSightings{recs: tc.recs}, mesh, &fakeProposer{},
				func() time.Time { return now }, slog.New(slog.DiscardHandler), &counters{})
			pr, ok, err := c.decide(ind, now)
			p := pr.policy
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.want {
				t.Fatalf("propose = %v, want %v", ok, tc.want)
			}
			if !ok {
				return
			}
			var origins []string
			for _, e := range p.Evidence {
				origins = append(origins, e.Origin)
			}
			if len(origins) != len(tc.evidence) {
				t.Fatalf("evidence from %v, want %v", origins, tc.evidence)
			}
			for i := range origins {
				if origins[i] != tc.evidence[i] {
					t.Fatalf("evidence from %v, want %v", origins, tc.evidence)
				}
				if want := fmt.Sprintf("envelope %s #1", origins[i]); string(pr.proofs[i]) != want {
					t.Fatalf("proof %d = %q, want the stored envelope %q", i, pr.proofs[i], want)
				}
			}
			if p.Action != intel.ActionBlock || p.Indicator != ind || p.Author != "self" || !p.CreatedAt.Equal(now) || !p.ExpiresAt.Equal(now.Add(rule.BlockTTL)) {
				t.Errorf("policy %+v", p)
			}
		})
	}
}

// One proposal per indicator at a time: evaluations while it is under
// way propose nothing; after it ends, the next evaluation may.
func TestCorroboratorInflightDedupe(t *testing.T) {
	now := time.Now()
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.8"))
	recs := []store.SightingRecord{
		{Origin: "a", Sighting: intel.Sighting{Indicator: ind, Detector: "d", LastSeen: now}},
		{Origin: "b", Sighting: intel.Sighting{Indicator: ind, Detector: "d", LastSeen: now}},
	}
	prop := &fakeProposer{block: make(chan struct{})}
	st := &counters{}
	c := newCorroborator("self", CorroborationConfig{MinNodes: 2, Window: time.Hour, BlockTTL: time.Hour},
		&fakeSightings{recs: recs}, &fakeMesh{members: map[string]bool{"a": true, "b": true}}, prop,
		time.Now, slog.New(slog.DiscardHandler), st)
	c.witnessGrace = 0 // "self" sighted nothing; it proposes at once here
	p, ok := c.evaluate(ind)
	if !ok {
		t.Fatal("no proposal")
	}
	done := make(chan struct{})
	go func() { c.propose(context.Background(), p); close(done) }()
	for range 3 {
		if _, ok := c.evaluate(ind); ok {
			t.Fatal("a second proposal while the first is under way")
		}
	}
	close(prop.block)
	<-done
	if _, ok := c.evaluate(ind); !ok {
		t.Fatal("no proposal after the first one ended")
	}
	if got := st.proposals.Load(); got != 2 {
		t.Errorf("proposals counted %d, want 2", got)
	}
}

// A proposal refused by a protected range or an allow policy is counted
// as refused; other failures as errors.
func TestCorroboratorCountsRefusals(t *testing.T) {
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.9"))
	for _, tc := range []struct {
		err              error
		refused, errored uint64
	}{
		{err: consensus.ErrProtected, refused: 1},
		{err: consensus.ErrAllowed, refused: 1},
		{err: &consensus.RefusalError{Command: consensus.CmdPutPolicy, Reason: "too_few_signers", Err: consensus.ErrRefused}, refused: 1},
		{err: errors.New("no quorum"), errored: 1},
		{err: nil},
	} {
		st := &counters{}
		prop := &fakeProposer{err: tc.err}
		c := newCorroborator("self", CorroborationConfig{MinNodes: 1, Window: time.Hour, BlockTTL: time.Hour},
			&fakeSightings{}, &fakeMesh{}, prop, time.Now, slog.New(slog.DiscardHandler), st)
		c.inflight[ind.Key()] = true
		c.propose(context.Background(), proposal{policy: intel.NewPolicy(intel.ActionBlock, ind, "r", "self", time.Now(), time.Hour)})
		if st.refused.Load() != tc.refused || st.propErrs.Load() != tc.errored || prop.count() != 1 {
			t.Errorf("err %v: refused %d errors %d proposals %d", tc.err, st.refused.Load(), st.propErrs.Load(), prop.count())
		}
		if c.inflight[ind.Key()] {
			t.Errorf("err %v: indicator still in flight after the proposal ended", tc.err)
		}
	}
}

// A full evaluation queue drops and counts instead of blocking.
func TestCorroboratorQueueFullIsCounted(t *testing.T) {
	st := &counters{}
	c := newCorroborator("self", CorroborationConfig{MinNodes: 1}, &fakeSightings{}, &fakeMesh{}, &fakeProposer{},
		time.Now, slog.New(slog.DiscardHandler), st)
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.10"))
	for range evalQueueSize + 3 {
		c.enqueue(ind)
	}
	if got := st.evalDrops.Load(); got != 3 {
		t.Errorf("dropped %d, want 3", got)
	}
}

// The mesh's rule, once known, overrides this node's configured one.
func TestCorroboratorFollowsTheMeshRule(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.11"))
	recs := []store.SightingRecord{{Origin: "a", Seq: 1, Sent: now, Sighting: intel.Sighting{Indicator: ind, Detector: "d", LastSeen: now}}}
	mesh := &fakeMesh{members: map[string]bool{"a": true}}
	c := newCorroborator("self", CorroborationConfig{MinNodes: 1, Window: time.Hour, BlockTTL: time.Hour},
		&fakeSightings{recs: recs}, mesh, &fakeProposer{}, func() time.Time { return now }, slog.New(slog.DiscardHandler), &counters{})
	if _, ok, _ := c.decide(ind, now); !ok {
		t.Fatal("the configured rule (k = 1) proposed nothing")
	}
	mesh.rules = consensus.Rules{MinNodes: 2, Window: time.Hour, BlockTTL: 2 * time.Hour}
	if _, ok, _ := c.decide(ind, now); ok {
		t.Fatal("proposed with one witness when the mesh requires two")
	}
	mesh.rules.MinNodes = 1
	if pr, ok, _ := c.decide(ind, now); !ok || !pr.policy.ExpiresAt.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("proposal %+v (ok %v): want the mesh's block TTL", pr.policy, ok)
	}
	// A sighting sent near the far edge of the window is left out.
	recs[0].Sent = now.Add(-time.Hour + time.Second)
	if _, ok, _ := c.decide(ind, now); ok {
		t.Fatal("a sighting the FSM could find stale was used as proof")
	}
}

// recidiveMesh is a mesh view that knows the recidive cap of the
// indicators it blocked before.
type recidiveMesh struct {
	fakeMesh
	ttl map[intel.Indicator]time.Duration
}

func (r *recidiveMesh) RecidiveTTL(ind intel.Indicator, _ time.Time) time.Duration { return r.ttl[ind] }

// A source the mesh blocked before is proposed for the longer TTL the
// mesh allows it (consensus recidive); another keeps the mesh's TTL.
func TestCorroboratorProposesRecidiveTTL(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	back := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.12"))
	fresh := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.13"))
	var recs []store.SightingRecord
	for i, ind := range []intel.Indicator{back, fresh} {
		recs = append(recs, store.SightingRecord{Origin: "a", Seq: uint64(i + 1), Sent: now, Sighting: intel.Sighting{Indicator: ind, Detector: "d", LastSeen: now}})
	}
	mesh := &recidiveMesh{fakeMesh: fakeMesh{members: map[string]bool{"a": true}, rules: consensus.Rules{MinNodes: 1, Window: time.Hour, BlockTTL: time.Hour}},
		ttl: map[intel.Indicator]time.Duration{back: 4 * time.Hour}}
	c := newCorroborator("self", CorroborationConfig{MinNodes: 1, Window: time.Hour, BlockTTL: time.Hour},
		&fakeSightings{recs: recs}, mesh, &fakeProposer{}, func() time.Time { return now }, slog.New(slog.DiscardHandler), &counters{})
	if pr, ok, _ := c.decide(back, now); !ok || !pr.policy.ExpiresAt.Equal(now.Add(4*time.Hour)) {
		t.Fatalf("returning source: %+v (ok %v), want the recidive TTL of 4h", pr.policy, ok)
	}
	if pr, ok, _ := c.decide(fresh, now); !ok || !pr.policy.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("first-time source: %+v (ok %v), want the mesh's TTL", pr.policy, ok)
	}
}

// A node that sighted none of a block's evidence leaves the proposal to
// the witnesses: it proposes only when the grace ends with no block in
// force; a witness proposes at once; the deferrals are counted.
func TestCorroboratorNonWitnessWaitsForWitnesses(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.12"))
	by := func(origins ...string) []store.SightingRecord {
		var out []store.SightingRecord
		for _, o := range origins {
			out = append(out, store.SightingRecord{Origin: o, Seq: 1, Sent: now, Sighting: intel.Sighting{Indicator: ind, Detector: "d", LastSeen: now}})
		}
		return out
	}
	members := map[string]bool{"a": true, "b": true, "self": true}
	rule := CorroborationConfig{MinNodes: 2, Window: time.Hour, BlockTTL: time.Hour}

	st := &counters{}
	mesh := &fakeMesh{members: members, policies: map[string]bool{}}
	c := newCorroborator("self", rule, &fakeSightings{recs: by("a", "b")}, mesh, &fakeProposer{}, clock, slog.New(slog.DiscardHandler), st)
	if c.witnessGrace < 2*time.Second || c.witnessGrace >= 5*time.Second {
		t.Fatalf("grace %s, want within [2s, 5s)", c.witnessGrace)
	}
	for range 3 {
		if _, ok := c.evaluate(ind); ok {
			t.Fatal("a non-witness proposed before its grace ended")
		}
	}
	if st.deferred.Load() != 1 {
		t.Fatalf("deferrals counted %d, want 1", st.deferred.Load())
	}
	now = now.Add(c.witnessGrace)
	if got := c.dueBlocks(); len(got) != 1 || got[0] != ind {
		t.Fatalf("due blocks %v, want [%v]", got, ind)
	}
	if _, ok := c.evaluate(ind); !ok {
		t.Fatal("no proposal once the grace ended with no block in force")
	}
	c.release(ind.Key())

	// A block committed during the grace: nothing to propose, nothing left waiting.
	now = now.Add(time.Minute)
	c2 := newCorroborator("self", rule, &fakeSightings{recs: by("a", "b")}, mesh, &fakeProposer{}, clock, slog.New(slog.DiscardHandler), st)
	if _, ok := c2.evaluate(ind); ok {
		t.Fatal("a non-witness proposed at once")
	}
	mesh.policies[intel.PolicyID(intel.ActionBlock, ind)] = true
	now = now.Add(c2.witnessGrace)
	if _, ok := c2.evaluate(ind); ok {
		t.Fatal("proposed a block already in force")
	}
	if len(c2.deferred) != 0 {
		t.Fatalf("%d blocks still waiting after the block came into force", len(c2.deferred))
	}

	// A witness proposes at once.
	delete(mesh.policies, intel.PolicyID(intel.ActionBlock, ind))
	c3 := newCorroborator("self", rule, &fakeSightings{recs: by("a", "self")}, mesh, &fakeProposer{}, clock, slog.New(slog.DiscardHandler), st)
	if _, ok := c3.evaluate(ind); !ok {
		t.Fatal("a witness did not propose at once")
	}
}

// The evaluation loop proposes a deferred block when its grace ends,
// with no new sighting to wake it.
func TestCorroboratorLoopProposesDeferredBlock(t *testing.T) {
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.13"))
	now := time.Now()
	recs := []store.SightingRecord{
		{Origin: "a", Seq: 1, Sent: now, Sighting: intel.Sighting{Indicator: ind, Detector: "d", LastSeen: now}},
		{Origin: "b", Seq: 1, Sent: now, Sighting: intel.Sighting{Indicator: ind, Detector: "d", LastSeen: now}},
	}
	prop := &fakeProposer{}
	c := newCorroborator("self", CorroborationConfig{MinNodes: 2, Window: time.Hour, BlockTTL: time.Hour},
		&fakeSightings{recs: recs}, &fakeMesh{members: map[string]bool{"a": true, "b": true}, policies: map[string]bool{}}, prop,
		time.Now, slog.New(slog.DiscardHandler), &counters{})
	c.witnessGrace = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		c.run(ctx, func(f func(context.Context)) bool { wg.Go(func() { f(ctx) }); return true })
	})
	defer func() { cancel(); wg.Wait() }()
	c.enqueue(ind)
	deadline := time.Now().Add(10 * time.Second)
	for prop.count() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the deferred block was never proposed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
