package consensus

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// applier feeds commands to an FSM as raft would, with increasing indexes.
type applier struct {
	t     *testing.T
	f     *fsm
	index uint64
}

func newApplier(t *testing.T) *applier {
	return &applier{t: t, f: newFSM(nil)}
}

func (a *applier) apply(c Command) error {
	a.t.Helper()
	b, err := c.Encode()
	if err != nil {
		a.t.Fatalf("encode: %v", err)
	}
	a.index++
	res := a.f.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: b})
	if res == nil {
		return nil
	}
	err, ok := res.(error)
	if !ok {
		a.t.Fatalf("Apply returned %T, want error or nil", res)
	}
	return err
}

func (a *applier) mustApply(c Command) {
	a.t.Helper()
	if err := a.apply(c); err != nil {
		a.t.Fatalf("apply %s: %v", c.Type, err)
	}
}

func mustIndicator(t testing.TB, s string) intel.Indicator {
	t.Helper()
	ind, err := intel.ParseIndicator(s)
	if err != nil {
		t.Fatal(err)
	}
	return ind
}

func policy(t testing.TB, action intel.Action, ind string, created time.Time, ttl time.Duration) *intel.Policy {
	p := intel.NewPolicy(action, mustIndicator(t, ind), "test", "operator:test", created, ttl)
	return &p
}

func put(p *intel.Policy, at time.Time) Command {
	return Command{Type: CmdPutPolicy, At: at, Policy: p}
}

func TestFSMPutPolicyIsIdempotent(t *testing.T) {
	a := newApplier(t)
	p1 := policy(t, intel.ActionBlock, "203.0.113.7", t0, time.Hour)
	p1.Evidence = []intel.Evidence{{Origin: "A", Seq: 1, Seen: t0}}
	a.mustApply(put(p1, t0))

	// Same policy, proposed later by another node with more evidence and a
	// later expiry: one policy, original CreatedAt, later ExpiresAt, merged
	// evidence without duplicates.
	p2 := policy(t, intel.ActionBlock, "203.0.113.7", t0.Add(10*time.Minute), time.Hour)
	p2.Evidence = []intel.Evidence{{Origin: "A", Seq: 1, Seen: t0}, {Origin: "B", Seq: 7, Seen: t0.Add(time.Minute)}}
	a.mustApply(put(p2, t0.Add(10*time.Minute)))
	// And an older copy with an earlier expiry changes nothing.
	a.mustApply(put(p1, t0.Add(11*time.Minute)))

	got := a.f.activePolicies(t0.Add(11 * time.Minute))
	if len(got) != 1 {
		t.Fatalf("got %d policies, want 1: %+v", len(got), got)
	}
	g := got[0]
	if !g.CreatedAt.Equal(t0) {
		t.Errorf("CreatedAt = %s, want the original %s", g.CreatedAt, t0)
	}
	if want := t0.Add(70 * time.Minute); !g.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %s, want %s", g.ExpiresAt, want)
	}
	if len(g.Evidence) != 2 || g.Evidence[0].Origin != "A" || g.Evidence[1].Origin != "B" {
		t.Errorf("evidence = %+v, want A then B", g.Evidence)
	}

	// Evidence stays bounded.
	p3 := policy(t, intel.ActionBlock, "203.0.113.7", t0, time.Hour)
	for i := range 100 {
		p3.Evidence = append(p3.Evidence, intel.Evidence{Origin: "C", Seq: uint64(i + 1), Seen: t0.Add(time.Duration(i) * time.Second)})
	}
	a.mustApply(put(p3, t0.Add(12*time.Minute)))
	if n := len(a.f.activePolicies(t0.Add(12 * time.Minute))[0].Evidence); n != maxEvidence {
		t.Errorf("evidence length %d, want bound %d", n, maxEvidence)
	}
}

func TestFSMAllowBeatsBlock(t *testing.T) {
	a := newApplier(t)
	a.mustApply(put(policy(t, intel.ActionBlock, "198.51.100.9", t0, time.Hour), t0))
	a.mustApply(put(policy(t, intel.ActionBlock, "192.0.2.1", t0, time.Hour), t0))

	// An allow for the /24 removes the overlapping block and only it.
	a.mustApply(put(policy(t, intel.ActionAllow, "198.51.100.0/24", t0, time.Hour), t0.Add(time.Second)))
	got := a.f.activePolicies(t0.Add(time.Second))
	if len(got) != 2 {
		t.Fatalf("after allow: %d policies, want 2 (allow + unrelated block): %+v", len(got), got)
	}
	for _, p := range got {
		if p.Action == intel.ActionBlock && p.Indicator.Value != "192.0.2.1" {
			t.Fatalf("overlapping block survived the allow: %+v", p)
		}
	}

	// A new block under the allow is refused.
	err := a.apply(put(policy(t, intel.ActionBlock, "198.51.100.77", t0, time.Hour), t0.Add(2*time.Second)))
	if !errors.Is(err, ErrAllowed) {
		t.Fatalf("block under allow: err %v, want ErrAllowed", err)
	}
	// Domains: allow example.com beats block of a subdomain.
	a.mustApply(put(policy(t, intel.ActionAllow, "example.com", t0, time.Hour), t0.Add(3*time.Second)))
	if err := a.apply(put(policy(t, intel.ActionBlock, "evil.example.com", t0, time.Hour), t0.Add(3*time.Second))); !errors.Is(err, ErrAllowed) {
		t.Fatalf("block of a subdomain under allow: err %v, want ErrAllowed", err)
	}

	// Revoking the domain allow lets the subdomain block through.
	a.mustApply(Command{Type: CmdRevokePolicy, At: t0.Add(4 * time.Second), PolicyID: intel.PolicyID(intel.ActionAllow, mustIndicator(t, "example.com"))})
	if err := a.apply(put(policy(t, intel.ActionBlock, "evil.example.com", t0, time.Hour), t0.Add(4*time.Second))); err != nil {
		t.Fatalf("block after the allow was revoked: %v", err)
	}

	// Once the allow expires, the block goes through.
	later := t0.Add(2 * time.Hour)
	if err := a.apply(put(policy(t, intel.ActionBlock, "198.51.100.77", later, time.Hour), later)); err != nil {
		t.Fatalf("block after the allow expired: %v", err)
	}
}

func TestFSMProtectedRefusal(t *testing.T) {
	a := newApplier(t)
	a.mustApply(put(policy(t, intel.ActionBlock, "10.1.2.3", t0, 0), t0))
	a.mustApply(Command{Type: CmdProtect, At: t0, Prefix: "10.0.0.0/8"})
	if got := a.f.activePolicies(t0); len(got) != 0 {
		t.Fatalf("protecting a range left a block inside it: %+v", got)
	}
	for _, ind := range []string{"10.9.9.9", "10.0.0.0/16", "0.0.0.0/0"} {
		err := a.apply(put(policy(t, intel.ActionBlock, ind, t0, time.Hour), t0))
		if !errors.Is(err, ErrProtected) {
			t.Errorf("block %s: err %v, want ErrProtected", ind, err)
		}
	}
	// Allow and observe policies are not blocks and are accepted.
	a.mustApply(put(policy(t, intel.ActionObserve, "10.9.9.9", t0, time.Hour), t0))
	// Outside the range, fine.
	a.mustApply(put(policy(t, intel.ActionBlock, "11.0.0.1", t0, time.Hour), t0))
	if got, want := a.f.protectedPrefixes(), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}; !reflect.DeepEqual(got, want) {
		t.Errorf("protected = %v, want %v", got, want)
	}
	a.mustApply(Command{Type: CmdUnprotect, At: t0, Prefix: "10.0.0.0/8"})
	a.mustApply(put(policy(t, intel.ActionBlock, "10.9.9.9", t0, time.Hour), t0))
	if err := a.apply(Command{Type: CmdProtect, At: t0, Prefix: "not-a-prefix"}); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("bad prefix: err %v, want ErrInvalidCommand", err)
	}
}

func TestFSMExpiryIsDeterministic(t *testing.T) {
	// Two replicas applying the same entries hold the same state, whatever
	// their clocks; expiry follows Command.At only.
	cmds := []Command{
		put(policy(t, intel.ActionBlock, "203.0.113.1", t0, time.Minute), t0),
		put(policy(t, intel.ActionBlock, "203.0.113.2", t0, time.Hour), t0),
		put(policy(t, intel.ActionBlock, "203.0.113.3", t0, 0), t0),
		{Type: CmdRevokePolicy, At: t0.Add(30 * time.Minute), PolicyID: "does-not-exist"},
	}
	var states [][]byte
	for range 2 {
		a := newApplier(t)
		for _, c := range cmds {
			a.mustApply(c)
		}
		if n, _, _ := a.f.counts(); n != 2 {
			t.Fatalf("after At = t0+30m: %d policies held, want 2 (the 1-minute one pruned)", n)
		}
		states = append(states, snapshotBytes(t, a.f))
	}
	if !bytes.Equal(states[0], states[1]) {
		t.Fatalf("replicas diverged:\n%s\n%s", states[0], states[1])
	}
	// A command with an earlier At does not move the FSM's clock back.
	a := newApplier(t)
	for _, c := range cmds {
		a.mustApply(c)
	}
	a.mustApply(Command{Type: CmdRevokePolicy, At: t0, PolicyID: "x"})
	if n, _, _ := a.f.counts(); n != 2 {
		t.Fatalf("clock went back: %d policies", n)
	}
	// Queries filter by the caller's time.
	if got := a.f.activePolicies(t0.Add(2 * time.Hour)); len(got) != 1 || got[0].Indicator.Value != "203.0.113.3" {
		t.Fatalf("active at t0+2h = %+v, want only the permanent one", got)
	}
}

func snapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	sink := &memSink{}
	if err := s.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed {
		t.Fatal("Persist did not close the sink")
	}
	return sink.Bytes()
}

type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func TestFSMSnapshotRestoreRoundTrip(t *testing.T) {
	a := newApplier(t)
	p := policy(t, intel.ActionBlock, "203.0.113.7", t0, time.Hour)
	p.Evidence = []intel.Evidence{{Origin: "A", Seq: 3, Detector: "ssh", Seen: t0}}
	a.mustApply(put(p, t0))
	a.mustApply(put(policy(t, intel.ActionAllow, "example.org", t0, 0), t0))
	a.mustApply(Command{Type: CmdProtect, At: t0, Prefix: "192.168.0.0/16"})
	a.mustApply(Command{Type: CmdProtect, At: t0, Prefix: "2001:db8::/32"})
	a.mustApply(Command{Type: CmdAdmit, At: t0, Member: &Member{ID: "node-b", Site: "b", Voter: true, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}})
	a.mustApply(Command{Type: CmdAdmit, At: t0.Add(time.Minute), Member: &Member{ID: "node-a", Site: "a"}})
	a.mustApply(Command{Type: CmdAdmit, At: t0.Add(time.Hour), Member: &Member{ID: "node-a", Site: "a2"}})
	a.mustApply(Command{Type: CmdAdmit, At: t0, Member: &Member{ID: "node-c"}})
	a.mustApply(Command{Type: CmdRemoveMember, At: t0, Member: &Member{ID: "node-c"}})

	snap := snapshotBytes(t, a.f)
	changed := 0
	b := newFSM(func() { changed++ })
	b.mustRestore(t, snap)
	if changed != 1 {
		t.Errorf("restore notified %d times, want 1", changed)
	}
	now := t0.Add(time.Minute)
	if !reflect.DeepEqual(a.f.activePolicies(now), b.activePolicies(now)) {
		t.Errorf("policies differ:\n%+v\n%+v", a.f.activePolicies(now), b.activePolicies(now))
	}
	if !reflect.DeepEqual(a.f.protectedPrefixes(), b.protectedPrefixes()) {
		t.Errorf("protected differ")
	}
	if !reflect.DeepEqual(a.f.members(), b.members()) {
		t.Errorf("roster differs:\n%+v\n%+v", a.f.members(), b.members())
	}
	if !bytes.Equal(snap, snapshotBytes(t, b)) {
		t.Errorf("re-snapshot differs")
	}
	roster := b.members()
	if len(roster) != 2 || roster[0].ID != "node-a" || roster[0].Site != "a2" || !roster[0].AdmittedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("roster = %+v; want node-a (site a2, admitted at its first admission) and node-b", roster)
	}
	// The restored FSM keeps its clock: the 1-hour block is pruned by the
	// next command after it expired, as on the original.
	ab := &applier{t: t, f: b, index: 100}
	ab.mustApply(Command{Type: CmdRevokePolicy, At: t0.Add(2 * time.Hour), PolicyID: "x"})
	if n, _, _ := b.counts(); n != 1 {
		t.Errorf("%d policies after expiry, want 1 (the permanent allow)", n)
	}

	// Snapshot is a copy: applying after taking it does not change it.
	s, _ := a.f.Snapshot()
	a.mustApply(Command{Type: CmdProtect, At: t0, Prefix: "172.16.0.0/12"})
	sink := &memSink{}
	if err := s.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sink.String(), "172.16.0.0/12") {
		t.Error("snapshot saw a later apply")
	}
}

func (f *fsm) mustRestore(t *testing.T, b []byte) {
	t.Helper()
	if err := f.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
}

func TestFSMUnknownCommandPanics(t *testing.T) {
	f := newFSM(nil)
	defer func() {
		if recover() == nil {
			t.Fatal("unknown command type did not panic")
		}
	}()
	f.Apply(&raft.Log{Index: 9, Type: raft.LogCommand, Data: []byte{42, '{', '}'}})
}

func TestFSMIgnorableUnknownCommand(t *testing.T) {
	f := newFSM(nil)
	if res := f.Apply(&raft.Log{Index: 9, Type: raft.LogCommand, Data: []byte{byte(IgnoreUnknownFlag | 42), '{', '}'}}); res != nil {
		t.Fatalf("ignorable command returned %v", res)
	}
}

func TestFSMRejectsInvalidCommands(t *testing.T) {
	a := newApplier(t)
	bad := policy(t, intel.ActionBlock, "203.0.113.7", t0, time.Hour)
	bad.ID = "forged"
	cases := map[string]Command{
		"no timestamp":   {Type: CmdRevokePolicy, PolicyID: "x"},
		"no policy":      {Type: CmdPutPolicy, At: t0},
		"policy bad id":  put(bad, t0),
		"member no id":   {Type: CmdAdmit, At: t0, Member: &Member{}},
		"revoke no id":   {Type: CmdRevokePolicy, At: t0},
		"remove no memb": {Type: CmdRemoveMember, At: t0},
	}
	for name, c := range cases {
		if err := a.apply(c); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: err %v, want ErrInvalidCommand", name, err)
		}
	}
}

func TestActivePolicyLookup(t *testing.T) {
	a := newApplier(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := policy(t, intel.ActionBlock, "203.0.113.1", t0, time.Hour)
	a.mustApply(put(p, t0))
	if got, ok := a.f.activePolicy(p.ID, t0.Add(time.Minute)); !ok || got.ID != p.ID {
		t.Fatalf("active policy not found: %v %v", got, ok)
	}
	if _, ok := a.f.activePolicy(p.ID, t0.Add(2*time.Hour)); ok {
		t.Fatal("expired policy returned")
	}
	if _, ok := a.f.activePolicy("nope", t0); ok {
		t.Fatal("unknown policy returned")
	}
}
