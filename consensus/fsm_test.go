package consensus

import (
	"bytes"
	"crypto/ed25519"
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
// newApplier founds the mesh first (testMeshID, testOperatorKey as its
// admin, k = 2 within 10 minutes, blocks of at most a day).
type applier struct {
	t       *testing.T
	f       *fsm
	index   uint64
	members map[string]ed25519.PrivateKey
	seq     uint64
	token   bool // the test join token is created
}

func testRules() Rules {
	return Rules{MinNodes: 2, Window: 10 * time.Minute, BlockTTL: 24 * time.Hour, Floors: intel.DefaultFloors(), RecidiveDoublings: defaultRecidiveDoublings}
}

func testInit() *Init {
	pub := testOperatorKey.Public().(ed25519.PublicKey)
	return &Init{MeshID: testMeshID, Rules: testRules(), Operators: []Operator{
		{KeyID: intel.OperatorKeyID(pub), Key: pub, Role: intel.OperatorAdmin, Name: "test-admin"},
	}}
}

func newApplier(t *testing.T) *applier {
	a := newBareApplier(t)
	a.mustApply(Command{Type: CmdInit, At: t0.Add(-time.Hour), Init: testInit()})
	return a
}

// newBareApplier is an FSM that has applied nothing.
func newBareApplier(t *testing.T) *applier {
	return &applier{t: t, f: newFSM(nil), members: map[string]ed25519.PrivateKey{}}
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

// memberID admits the member called name (a seeded key) once and returns
// its node ID.
func (a *applier) memberID(name string) string {
	a.t.Helper()
	key, ok := a.members[name]
	if !ok {
		key = seededKey(name)
		a.members[name] = key
		a.needToken()
		a.mustApply(joinAdmit(intel.NodeID(key.Public().(ed25519.PublicKey)), t0.Add(-time.Hour)))
	}
	return intel.NodeID(key.Public().(ed25519.PublicKey))
}

// needToken creates the test join token (1000 uses, 30 days) once.
func (a *applier) needToken() {
	a.t.Helper()
	if !a.token {
		a.mustApply(createTokenCmd(a.t, a.f.clock, 1000))
		a.token = true
	}
}

// op signs cmd with the test admin for this mesh, issued at at.
func (a *applier) op(cmd intel.OperatorCommand, at time.Time) Command {
	return opCmd(signOp(a.t, testOperatorKey, testMeshID, at, cmd), at)
}

// proof is a sighting of ind by member name, sent at sent.
func (a *applier) proof(name, ind string, sent time.Time) []byte {
	a.memberID(name)
	a.seq++
	return sealSighting(a.t, a.members[name], a.seq, mustIndicator(a.t, ind), sent)
}

// auto is an automatic block of ind at at, proven by a sighting of each
// named member sent at at.
func (a *applier) auto(ind string, at time.Time, ttl time.Duration, names ...string) Command {
	var proofs [][]byte
	for _, n := range names {
		proofs = append(proofs, a.proof(n, ind, at))
	}
	return autoBlock(a.t, ind, at, ttl, proofs...)
}

func mustIndicator(t testing.TB, s string) intel.Indicator {
	t.Helper()
	ind, err := intel.ParseIndicator(s)
	if err != nil {
		t.Fatal(err)
	}
	return ind
}

func TestFSMAutomaticBlockMergesEvidence(t *testing.T) {
	a := newApplier(t)
	a.mustApply(a.auto("203.0.113.7", t0, time.Hour, "A", "B"))

	// Same block, proven later by more members with a later expiry: one
	// policy, original CreatedAt, later ExpiresAt, merged evidence.
	later := t0.Add(5 * time.Minute)
	a.mustApply(a.auto("203.0.113.7", later, time.Hour, "B", "C"))
	got := a.f.activePolicies(later)
	if len(got) != 1 {
		t.Fatalf("got %d policies, want 1: %+v", len(got), got)
	}
	g := got[0]
	if !g.CreatedAt.Equal(t0) {
		t.Errorf("CreatedAt = %s, want the original %s", g.CreatedAt, t0)
	}
	if want := later.Add(time.Hour); !g.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %s, want %s", g.ExpiresAt, want)
	}
	if len(g.Evidence) != 4 {
		t.Errorf("evidence = %+v, want the four proofs", g.Evidence)
	}
	for _, e := range g.Evidence {
		if e.Origin != a.memberID("A") && e.Origin != a.memberID("B") && e.Origin != a.memberID("C") {
			t.Errorf("evidence names %s, not a signer", e.Origin)
		}
	}

	// Evidence stays bounded.
	var proofs [][]byte
	for range 40 {
		proofs = append(proofs, a.proof("C", "203.0.113.7", later))
	}
	proofs = append(proofs, a.proof("A", "203.0.113.7", later))
	a.mustApply(autoBlock(t, "203.0.113.7", later, time.Hour, proofs...))
	if n := len(a.f.activePolicies(later)[0].Evidence); n != maxEvidence {
		t.Errorf("evidence length %d, want bound %d", n, maxEvidence)
	}
}

func TestFSMAllowBeatsBlock(t *testing.T) {
	a := newApplier(t)
	a.mustApply(a.op(blockOp(t, "198.51.100.9", time.Hour), t0))
	a.mustApply(a.auto("192.0.2.1", t0, time.Hour, "A", "B"))

	// An allow for the /24 removes the overlapping block and only it.
	a.mustApply(a.op(allowOp(t, "198.51.100.0/24", time.Hour), t0.Add(time.Second)))
	got := a.f.activePolicies(t0.Add(time.Second))
	if len(got) != 2 {
		t.Fatalf("after allow: %d policies, want 2 (allow + unrelated block): %+v", len(got), got)
	}
	for _, p := range got {
		if p.Action == intel.ActionBlock && p.Indicator.Value != "192.0.2.1" {
			t.Fatalf("overlapping block survived the allow: %+v", p)
		}
	}

	// A new block under the allow is refused, automatic or an operator's.
	if err := a.apply(a.auto("198.51.100.77", t0.Add(2*time.Second), time.Hour, "A", "B")); !errors.Is(err, ErrAllowed) {
		t.Fatalf("block under allow: err %v, want ErrAllowed", err)
	}
	if err := a.apply(a.op(blockOp(t, "198.51.100.77", time.Hour), t0.Add(2*time.Second))); !errors.Is(err, ErrAllowed) {
		t.Fatalf("operator block under allow: err %v, want ErrAllowed", err)
	}
	// Domains: allow example.com beats block of a subdomain.
	a.mustApply(a.op(allowOp(t, "example.com", time.Hour), t0.Add(3*time.Second)))
	if err := a.apply(a.op(blockOp(t, "evil.example.com", time.Hour), t0.Add(3*time.Second))); !errors.Is(err, ErrAllowed) {
		t.Fatalf("block of a subdomain under allow: err %v, want ErrAllowed", err)
	}

	// Revoking the domain allow lets the subdomain block through.
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: intel.PolicyID(intel.ActionAllow, mustIndicator(t, "example.com"))}, t0.Add(4*time.Second)))
	if err := a.apply(a.op(blockOp(t, "evil.example.com", time.Hour), t0.Add(4*time.Second))); err != nil {
		t.Fatalf("block after the allow was revoked: %v", err)
	}

	// Once the allow expires, the block goes through.
	later := t0.Add(2 * time.Hour)
	if err := a.apply(a.auto("198.51.100.77", later, time.Hour, "A", "B")); err != nil {
		t.Fatalf("block after the allow expired: %v", err)
	}
}

func TestFSMProtectedRefusal(t *testing.T) {
	a := newApplier(t)
	a.mustApply(a.op(blockOp(t, "10.1.2.3", 0), t0))
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "10.0.0.0/8"}, t0))
	if got := a.f.activePolicies(t0); len(got) != 0 {
		t.Fatalf("protecting a range left a block inside it: %+v", got)
	}
	for _, ind := range []string{"10.9.9.9", "10.0.0.0/16"} {
		if err := a.apply(a.op(blockOp(t, ind, time.Hour), t0)); !errors.Is(err, ErrProtected) {
			t.Errorf("block %s: err %v, want ErrProtected", ind, err)
		}
	}
	if err := a.apply(a.auto("10.9.9.9", t0, time.Hour, "A", "B")); !errors.Is(err, ErrProtected) {
		t.Errorf("automatic block: err %v, want ErrProtected", err)
	}
	// Outside the range, fine.
	a.mustApply(a.op(blockOp(t, "11.0.0.1", time.Hour), t0))
	if got, want := a.f.protectedPrefixes(), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}; !reflect.DeepEqual(got, want) {
		t.Errorf("protected = %v, want %v", got, want)
	}
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpUnprotect, Prefix: "10.0.0.0/8"}, t0))
	a.mustApply(a.op(blockOp(t, "10.9.9.9", time.Hour), t0))
}

func TestFSMExpiryIsDeterministic(t *testing.T) {
	// Two replicas applying the same entries hold the same state, whatever
	// their clocks; expiry follows Command.At only.
	build := func(a *applier) []Command {
		return []Command{
			a.op(blockOp(t, "203.0.113.1", time.Minute), t0),
			a.op(blockOp(t, "203.0.113.2", time.Hour), t0),
			a.op(blockOp(t, "203.0.113.3", 0), t0),
			a.op(intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: "0000000000000000"}, t0.Add(30*time.Minute)),
		}
	}
	first := newApplier(t)
	cmds := build(first)
	var states [][]byte
	for i := range 2 {
		a := first
		if i == 1 {
			a = newApplier(t)
		}
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
	a := first
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: "0000000000000001"}, t0.Add(29*time.Minute)))
	if n, _, _ := a.f.counts(); n != 2 {
		t.Fatalf("clock went back: %d policies", n)
	}
	// Queries filter by the caller's time.
	if got := a.f.activePolicies(t0.Add(2 * time.Hour)); len(got) != 1 || got[0].Indicator.Value != "203.0.113.3" {
		t.Fatalf("active at t0+2h = %+v, want only the permanent one", got)
	}
}

func snapshotBytes(t testing.TB, f *fsm) []byte {
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
	a.mustApply(a.auto("203.0.113.7", t0, time.Hour, "A", "B"))
	a.mustApply(a.op(allowOp(t, "example.org", 0), t0))
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "192.168.0.0/16"}, t0))
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "2001:db8::/32"}, t0))
	b0 := seededKey("node-b")
	bID := intel.NodeID(b0.Public().(ed25519.PublicKey))
	a.needToken()
	admitB := joinAdmit(bID, t0, "192.0.2.10/32")
	admitB.Member.Addrs = []string{"/ip4/127.0.0.1/tcp/1"}
	a.mustApply(admitB)
	a.mustApply(voterAdmit(*admitB.Member, t0.Add(time.Minute)))
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpRemoveMember, Member: a.memberID("C")}, t0))
	_, tokPub, err := intel.NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpCreateJoinToken, TokenKey: tokPub, TokenUses: 2, TokenTTLSeconds: 3600}, t0))
	opPub := seededKey("second operator").Public().(ed25519.PublicKey)
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpAddOperator, OperatorKey: opPub, OperatorRole: intel.OperatorResponder, OperatorName: "soc"}, t0))
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpSetCorroboration, MinNodes: 3, WindowSeconds: 300}, t0))

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
	if b.meshID != testMeshID || b.rules.MinNodes != 3 || b.rules.Window != 5*time.Minute || len(b.operators) != 2 || len(b.tokens) != 2 ||
		len(b.nonces) != len(a.f.nonces) || len(b.departed) != 1 {
		t.Errorf("trust state not restored: mesh %q rules %+v operators %d tokens %d nonces %d departed %d",
			b.meshID, b.rules, len(b.operators), len(b.tokens), len(b.nonces), len(b.departed))
	}
	if m, ok := b.roster[bID]; !ok || !m.Voter || !m.AdmittedAt.Equal(t0) {
		t.Errorf("roster entry of b = %+v; want a voter admitted at its first admission", m)
	}
	// The restored FSM keeps its clock: the 1-hour block is pruned by the
	// next command after it expired, as on the original.
	ab := &applier{t: t, f: b, index: 100}
	ab.mustApply(ab.op(intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: "0000000000000000"}, t0.Add(2*time.Hour)))
	if n, _, _ := b.counts(); n != 1 {
		t.Errorf("%d policies after expiry, want 1 (the permanent allow)", n)
	}

	// Snapshot is a copy: applying after taking it does not change it.
	s, _ := a.f.Snapshot()
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "172.16.0.0/12"}, t0))
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
	bad := a.auto("203.0.113.7", t0, time.Hour, "A", "B")
	forged := *bad.Policy
	forged.ID = "forged"
	bad.Policy = &forged
	cases := map[string]Command{
		"no timestamp":  {Type: CmdAdmit, Member: &Member{ID: "x"}},
		"no policy":     {Type: CmdPutPolicy, At: t0},
		"policy bad id": bad,
		"member no id":  {Type: CmdAdmit, At: t0, Member: &Member{}},
		"no init":       {Type: CmdInit, At: t0},
		"no operator":   {Type: CmdOperator, At: t0},
		"no leave":      {Type: CmdLeave, At: t0},
	}
	for name, c := range cases {
		if err := a.apply(c); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: err %v, want ErrInvalidCommand", name, err)
		}
	}
}

func TestActivePolicyLookup(t *testing.T) {
	a := newApplier(t)
	p := a.auto("203.0.113.1", t0, time.Hour, "A", "B").Policy
	a.mustApply(autoBlock(t, "203.0.113.1", t0, time.Hour, a.proof("A", "203.0.113.1", t0), a.proof("B", "203.0.113.1", t0)))
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

// voterAdmit is the leader's record that member m became a voter.
func voterAdmit(m Member, at time.Time) Command {
	m.Voter = true
	return Command{Type: CmdAdmit, At: at, Member: &m}
}
