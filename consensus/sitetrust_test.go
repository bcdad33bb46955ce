package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
)

// trusts reads the trust of the named members at the FSM's clock.
func (a *applier) trusts(names ...string) map[string]int {
	a.t.Helper()
	out := map[string]int{}
	a.f.mu.RLock()
	defer a.f.mu.RUnlock()
	for _, n := range names {
		out[n] = a.f.siteTrust(a.memberIDLocked(n), a.f.clock)
	}
	return out
}

// memberIDLocked is the node ID of a member already admitted.
func (a *applier) memberIDLocked(name string) string {
	a.t.Helper()
	key, ok := a.members[name]
	if !ok {
		a.t.Fatalf("member %s not admitted", name)
	}
	return intel.NodeID(key.Public().(ed25519PublicKey))
}

// stateNoNonces is fsmBytes without what depends on the bytes of the
// operator commands (their nonces, which the test signer draws at random,
// and anything derived from the entries' bytes): the state the commands
// made.
func stateNoNonces(t *testing.T, f *fsm) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(fsmBytes(t, f), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"nonces", "chain", "index"} {
		delete(m, k)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gathered is every metric of reg without labels, by name.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		out[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return out
}

func wantTrust(t *testing.T, step string, got map[string]int, want map[string]int) {
	t.Helper()
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s: trust of %s = %d, want %d (all: %v)", step, n, got[n], w, got)
		}
	}
}

// tick moves the FSM's clock to at with an accepted command that touches
// no trust (an operator block of an unrelated address).
func (a *applier) tick(at time.Time, ind string) {
	a.t.Helper()
	a.mustApply(a.op(blockOp(a.t, ind, time.Hour), at))
}

// TestSiteTrustFallsOnOverturn: an operator's allow or revoke of an
// automatic block costs exactly the block's proof signers TrustPenalty;
// an operator's own block revoked costs nobody; trust recovers with log
// time and survives a snapshot.
func TestSiteTrustFallsOnOverturn(t *testing.T) {
	a := newApplier(t)
	a.memberID("D") // a member who proves nothing
	a.mustApply(a.auto("192.0.2.1", t0, time.Hour, "A", "B"))
	a.mustApply(a.auto("192.0.2.2", t0, time.Hour, "B", "C"))
	a.mustApply(a.op(blockOp(t, "192.0.2.3", time.Hour), t0))
	wantTrust(t, "start", a.trusts("A", "B", "C", "D"), map[string]int{"A": TrustMax, "B": TrustMax, "C": TrustMax, "D": TrustMax})

	// An allow overturns the block of .1: A and B pay.
	a.mustApply(a.op(allowOp(t, "192.0.2.1", time.Hour), t0.Add(time.Second)))
	wantTrust(t, "allow", a.trusts("A", "B", "C", "D"), map[string]int{"A": 800, "B": 800, "C": TrustMax, "D": TrustMax})

	// A revoke overturns the block of .2: B and C pay.
	revoke := func(ind string, at time.Time) {
		a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: intel.PolicyID(intel.ActionBlock, mustIndicator(t, ind))}, at))
	}
	revoke("192.0.2.2", t0.Add(2*time.Second))
	wantTrust(t, "revoke", a.trusts("A", "B", "C", "D"), map[string]int{"A": 800, "B": 600, "C": 800, "D": TrustMax})

	// Revoking the operator's own block costs nobody.
	revoke("192.0.2.3", t0.Add(3*time.Second))
	wantTrust(t, "revoke of an operator's block", a.trusts("A", "B", "C", "D"), map[string]int{"A": 800, "B": 600, "C": 800, "D": TrustMax})
	if o, p := a.f.trustCounts.overturned.Load(), a.f.trustCounts.penalized.Load(); o != 2 || p != 4 {
		t.Fatalf("counted %d overturned, %d penalties; want 2 and 4", o, p)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(siteTrustCollector{a.f})
	got := gathered(t, reg)
	for name, want := range map[string]float64{
		"meshward_consensus_blocks_overturned_total":    2,
		"meshward_consensus_site_trust_penalties_total": 4,
		"meshward_consensus_sites_below_full_trust":     3,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}

	// The state survives a snapshot and a restore, and a replica that
	// restores it reaches the same trust later.
	snap := snapshotBytes(t, a.f)
	b := &applier{t: t, f: newFSM(nil), members: a.members, index: a.index, seq: a.seq, token: true}
	b.f.mustRestore(t, snap)
	if !bytes.Equal(fsmBytes(t, a.f), fsmBytes(t, b.f)) {
		t.Fatalf("restored state differs:\n%s\n%s", fsmBytes(t, a.f), fsmBytes(t, b.f))
	}
	wantTrust(t, "restored", b.trusts("A", "B", "C", "D"), map[string]int{"A": 800, "B": 600, "C": 800, "D": TrustMax})

	// One day of log time later: TrustRecoveryPerDay back.
	day := t0.Add(3*time.Second + 24*time.Hour)
	for _, x := range []*applier{a, b} {
		x.tick(day, "198.51.100.1")
		wantTrust(t, "a day later", x.trusts("A", "B", "C"), map[string]int{"A": 850, "B": 650, "C": 850})
	}
	// Nine days: everyone back to full, and no local clock involved.
	for _, x := range []*applier{a, b} {
		x.tick(day.Add(8*24*time.Hour), "198.51.100.2")
		wantTrust(t, "nine days later", x.trusts("A", "B", "C"), map[string]int{"A": TrustMax, "B": TrustMax, "C": TrustMax})
	}
	if !bytes.Equal(stateNoNonces(t, a.f), stateNoNonces(t, b.f)) {
		t.Fatal("the replica restored from a snapshot diverged")
	}
}

// TestSiteTrustRestoreRefusesBadValue: a snapshot holding a trust out of
// range is refused with the field named.
func TestSiteTrustRestoreRefusesBadValue(t *testing.T) {
	if _, err := restoreTrust([]trustSnapshotRecord{{ID: "x", trustRecord: trustRecord{Trust: TrustMax + 1}}}); err == nil {
		t.Fatal("trust above TrustMax restored")
	}
	if _, err := restoreTrust([]trustSnapshotRecord{{ID: "", trustRecord: trustRecord{Trust: 5}}}); err == nil {
		t.Fatal("trust without an ID restored")
	}
}

// autoSev is an automatic block of ind at at, proven by a sighting of
// each named member with this severity and confidence.
func (a *applier) autoSev(ind string, at time.Time, sev intel.Severity, conf int, names ...string) Command {
	a.t.Helper()
	var proofs [][]byte
	for _, n := range names {
		a.memberID(n)
		a.seq++
		s := intel.Sighting{Indicator: mustIndicator(a.t, ind), Detector: "ssh-bruteforce", Technique: "T1110", Severity: sev,
			Confidence: conf, Count: 5, FirstSeen: at.Add(-time.Minute), LastSeen: at}
		b, err := intel.SealJSON(a.members[n], intel.KindSighting, a.seq, at, s)
		if err != nil {
			a.t.Fatal(err)
		}
		proofs = append(proofs, b)
	}
	return autoBlock(a.t, ind, at, time.Hour, proofs...)
}

// TestMinRisk: with MinRisk set, an automatic block whose proof scores
// below it is refused (low_risk, counted) and one above is admitted; the
// score uses the signers' trust at that index, so the same proof is
// refused once its signers lost trust; two replicas of the same log agree.
func TestMinRisk(t *testing.T) {
	run := func(a *applier) []error {
		var errs []error
		at := t0
		step := func(c Command) { errs = append(errs, a.apply(c)) }
		step(a.op(intel.OperatorCommand{Op: intel.OpSetMinRisk, MinRisk: 55}, at))
		// Two fully trusted sites, no severity, confidence 80: 12.5 +
		// 0 + 9.6 + 5 (tactic neutral) + 15 (fresh) = 42.1 -> refused.
		step(a.autoSev("192.0.2.10", at, "", 80, "A", "B"))
		// Critical, confidence 100: 12.5 + 15 + 10 + 5 + 15 = 57.5 -> 58.
		step(a.autoSev("192.0.2.11", at, intel.SeverityCritical, 100, "A", "B"))
		// An operator overturns it: A and B fall to 800. The same kind of
		// proof now scores 11.1 + 12 + 10 + 5 + 15 = 53.1 -> refused.
		step(a.op(allowOp(t, "192.0.2.11", time.Hour), at.Add(time.Second)))
		step(a.autoSev("192.0.2.12", at.Add(2*time.Second), intel.SeverityCritical, 100, "A", "B"))
		// Off again: the weak proof passes.
		step(a.op(intel.OperatorCommand{Op: intel.OpSetMinRisk, MinRisk: 0}, at.Add(3*time.Second)))
		step(a.autoSev("192.0.2.13", at.Add(3*time.Second), "", 80, "A", "B"))
		return errs
	}
	a := newApplier(t)
	errs := run(a)
	wantRefused := map[int]bool{1: true, 4: true}
	for i, err := range errs {
		if wantRefused[i] {
			if RefusalReason(err) != "low_risk" || !errors.Is(err, ErrRefused) {
				t.Errorf("step %d: err %v, want a low_risk refusal", i, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("step %d: %v", i, err)
		}
	}
	if n := a.f.refused.snapshot()[[2]string{CmdPutPolicy.String(), "low_risk"}]; n != 2 {
		t.Errorf("low_risk counted %d times, want 2", n)
	}
	if got := a.f.rules.MinRisk; got != 0 {
		t.Errorf("MinRisk %d after turning it off", got)
	}

	// A second replica applying the same log reaches the same state.
	b := newApplier(t)
	run(b)
	if !bytes.Equal(stateNoNonces(t, a.f), stateNoNonces(t, b.f)) {
		t.Fatalf("two replicas of the same log diverged:\n%s\n%s", stateNoNonces(t, a.f), stateNoNonces(t, b.f))
	}

	// Bounds: the rules refuse a threshold out of range.
	r := testRules()
	r.MinRisk = 101
	if err := r.Validate(); err == nil {
		t.Fatal("min_risk 101 validated")
	}
}
