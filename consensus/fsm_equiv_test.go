package consensus

import (
	"cmp"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// refPolicies is the policy state as the FSM kept it before its indexes:
// a map scanned in full by every check. The equivalence test holds the
// indexed FSM to its decisions, reasons, messages and state.
type refPolicies struct {
	policies  map[string]intel.Policy
	protected map[netip.Prefix]struct{}
	memberIPs map[netip.Prefix]struct{}
	members   map[string][]string // node ID -> observed
	clock     time.Time
}

func newRefPolicies() *refPolicies {
	return &refPolicies{
		policies:  map[string]intel.Policy{},
		protected: map[netip.Prefix]struct{}{},
		memberIPs: map[netip.Prefix]struct{}{},
		members:   map[string][]string{},
	}
}

func (f *refPolicies) blockVeto(ind intel.Indicator, now time.Time) *RefusalError {
	const t = CmdOperator
	if q, ok := ind.Prefix(); ok {
		for _, r := range sortedPrefixes(f.protected) {
			if q.Overlaps(r) {
				return refuse(t, "protected", ErrProtected, "block of %s overlaps protected %s", ind, r)
			}
		}
		for _, r := range sortedPrefixes(f.memberIPs) {
			if q.Overlaps(r) {
				return refuse(t, "protected", ErrProtected, "block of %s overlaps the mesh member address %s", ind, r.Addr())
			}
		}
	}
	var conflict *intel.Policy
	for _, o := range f.policies {
		if o.Action == intel.ActionAllow && o.Active(now) && (conflict == nil || o.ID < conflict.ID) && ind.Overlaps(o.Indicator) {
			conflict = &o
		}
	}
	if conflict != nil {
		return refuse(t, "allowed", ErrAllowed, "block of %s overlaps allow %s (policy %s)", ind, conflict.Indicator, conflict.ID)
	}
	return nil
}

func (f *refPolicies) deleteWhere(pred func(intel.Policy) bool) {
	for id, p := range f.policies {
		if pred(p) {
			delete(f.policies, id)
		}
	}
}

func (f *refPolicies) store(p intel.Policy, now time.Time) {
	if !p.Active(now) {
		return
	}
	if p.Action == intel.ActionAllow {
		f.deleteWhere(func(o intel.Policy) bool { return o.Action == intel.ActionBlock && o.Indicator.Overlaps(p.Indicator) })
	}
	if old, ok := f.policies[p.ID]; ok {
		merged := old
		if old.ExpiresAt.IsZero() || p.ExpiresAt.IsZero() {
			merged.ExpiresAt = time.Time{}
		} else if p.ExpiresAt.After(old.ExpiresAt) {
			merged.ExpiresAt = p.ExpiresAt
		}
		if merged.Reason == "" {
			merged.Reason = p.Reason
		}
		merged.Evidence = mergeEvidence(old.Evidence, p.Evidence)
		f.policies[p.ID] = merged
		return
	}
	p.Evidence = mergeEvidence(nil, p.Evidence)
	f.policies[p.ID] = p
}

func (f *refPolicies) blockCovering(p netip.Prefix, now time.Time) (intel.Policy, bool) {
	var found *intel.Policy
	for _, o := range f.policies {
		if o.Action != intel.ActionBlock || !o.Active(now) || (found != nil && o.ID >= found.ID) {
			continue
		}
		if q, ok := o.Indicator.Prefix(); ok && q.Overlaps(p) {
			found = &o
		}
	}
	if found == nil {
		return intel.Policy{}, false
	}
	return *found, true
}

func (f *refPolicies) rebuildMemberIPs() {
	f.memberIPs = map[netip.Prefix]struct{}{}
	for _, obs := range f.members {
		for _, p := range MemberPrefixes(obs) {
			f.memberIPs[p] = struct{}{}
		}
	}
}

// accept moves the clock and prunes, as Apply does for an accepted
// command (an admission does not move the clock).
func (f *refPolicies) accept(now time.Time, moveClock bool) {
	if moveClock {
		f.clock = now
	}
	clock := f.clock
	f.deleteWhere(func(p intel.Policy) bool { return !p.Active(clock) })
}

// operator is the reference's answer to an admin's block, allow, bulk
// block, bulk allow, revoke, protect, unprotect or member removal.
func (f *refPolicies) operator(cmd intel.OperatorCommand, now time.Time, rules Rules) *RefusalError {
	const t = CmdOperator
	author := "operator:" + intel.OperatorKeyID(testOperatorKey.Public().(ed25519.PublicKey))
	check := func(ind intel.Indicator) (intel.Policy, *RefusalError) {
		action, floor := intel.ActionBlock, rules.Floors.CheckBlock
		if cmd.Op == intel.OpAllow || cmd.Op == intel.OpAllowBulk {
			action, floor = intel.ActionAllow, rules.Floors.CheckAllow
		}
		if err := floor(ind, cmd.Wide); err != nil {
			return intel.Policy{}, refuse(t, "floor", ErrRefused, "%w", err)
		}
		if action == intel.ActionBlock {
			if rerr := f.blockVeto(ind, now); rerr != nil {
				return intel.Policy{}, rerr
			}
		}
		return intel.NewPolicy(action, ind, cmd.Reason, author, now, cmd.TTL()), nil
	}
	switch cmd.Op {
	case intel.OpBlock, intel.OpAllow:
		p, rerr := check(*cmd.Indicator)
		if rerr != nil {
			return rerr
		}
		f.accept(now, true)
		f.store(p, now)
	case intel.OpBlockBulk, intel.OpAllowBulk:
		var ps []intel.Policy
		for i, ind := range cmd.Indicators {
			p, rerr := check(ind)
			if rerr != nil {
				return &RefusalError{Command: t, Reason: rerr.Reason, Err: fmt.Errorf("indicators[%d] %s: %w", i, ind, rerr.Err)}
			}
			ps = append(ps, p)
		}
		f.accept(now, true)
		for _, p := range ps {
			f.store(p, now)
		}
	case intel.OpRevoke:
		f.accept(now, true)
		delete(f.policies, cmd.PolicyID)
	case intel.OpProtect:
		p := netip.MustParsePrefix(cmd.Prefix)
		f.accept(now, true)
		f.protected[p] = struct{}{}
		f.deleteWhere(func(o intel.Policy) bool {
			q, ok := o.Indicator.Prefix()
			return o.Action == intel.ActionBlock && ok && q.Overlaps(p)
		})
	case intel.OpUnprotect:
		f.accept(now, true)
		delete(f.protected, netip.MustParsePrefix(cmd.Prefix))
	case intel.OpRemoveMember:
		f.accept(now, true)
		delete(f.members, cmd.Member)
		f.rebuildMemberIPs()
	}
	return nil
}

// admit is the reference's answer to a member's admission observed at obs.
func (f *refPolicies) admit(id string, obs []string, now time.Time) *RefusalError {
	protect, rerr := checkObserved(CmdAdmit, obs)
	if rerr != nil {
		return rerr
	}
	for _, p := range protect {
		if b, ok := f.blockCovering(p, now); ok {
			return refuse(CmdAdmit, "collides_with_block", ErrRefused, "%s connects from %s, under the active block of %s (policy %s)",
				shortID(id), p.Addr(), b.Indicator, b.ID)
		}
	}
	f.accept(now, false)
	f.members[id] = obs
	f.rebuildMemberIPs()
	return nil
}

func (f *refPolicies) active(now time.Time) []intel.Policy {
	var out []intel.Policy
	for _, p := range f.policies {
		if p.Active(now) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b intel.Policy) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// equivPool is the small space the equivalence test draws from: address
// ranges that nest and overlap, domains with their parents and children,
// exact indicators, and a few the floors refuse.
var equivPool = []string{
	"198.51.100.0", "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5", "198.51.100.6", "198.51.100.7",
	"198.51.100.0/29", "198.51.100.0/30", "198.51.100.4/30", "198.51.100.2/31", "198.51.100.6/31", "198.51.100.5/32", "198.51.0.0/16", "198.0.0.0/8",
	"2001:db8::1", "2001:db8::2", "2001:db8::/126", "2001:db8::/64", "2001:db8::/16",
	"example.org", "a.example.org", "b.a.example.org", "c.example.org", "other.net", "org",
	"https://a.example.org/x", "https://c.example.org/",
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	"127.0.0.1",
}

var equivProtectPool = []string{"198.51.100.0/31", "198.51.100.4/30", "198.51.100.3/32", "198.51.100.6/31", "2001:db8::/126", "2001:db8::2/128", "203.0.113.0/24"}

var equivObservedPool = []string{"198.51.100.0/32", "198.51.100.1/32", "198.51.100.2/32", "198.51.100.3/32", "198.51.100.5/32", "198.51.100.6/32",
	"2001:db8::1/128", "2001:db8::2/128", "203.0.113.9/32", "127.0.0.1/32"}

// TestFSMEquivalentToReference applies a seeded random sequence of
// operator commands and admissions to the FSM and to refPolicies, and
// requires the same answer to each (accepted, or refused with the same
// reason and message), the same policies held after each, and the same
// active set at the end and after a snapshot round trip.
func TestFSMEquivalentToReference(t *testing.T) {
	reasons := map[string]int{}
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { equivRun(t, seed, 1500, reasons) })
	}
	for _, reason := range []string{"accepted", "protected", "allowed", "floor", "collides_with_block"} {
		if reasons[reason] == 0 {
			t.Errorf("no step was %s: the sequence does not test it (%v)", reason, reasons)
		}
	}
	t.Logf("answers: %v", reasons)
}

func equivRun(t *testing.T, seed uint64, steps int, reasons map[string]int) {
	r := rand.New(rand.NewPCG(seed, 99))
	a := newApplier(t)
	ref := newRefPolicies()
	ref.clock = a.f.clock
	a.needToken()
	ref.clock = a.f.clock
	rules := testRules()
	var inds []intel.Indicator
	for _, s := range equivPool {
		inds = append(inds, mustIndicator(t, s))
	}
	ttls := []time.Duration{0, time.Minute, 10 * time.Minute, time.Hour}
	now := a.f.clock
	var memberIDs []string
	for step := range steps {
		now = now.Add(time.Duration(r.IntN(4)) * time.Minute)
		var (
			cmd  Command
			want *RefusalError
			desc string
		)
		switch k := r.IntN(20); {
		case k < 11: // block or allow
			ind := inds[r.IntN(len(inds))]
			oc := blockOp(t, ind.String(), ttls[r.IntN(len(ttls))])
			if ind.Type == intel.URL || ind.Type == intel.SHA256 {
				oc.Indicator = &ind
			}
			if r.IntN(3) == 0 {
				// Allows last at most an hour, or they would soon cover
				// the whole space.
				oc.Op, oc.TTLSeconds = intel.OpAllow, int64(ttls[1+r.IntN(len(ttls)-1)]/time.Second)
			}
			oc.Wide = r.IntN(2) == 0
			oc.Reason = []string{"", "test", "other"}[r.IntN(3)]
			desc = fmt.Sprintf("%s %s wide=%v", oc.Op, ind, oc.Wide)
			cmd, want = a.op(oc, now), ref.operator(oc, now, rules)
		case k < 13: // bulk
			n := 1 + r.IntN(4)
			perm := r.Perm(len(inds))[:n]
			oc := intel.OperatorCommand{Op: intel.OpBlockBulk, TTLSeconds: int64(ttls[r.IntN(len(ttls))] / time.Second), Reason: "bulk", Wide: r.IntN(2) == 0}
			if r.IntN(3) == 0 {
				oc.Op, oc.TTLSeconds = intel.OpAllowBulk, int64(ttls[1+r.IntN(len(ttls)-1)]/time.Second)
			}
			for _, i := range perm {
				oc.Indicators = append(oc.Indicators, inds[i])
			}
			desc = fmt.Sprintf("%s %v", oc.Op, oc.Indicators)
			cmd, want = a.op(oc, now), ref.operator(oc, now, rules)
		case k < 15: // revoke
			action := []intel.Action{intel.ActionBlock, intel.ActionAllow}[r.IntN(2)]
			oc := intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: intel.PolicyID(action, inds[r.IntN(len(inds))])}
			desc = "revoke " + oc.PolicyID
			cmd, want = a.op(oc, now), ref.operator(oc, now, rules)
		case k < 17: // protect or unprotect
			oc := intel.OperatorCommand{Op: intel.OpProtect, Prefix: equivProtectPool[r.IntN(len(equivProtectPool))]}
			if r.IntN(2) == 0 {
				oc.Op = intel.OpUnprotect
			}
			desc = fmt.Sprintf("%s %s", oc.Op, oc.Prefix)
			cmd, want = a.op(oc, now), ref.operator(oc, now, rules)
		case k < 18 || len(memberIDs) == 0: // admit a member
			key := seededKey(fmt.Sprintf("equiv-%d-%d", seed, step))
			id := intel.NodeID(key.Public().(ed25519.PublicKey))
			obs := []string{equivObservedPool[r.IntN(len(equivObservedPool))]}
			desc = fmt.Sprintf("admit at %v", obs)
			cmd, want = joinAdmit(id, now, obs...), ref.admit(id, obs, now)
			if want == nil {
				memberIDs = append(memberIDs, id)
			}
		default: // remove a member
			i := r.IntN(len(memberIDs))
			oc := intel.OperatorCommand{Op: intel.OpRemoveMember, Member: memberIDs[i]}
			memberIDs = slices.Delete(memberIDs, i, i+1)
			desc = "remove member"
			cmd, want = a.op(oc, now), ref.operator(oc, now, rules)
		}
		err := a.apply(cmd)
		switch {
		case want == nil && err != nil:
			t.Fatalf("step %d (%s): refused %v, the reference accepts", step, desc, err)
		case want != nil && err == nil:
			t.Fatalf("step %d (%s): accepted, the reference refuses: %v", step, desc, want)
		case want != nil && err.Error() != want.Error():
			t.Fatalf("step %d (%s):\n got  %v\n want %v", step, desc, err, want)
		case want != nil && RefusalReason(err) != want.Reason:
			t.Fatalf("step %d (%s): reason %q, want %q", step, desc, RefusalReason(err), want.Reason)
		}
		if n, _, _ := a.f.counts(); n != len(ref.policies) {
			t.Fatalf("step %d (%s): %d policies held, the reference holds %d", step, desc, n, len(ref.policies))
		}
		if want != nil {
			reasons[want.Reason]++
		} else {
			reasons["accepted"]++
		}
		if step%50 == 0 {
			if got, want := a.f.activePolicies(now), ref.active(now); !samePolicies(got, want) {
				t.Fatalf("step %d: active policies differ:\n got  %+v\n want %+v", step, got, want)
			}
		}
	}
	if got, want := a.f.activePolicies(now), ref.active(now); !samePolicies(got, want) || len(want) == 0 {
		t.Fatalf("end: active policies differ (or none):\n got  %+v\n want %+v", got, want)
	}
	b := newFSM(nil)
	b.mustRestore(t, snapshotBytes(t, a.f))
	if got, want := b.activePolicies(now), ref.active(now); !samePolicies(got, want) {
		t.Fatalf("after a snapshot round trip: active policies differ:\n got  %+v\n want %+v", got, want)
	}
}

func samePolicies(a, b []intel.Policy) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

// TestFSMApplyBatchMatchesApply applies the same entries one by one to
// one FSM and in batches of random sizes to another: the same answers,
// the same state, one notification per batch that changed something.
func TestFSMApplyBatchMatchesApply(t *testing.T) {
	a := newApplier(t)
	r := rand.New(rand.NewPCG(7, 7))
	var entries []*raft.Log
	add := func(c Command) {
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, &raft.Log{Index: uint64(len(entries) + 1), Type: raft.LogCommand, Data: b})
	}
	add(Command{Type: CmdInit, At: t0.Add(-time.Hour), Init: testInit()})
	now := t0
	for i := range 300 {
		now = now.Add(time.Duration(r.IntN(3)) * time.Minute)
		ind := equivPool[r.IntN(len(equivPool)-1)]
		switch r.IntN(6) {
		case 0:
			add(a.op(allowOp(t, ind, time.Duration(r.IntN(3))*time.Minute), now))
		case 1:
			add(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: equivProtectPool[r.IntN(len(equivProtectPool))]}, now))
		case 2:
			entries = append(entries, &raft.Log{Index: uint64(len(entries) + 1), Type: raft.LogNoop})
		case 3:
			add(a.op(intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: intel.PolicyID(intel.ActionBlock, mustIndicator(t, ind))}, now))
		default:
			oc := blockOp(t, ind, time.Duration(r.IntN(3))*time.Minute)
			oc.Wide = i%2 == 0
			add(a.op(oc, now))
		}
	}
	one := newFSM(nil)
	var want []any
	for _, l := range entries {
		want = append(want, one.Apply(l))
	}
	notified := 0
	batched := newFSM(func() { notified++ })
	var got []any
	batches := 0
	for i := 0; i < len(entries); {
		n := min(1+r.IntN(40), len(entries)-i)
		got = append(got, batched.ApplyBatch(entries[i:i+n])...)
		i += n
		batches++
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d", len(got), len(want))
	}
	refused := 0
	for i := range want {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Fatalf("entry %d: batched %v, one by one %v", i, got[i], want[i])
		}
		if want[i] != nil {
			refused++
		}
	}
	if refused == 0 || refused == len(want) {
		t.Fatalf("%d of %d refused: the sequence tests nothing", refused, len(want))
	}
	if sa, sb := fsmBytes(t, one), fsmBytes(t, batched); string(sa) != string(sb) {
		t.Fatalf("states differ:\n%s\n%s", sa, sb)
	}
	if one.appliedIndex() != batched.appliedIndex() {
		t.Fatalf("applied index %d, want %d", batched.appliedIndex(), one.appliedIndex())
	}
	if notified == 0 || notified > batches {
		t.Fatalf("%d notifications for %d batches", notified, batches)
	}
}
