package consensus

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

func bulkOp(tb testing.TB, op intel.OperatorOp, ttl time.Duration, inds ...string) intel.OperatorCommand {
	c := intel.OperatorCommand{Op: op, TTLSeconds: int64(ttl / time.Second), Reason: "bulk"}
	for _, s := range inds {
		c.Indicators = append(c.Indicators, mustIndicator(tb, s))
	}
	return c
}

func refusedCount(f *fsm, reason string) uint64 {
	return f.refused.snapshot()[[2]string{CmdOperator.String(), reason}]
}

// TestFSMBulkAllOrNothing: a bulk command with one indicator that a
// protected range, an allow or a floor refuses applies nothing, is counted
// once with that reason, and names the indicator and its position.
func TestFSMBulkAllOrNothing(t *testing.T) {
	a := newApplier(t)
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "10.0.0.0/8"}, t0))
	a.mustApply(a.op(allowOp(t, "example.org", time.Hour), t0))
	held, _, _ := a.f.counts()
	cases := []struct {
		name     string
		inds     []string
		reason   string
		sentinel error
		names    string
	}{
		{"protected", []string{"198.51.100.1", "198.51.100.2", "10.1.2.3", "198.51.100.3"}, "protected", ErrProtected, "indicators[2] 10.1.2.3: "},
		{"allowed", []string{"198.51.100.1", "evil.example.org"}, "allowed", ErrAllowed, "indicators[1] evil.example.org: "},
		{"floor", []string{"127.0.0.1", "198.51.100.1"}, "floor", ErrRefused, "indicators[0] 127.0.0.1: "},
	}
	for _, c := range cases {
		before := refusedCount(a.f, c.reason)
		err := a.apply(a.op(bulkOp(t, intel.OpBlockBulk, time.Hour, c.inds...), t0.Add(time.Minute)))
		if !errors.Is(err, c.sentinel) || RefusalReason(err) != c.reason || !strings.Contains(err.Error(), c.names) {
			t.Errorf("%s: err %v, want %v (%s) naming %q", c.name, err, c.sentinel, c.reason, c.names)
		}
		if n, _, _ := a.f.counts(); n != held {
			t.Errorf("%s: %d policies held after a refused bulk, want %d", c.name, n, held)
		}
		if got := refusedCount(a.f, c.reason) - before; got != 1 {
			t.Errorf("%s: counted %d times, want once", c.name, got)
		}
	}
	// An admin's bulk allow may be permanent.
	if err := a.apply(a.op(bulkOp(t, intel.OpAllowBulk, 0, "198.51.100.0/24", "example.net"), t0.Add(time.Minute))); err != nil {
		t.Fatalf("an admin's bulk allow without TTL: %v", err)
	}

	// All accepted: every indicator held, as single commands would hold them.
	inds := []string{"198.51.100.1", "198.51.100.2", "evil.example.com", "2001:db8::1"}
	err := a.apply(a.op(bulkOp(t, intel.OpBlockBulk, time.Hour, inds...), t0.Add(2*time.Minute)))
	if !errors.Is(err, ErrAllowed) || !strings.Contains(err.Error(), "indicators[0] 198.51.100.1") {
		t.Fatalf("bulk block under the bulk allow: %v, want ErrAllowed naming indicators[0]", err)
	}
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: intel.PolicyID(intel.ActionAllow, mustIndicator(t, "198.51.100.0/24"))}, t0.Add(2*time.Minute)))
	a.mustApply(a.op(bulkOp(t, intel.OpBlockBulk, time.Hour, inds...), t0.Add(3*time.Minute)))
	for _, s := range inds {
		id := intel.PolicyID(intel.ActionBlock, mustIndicator(t, s))
		p, ok := a.f.activePolicy(id, t0.Add(3*time.Minute))
		if !ok || p.Reason != "bulk" || !p.ExpiresAt.Equal(t0.Add(3*time.Minute+time.Hour)) {
			t.Errorf("%s after the bulk block: %+v %v", s, p, ok)
		}
	}
	// A bulk allow drops the blocks each of its indicators overlaps.
	a.mustApply(a.op(bulkOp(t, intel.OpAllowBulk, time.Hour, "198.51.100.0/30", "2001:db8::/64"), t0.Add(4*time.Minute)))
	for i, s := range inds {
		_, ok := a.f.activePolicy(intel.PolicyID(intel.ActionBlock, mustIndicator(t, s)), t0.Add(4*time.Minute))
		if want := i == 2; ok != want {
			t.Errorf("block of %s held = %v after the bulk allow, want %v", s, ok, want)
		}
	}
}

// TestFSMBulkResponderTTL: a responder's bulk obeys the TTL cap as a
// whole.
func TestFSMBulkResponderTTL(t *testing.T) {
	a := newApplier(t)
	resp := seededKey("bulk responder")
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpAddOperator, OperatorKey: resp.Public().(ed25519.PublicKey), OperatorRole: intel.OperatorResponder, OperatorName: "r"}, t0))
	before := refusedCount(a.f, "ttl_cap")
	err := a.apply(opCmd(signOp(t, resp, testMeshID, t0, bulkOp(t, intel.OpBlockBulk, 0, "198.51.100.1", "198.51.100.2")), t0))
	if RefusalReason(err) != "ttl_cap" || refusedCount(a.f, "ttl_cap")-before != 1 {
		t.Fatalf("responder's bulk without TTL: %v (counted %d)", err, refusedCount(a.f, "ttl_cap")-before)
	}
	if err := a.apply(opCmd(signOp(t, resp, testMeshID, t0, bulkOp(t, intel.OpBlockBulk, time.Hour, "198.51.100.1", "198.51.100.2")), t0)); err != nil {
		t.Fatalf("responder's bulk with a TTL: %v", err)
	}
}

// TestPolicyChanges follows the change log through adds, merges, removals
// of every kind, expiry, a full ring and a restore.
func TestPolicyChanges(t *testing.T) {
	a := newApplier(t)
	f := a.f
	changes, next, ok := f.policyChanges(0, 0)
	if !ok || len(changes) != 0 || next != 0 {
		t.Fatalf("fresh FSM: %v %d %v, want nothing, 0, ok", changes, next, ok)
	}
	id := func(action intel.Action, s string) string { return intel.PolicyID(action, mustIndicator(t, s)) }
	type want struct {
		id      string
		removed bool
		expires time.Time
	}
	expect := func(since uint64, ws ...want) uint64 {
		t.Helper()
		got, next, ok := f.policyChanges(since, 0)
		if !ok || len(got) != len(ws) {
			t.Fatalf("changes since %d: %+v ok=%v, want %d", since, got, ok, len(ws))
		}
		for i, w := range ws {
			g := got[i]
			if g.Seq != since+uint64(i)+1 || g.Policy.ID != w.id || g.Removed != w.removed || !g.Policy.ExpiresAt.Equal(w.expires) {
				t.Fatalf("change %d since %d = %+v, want %+v (seq %d)", i, since, g, w, since+uint64(i)+1)
			}
		}
		if next != since+uint64(len(ws)) {
			t.Fatalf("next = %d, want %d", next, since+uint64(len(ws)))
		}
		return next
	}
	b1, b2 := id(intel.ActionBlock, "198.51.100.1"), id(intel.ActionBlock, "198.51.100.2")
	a.mustApply(a.op(blockOp(t, "198.51.100.1", time.Hour), t0))
	a.mustApply(a.op(blockOp(t, "198.51.100.2", 10*time.Minute), t0))
	s := expect(0, want{b1, false, t0.Add(time.Hour)}, want{b2, false, t0.Add(10 * time.Minute)})
	// A merge that extends the expiry is a change; one that changes
	// nothing is not.
	a.mustApply(a.op(blockOp(t, "198.51.100.1", 2*time.Hour), t0))
	a.mustApply(a.op(blockOp(t, "198.51.100.1", time.Minute), t0))
	s = expect(s, want{b1, false, t0.Add(2 * time.Hour)})
	// Revoke.
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: b1}, t0))
	s = expect(s, want{b1, true, t0.Add(2 * time.Hour)})
	// Expiry: the next command after 10 minutes prunes b2.
	a.mustApply(a.op(blockOp(t, "198.51.100.3", 0), t0.Add(11*time.Minute)))
	s = expect(s, want{b2, true, t0.Add(10 * time.Minute)}, want{id(intel.ActionBlock, "198.51.100.3"), false, time.Time{}})
	// An allow drops the block under it; a protected range drops another.
	a.mustApply(a.op(blockOp(t, "198.51.100.4", 0), t0.Add(11*time.Minute)))
	a.mustApply(a.op(allowOp(t, "198.51.100.3", time.Hour), t0.Add(11*time.Minute)))
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "198.51.100.4/32"}, t0.Add(11*time.Minute)))
	s = expect(s,
		want{id(intel.ActionBlock, "198.51.100.4"), false, time.Time{}},
		want{id(intel.ActionBlock, "198.51.100.3"), true, time.Time{}},
		want{id(intel.ActionAllow, "198.51.100.3"), false, t0.Add(71 * time.Minute)},
		want{id(intel.ActionBlock, "198.51.100.4"), true, time.Time{}})
	// limit pages through the changes.
	got, next, ok := f.policyChanges(0, 3)
	if !ok || len(got) != 3 || next != 3 || got[2].Seq != 3 {
		t.Fatalf("first 3 changes: %+v next %d ok %v", got, next, ok)
	}
	if _, next, ok := f.policyChanges(s+5, 0); ok || next != s {
		t.Fatalf("changes since a number not given yet: ok %v next %d, want false, %d", ok, next, s)
	}

	// A ring of 4: falling more than 4 behind needs a resync.
	f.mu.Lock()
	f.policies.changes = newChangeLog(4)
	f.policies.changes.seq, f.policies.changes.start = s, s+1
	f.mu.Unlock()
	for i := range 6 {
		a.mustApply(a.op(blockOp(t, fmt.Sprintf("198.51.100.%d", 10+i), time.Hour), t0.Add(12*time.Minute)))
	}
	if _, next, ok := f.policyChanges(s, 0); ok || next != s+6 {
		t.Fatalf("6 changes behind a ring of 4: ok %v next %d, want false, %d", ok, next, s+6)
	}
	got, next, ok = f.policyChanges(s+2, 0)
	if !ok || len(got) != 4 || next != s+6 || got[0].Policy.ID != id(intel.ActionBlock, "198.51.100.12") {
		t.Fatalf("the last 4 changes: %+v next %d ok %v", got, next, ok)
	}
	s = next

	// A restore replaces everything: every caller resynchronises, even
	// one that was up to date, and then follows from next.
	snap := snapshotBytes(t, f)
	f.mustRestore(t, snap)
	if _, next, ok := f.policyChanges(s, 0); ok || next != s+1 {
		t.Fatalf("after a restore: ok %v next %d, want false, %d", ok, next, s+1)
	}
	if _, _, ok := f.policyChanges(0, 0); ok {
		t.Fatal("after a restore: changes since 0 ok")
	}
	a.index = 1000
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: id(intel.ActionBlock, "198.51.100.10")}, t0.Add(12*time.Minute)))
	expect(s+1, want{id(intel.ActionBlock, "198.51.100.10"), true, t0.Add(72 * time.Minute)})
	// A fresh FSM that restores at start has no history to offer either.
	g := newFSM(nil)
	g.mustRestore(t, snap)
	if _, next, ok := g.policyChanges(0, 0); ok || next != 1 {
		t.Fatalf("restored fresh FSM: ok %v next %d, want false, 1", ok, next)
	}
}

// TestPolicyPage walks the cursor over held policies, some expired: every
// active policy once, in ID order, the expired ones skipped.
func TestPolicyPage(t *testing.T) {
	a := newApplier(t)
	var inds []intel.Indicator
	for i := range 250 {
		inds = append(inds, mustIndicator(t, fmt.Sprintf("198.51.%d.%d", 100+i/200, 1+i%200)))
	}
	// Short-lived blocks of every third indicator, permanent for the rest.
	for i := 0; i < len(inds); i += 50 {
		var short, long []string
		for j := i; j < i+50; j++ {
			if j%3 == 0 {
				short = append(short, inds[j].Value)
			} else {
				long = append(long, inds[j].Value)
			}
		}
		a.mustApply(a.op(bulkOp(t, intel.OpBlockBulk, time.Minute, short...), t0))
		a.mustApply(a.op(bulkOp(t, intel.OpBlockBulk, 0, long...), t0))
	}
	now := t0.Add(2 * time.Minute) // the short ones have expired, not yet pruned
	if n, _, _ := a.f.counts(); n != len(inds) {
		t.Fatalf("%d held, want %d", n, len(inds))
	}
	want := a.f.activePolicies(now)
	if len(want) != len(inds)-84 {
		t.Fatalf("%d active, want %d", len(want), len(inds)-84)
	}
	for _, limit := range []int{1, 7, 166, 1000} {
		var got []intel.Policy
		after, pages := "", 0
		for {
			page, next := a.f.policyPage(after, limit, now)
			pages++
			if len(page) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			if pages > len(want)+1 {
				t.Fatalf("limit %d: %d pages for %d policies: the cursor does not advance", limit, pages, len(want))
			}
			if next != page[len(page)-1].ID {
				t.Fatalf("limit %d: next %s is not the last ID of the page", limit, next)
			}
			after = next
		}
		if len(got) != len(want) {
			t.Fatalf("limit %d: walked %d policies in %d pages, want %d", limit, len(got), pages, len(want))
		}
		for i := range want {
			if got[i].ID != want[i].ID || !got[i].ExpiresAt.Equal(want[i].ExpiresAt) {
				t.Fatalf("limit %d: policy %d is %s, want %s", limit, i, got[i].ID, want[i].ID)
			}
		}
		if wantPages := (len(want) + limit - 1) / limit; pages != wantPages {
			t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}
	// The default page and the bound.
	if page, _ := a.f.policyPage("", 0, now); len(page) != defaultPolicyPage {
		t.Errorf("limit 0: %d policies, want %d", len(page), defaultPolicyPage)
	}
	if page, next := a.f.policyPage(want[len(want)-1].ID, 10, now); len(page) != 0 || next != "" {
		t.Errorf("after the last ID: %d policies, next %q", len(page), next)
	}
	// Policy: held and active only.
	if _, ok := a.f.activePolicy(intel.PolicyID(intel.ActionBlock, inds[0]), now); ok {
		t.Error("an expired policy was returned")
	}
	if p, ok := a.f.activePolicy(intel.PolicyID(intel.ActionBlock, inds[1]), now); !ok || p.Indicator != inds[1] {
		t.Errorf("policy of %s: %+v %v", inds[1], p, ok)
	}
}

// TestFSMSnapshotWhileApplying persists a snapshot of a few thousand
// policies while the FSM goes on applying (revokes, new blocks, a bulk
// allow that drops blocks): the snapshot holds the state when it was
// taken. Run with -race, it also checks that Persist and Apply share
// nothing they write.
func TestFSMSnapshotWhileApplying(t *testing.T) {
	a := newApplier(t)
	var inds []string
	for i := range 3000 {
		inds = append(inds, fmt.Sprintf("198.%d.%d.%d", 18+i/65536, i/256%256, i%256))
	}
	for i := 0; i < len(inds); i += 300 {
		a.mustApply(a.op(bulkOp(t, intel.OpBlockBulk, time.Hour, inds[i:i+300]...), t0))
	}
	a.mustApply(a.op(bulkOp(t, intel.OpBlockBulk, 0, "example.com", "2001:db8::1", "a.example.org"), t0))
	want := snapshotBytes(t, a.f)
	// Two snapshots of the same state: one persisted while the FSM
	// applies, one persisted after it has applied everything.
	during, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	after, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// The changes are signed before Persist starts, so that they race it
	// only with Apply.
	var cmds []Command
	for i := range 50 {
		cmds = append(cmds, a.op(intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: intel.PolicyID(intel.ActionBlock, mustIndicator(t, inds[i*7]))}, t0))
		cmds = append(cmds, a.op(blockOp(t, fmt.Sprintf("203.0.113.%d", i), time.Hour), t0))
	}
	// A domain revoked and another blocked: its value takes the freed slot.
	cmds = append(cmds, a.op(intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: intel.PolicyID(intel.ActionBlock, mustIndicator(t, "a.example.org"))}, t0))
	cmds = append(cmds, a.op(blockOp(t, "b.example.net", 0), t0))
	cmds = append(cmds, a.op(bulkOp(t, intel.OpAllowBulk, time.Hour, "198.18.4.0/24", "example.com"), t0.Add(2*time.Hour)))
	sink := &memSink{}
	done := make(chan error, 1)
	go func() { done <- during.Persist(sink) }()
	for _, c := range cmds {
		a.mustApply(c)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	during.Release()
	if !bytes.Equal(sink.Bytes(), want) {
		t.Fatalf("the snapshot persisted during the changes differs (%d bytes, want %d)", sink.Len(), len(want))
	}
	sink = &memSink{}
	if err := after.Persist(sink); err != nil {
		t.Fatal(err)
	}
	after.Release()
	if !bytes.Equal(sink.Bytes(), want) {
		t.Fatalf("the snapshot persisted after the changes differs:\n%s\nwant\n%s", sink.Bytes(), want)
	}
	// At t0+2h every one-hour block has expired: the permanent blocks of
	// 2001:db8::1 and b.example.net and the two allows are left (the
	// allow of example.com dropped its block).
	if n, _, _ := a.f.counts(); n != 4 {
		t.Fatalf("%d policies held after the changes, want 4", n)
	}
}

// TestFSMRestoreReadsEveryVersion: a version 3 snapshot round trips, a
// version 2 one (one JSON object, as earlier nodes wrote) restores the
// same state, and a damaged one is refused with an error, not a panic.
func TestFSMRestoreReadsEveryVersion(t *testing.T) {
	a := newApplier(t)
	a.mustApply(a.auto("203.0.113.7", t0, time.Hour, "A", "B"))
	a.mustApply(a.op(bulkOp(t, intel.OpBlockBulk, 0, "198.51.100.1", "2001:db8::1", "evil.example.net", "https://evil.example.net/x"), t0))
	a.mustApply(a.op(allowOp(t, "example.org", 0), t0))
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "192.168.0.0/16"}, t0))
	now := t0.Add(time.Minute)
	want := a.f.activePolicies(now)

	v3 := snapshotBytes(t, a.f)
	if !bytes.HasPrefix(v3, []byte(snapshotMagic)) {
		t.Fatalf("snapshot starts %q, want the version 3 magic", v3[:min(len(v3), 16)])
	}
	// Repeated strings are written once.
	author := "operator:" + intel.OperatorKeyID(testOperatorKey.Public().(ed25519.PublicKey))
	if n := bytes.Count(v3, []byte(author)); n != 1 {
		t.Errorf("the author of five policies written %d times, want once", n)
	}
	s, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	st := s.(*fsmSnapshot).state()
	st.Version = 2
	v2, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for name, snap := range map[string][]byte{"version 3": v3, "version 2": v2} {
		b := newFSM(nil)
		b.mustRestore(t, snap)
		if got := b.activePolicies(now); !samePolicies(got, want) {
			t.Errorf("%s: policies\n%+v\nwant\n%+v", name, got, want)
		}
		if !reflect.DeepEqual(b.protectedPrefixes(), a.f.protectedPrefixes()) || b.meshID != a.f.meshID || b.index != a.f.index {
			t.Errorf("%s: the rest of the state differs", name)
		}
		if got := snapshotBytes(t, b); !bytes.Equal(got, v3) {
			t.Errorf("%s: re-snapshot differs from the original's", name)
		}
	}
	// Damaged: truncated anywhere, or a record of an unknown type.
	for _, n := range []int{len(snapshotMagic) + 3, len(v3) / 2, len(v3) - 1} {
		if err := newFSM(nil).Restore(io.NopCloser(bytes.NewReader(v3[:n]))); err == nil {
			t.Errorf("a snapshot cut at %d of %d bytes restored", n, len(v3))
		}
	}
	bad := bytes.Clone(v3)
	bad[len(bad)-1] = 7
	if err := newFSM(nil).Restore(io.NopCloser(bytes.NewReader(bad))); err == nil || !strings.Contains(err.Error(), "record type 7") {
		t.Errorf("a record of type 7: %v", err)
	}
}
