package consensus

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// --- helpers -----------------------------------------------------------------

func pfxs(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func zoneOp(z intel.Zone) intel.OperatorCommand {
	return intel.OperatorCommand{Op: intel.OpSetZone, Zone: &z}
}

func flowOp(f intel.Flow) intel.OperatorCommand {
	return intel.OperatorCommand{Op: intel.OpSetFlow, Flow: &f}
}

func quarantineOp(host string, ttl time.Duration) intel.OperatorCommand {
	return intel.OperatorCommand{Op: intel.OpQuarantine, Host: netip.MustParseAddr(host), TTLSeconds: int64(ttl / time.Second), Reason: "lateral movement"}
}

func releaseOp(host string) intel.OperatorCommand {
	return intel.OperatorCommand{Op: intel.OpRelease, Host: netip.MustParseAddr(host)}
}

func officeZone() intel.Zone {
	return intel.Zone{Name: "office", CIDRs: pfxs("10.1.0.0/16"),
		AutoQuarantine: &intel.AutoQuarantine{Rules: []string{"ssh-internal-bruteforce"}, MaxTTLSeconds: 7200}}
}

func serversZone() intel.Zone {
	return intel.Zone{Name: "servers", CIDRs: pfxs("10.2.0.0/16"), DefaultDeny: true}
}

func denyFlow(name, from, to string, prio int) intel.Flow {
	return intel.Flow{Name: name, From: from, To: to, Proto: intel.ProtoTCP, Ports: []intel.PortRange{{From: 445, To: 445}}, Action: intel.FlowDeny, Priority: prio}
}

// sealRuleSighting seals a sighting of host by rule, signed by key, sent
// at sent.
func sealRuleSighting(tb testing.TB, key ed25519.PrivateKey, seq uint64, host, rule string, sent time.Time, partial bool) []byte {
	tb.Helper()
	s := intel.Sighting{Indicator: intel.IndicatorFromAddr(netip.MustParseAddr(host)), Detector: rule, Confidence: 80, Count: 5,
		FirstSeen: sent.Add(-time.Minute), LastSeen: sent, Partial: partial}
	b, err := intel.SealJSON(key, intel.KindSighting, seq, sent, s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// ruleProof is a sighting of host by rule from member name, sent at sent.
func (a *applier) ruleProof(name, host, rule string, sent time.Time) []byte {
	a.memberID(name)
	a.seq++
	return sealRuleSighting(a.t, a.members[name], a.seq, host, rule, sent, false)
}

func autoQuarantine(host string, at time.Time, ttl time.Duration, proofs ...[]byte) Command {
	return Command{Type: CmdQuarantine, At: at, Quarantine: &QuarantineRequest{Host: netip.MustParseAddr(host), TTLSeconds: int64(ttl / time.Second)}, Proofs: proofs}
}

func (a *applier) seg(now time.Time) intel.Segmentation {
	a.f.mu.RLock()
	defer a.f.mu.RUnlock()
	return a.f.seg.view(now)
}

func wantRefusedMsg(t *testing.T, a *applier, c Command, reason, msg string) {
	t.Helper()
	rerr := wantRefused(t, a, c, reason)
	if !strings.Contains(rerr.Error(), msg) {
		t.Fatalf("refusal %s: %v, want it to name %q", reason, rerr, msg)
	}
}

// --- FSM ---------------------------------------------------------------------

// Zones and flows: set, replaced, removed; every refusal named, counted
// and changing nothing.
func TestFSMSegmentZonesFlows(t *testing.T) {
	a := newApplier(t)
	at := t0
	member := a.memberID("m1")
	a.needToken()
	a.mustApply(joinAdmit(intel.NodeID(seededKey("m2").Public().(ed25519.PublicKey)), at, "10.2.0.9/32"))
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "10.3.0.0/24"}, at))
	_ = member

	a.mustApply(a.op(zoneOp(officeZone()), at))
	// A default-deny zone holding a member's address, a protected range,
	// or loopback cuts the mesh's own traffic.
	wantRefusedMsg(t, a, a.op(zoneOp(serversZone()), at), "cuts_member", "10.2.0.9")
	wantRefusedMsg(t, a, a.op(zoneOp(intel.Zone{Name: "lab", CIDRs: pfxs("10.3.0.128/25"), DefaultDeny: true}), at), "cuts_protected", "10.3.0.0/24")
	wantRefusedMsg(t, a, a.op(zoneOp(intel.Zone{Name: "lo", CIDRs: pfxs("127.0.0.0/8"), DefaultDeny: true}), at), "cuts_local", "127.0.0.0/8")
	wantRefusedMsg(t, a, a.op(zoneOp(intel.Zone{Name: "ll", CIDRs: pfxs("fe80::/64"), DefaultDeny: true}), at), "cuts_local", "fe80::/10")
	// Without default-deny the same zone is only a name for addresses.
	servers := serversZone()
	servers.DefaultDeny = false
	a.mustApply(a.op(zoneOp(servers), at))
	a.mustApply(a.op(zoneOp(intel.Zone{Name: "db", CIDRs: pfxs("10.4.0.0/16"), DefaultDeny: true}), at))

	// Flows: unknown zones, the mesh cut through a named zone (not
	// through the wildcard side), contradictions.
	wantRefusedMsg(t, a, a.op(flowOp(denyFlow("x", "office", "nowhere", 10)), at), "unknown_zone", "nowhere")
	wantRefusedMsg(t, a, a.op(flowOp(denyFlow("x", "office", "servers", 10)), at), "cuts_member", "10.2.0.9")
	a.mustApply(a.op(flowOp(denyFlow("no-smb", intel.AnyZone, "office", 20)), at))
	observe := denyFlow("watch-servers", "office", "servers", 10)
	observe.Mode = intel.FlowObserve
	a.mustApply(a.op(flowOp(observe), at)) // observe drops nothing
	allow := denyFlow("smb-ok", intel.AnyZone, "office", 20)
	allow.Action = intel.FlowAllow
	allow.Ports = []intel.PortRange{{From: 445, To: 444 + 1}}
	wantRefusedMsg(t, a, a.op(flowOp(allow), at), "contradicts", "no-smb")
	allow.Priority = 21 // no longer a contradiction
	a.mustApply(a.op(flowOp(allow), at))
	// no-smb is now shadowed by smb-ok: accepted, and reported.
	if w := a.seg(at).FlowWarnings(); len(w) != 1 || w[0] != (intel.FlowWarning{Flow: "no-smb", ShadowedBy: "smb-ok"}) {
		t.Fatalf("flow warnings %+v", w)
	}

	// A zone change that would put a member under a deny flow.
	office := officeZone()
	office.CIDRs = pfxs("10.1.0.0/16", "10.2.0.9/32")
	wantRefusedMsg(t, a, a.op(zoneOp(office), at), "cuts_member", "deny flow no-smb")

	// Removal: in use, unknown.
	wantRefusedMsg(t, a, a.op(intel.OperatorCommand{Op: intel.OpRemoveZone, ZoneName: "office"}, at), "zone_in_use", "flow no-smb")
	wantRefused(t, a, a.op(intel.OperatorCommand{Op: intel.OpRemoveZone, ZoneName: "nowhere"}, at), "unknown_zone")
	wantRefused(t, a, a.op(intel.OperatorCommand{Op: intel.OpRemoveFlow, FlowName: "nothing"}, at), "unknown_flow")
	for _, f := range []string{"no-smb", "smb-ok", "watch-servers"} {
		a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpRemoveFlow, FlowName: f}, at))
	}
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpRemoveZone, ZoneName: "office"}, at))

	s := a.seg(at)
	if len(s.Zones) != 2 || s.Zones[0].Name != "db" || s.Zones[1].Name != "servers" || len(s.Flows) != 0 {
		t.Fatalf("segmentation %+v", s)
	}
}

func TestFSMSegmentBounds(t *testing.T) {
	a := newApplier(t)
	for i := range intel.MaxZones {
		a.mustApply(a.op(zoneOp(intel.Zone{Name: "z" + itoa(i), CIDRs: pfxs("10.0.0.0/8")}), t0))
	}
	wantRefused(t, a, a.op(zoneOp(intel.Zone{Name: "one-more", CIDRs: pfxs("10.0.0.0/8")}), t0), "too_many_zones")
	a.mustApply(a.op(zoneOp(intel.Zone{Name: "z0", CIDRs: pfxs("10.9.0.0/16")}), t0)) // a replacement
	for i := range intel.MaxFlows {
		a.mustApply(a.op(flowOp(intel.Flow{Name: "f" + itoa(i), From: "z0", To: "z1", Proto: intel.ProtoTCP,
			Ports: []intel.PortRange{{From: uint16(i + 1), To: uint16(i + 1)}}, Action: intel.FlowAllow}), t0))
	}
	wantRefused(t, a, a.op(flowOp(intel.Flow{Name: "one-more", From: "z0", To: "z1", Proto: intel.ProtoAny, Action: intel.FlowAllow}), t0), "too_many_flows")

	host := func(i int) string { return netip.AddrFrom4([4]byte{10, 7, byte(i >> 8), byte(i)}).String() }
	for i := range intel.MaxQuarantines {
		a.mustApply(a.op(quarantineOp(host(i), time.Hour), t0))
	}
	wantRefused(t, a, a.op(quarantineOp("10.8.0.1", time.Hour), t0), "too_many_quarantines")
	a.mustApply(a.op(quarantineOp(host(0), 2*time.Hour), t0)) // a replacement
	// Expired ones do not count: past the first hour, room again.
	later := t0.Add(time.Hour + time.Second)
	a.mustApply(a.op(quarantineOp("10.8.0.1", time.Hour), later))
	if n := len(a.seg(later).Quarantines); n != 2 {
		t.Fatalf("%d quarantines in force after the expiry, want 2", n)
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(x) == string(y)
}

// Quarantines: times from the command's header, refusals for the mesh's
// own and special addresses, release, expiry.
func TestFSMQuarantine(t *testing.T) {
	a := newApplier(t)
	at := t0
	a.needToken()
	a.mustApply(joinAdmit(intel.NodeID(seededKey("m2").Public().(ed25519.PublicKey)), at, "10.1.0.9/32"))
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "10.3.0.0/24"}, at))
	a.mustApply(a.op(zoneOp(officeZone()), at))

	// Issued a minute before the entry's clock: Since is the header's time.
	issued := at.Add(-time.Minute)
	a.mustApply(opCmd(signOp(t, testOperatorKey, testMeshID, issued, quarantineOp("10.1.0.66", 2*time.Hour)), at))
	a.mustApply(a.op(quarantineOp("192.0.2.7", time.Hour), at)) // in no zone: allowed
	s := a.seg(at)
	if len(s.Quarantines) != 2 {
		t.Fatalf("quarantines %+v", s.Quarantines)
	}
	q := s.Quarantines[0] // by address
	if q.Host != netip.MustParseAddr("10.1.0.66") || !q.Since.Equal(issued) || !q.ExpiresAt.Equal(issued.Add(2*time.Hour)) ||
		q.Zone != "office" || q.Reason != "lateral movement" || !strings.HasPrefix(q.By, "operator:") {
		t.Fatalf("quarantine %+v", q)
	}
	if s.Quarantines[1].Zone != "" {
		t.Fatalf("a host in no zone recorded in zone %q", s.Quarantines[1].Zone)
	}
	for _, c := range []struct{ host, reason string }{
		{"10.1.0.9", "member_address"},
		{"10.3.0.5", "protected"},
		{"127.0.0.1", "loopback"},
		{"::1", "loopback"},
		{"169.254.1.1", "link_local"},
		{"fe80::1", "link_local"},
		{"224.0.0.5", "multicast"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
	} {
		wantRefused(t, a, a.op(quarantineOp(c.host, time.Hour), at), c.reason)
	}
	// Already over when committed.
	old := at.Add(-9 * time.Minute)
	wantRefused(t, a, opCmd(signOp(t, testOperatorKey, testMeshID, old, quarantineOp("10.1.0.67", time.Minute)), at), "already_expired")
	// Release; a second release finds nothing.
	a.mustApply(a.op(releaseOp("192.0.2.7"), at))
	wantRefused(t, a, a.op(releaseOp("192.0.2.7"), at), "unknown_quarantine")
	// Expiry: the FSM's clock (the entries' times) passes it.
	later := issued.Add(2*time.Hour + time.Second)
	if got := a.seg(later).Quarantines; len(got) != 0 {
		t.Fatalf("read at %s: quarantines %+v, want none active", later, got)
	}
	ch := func() <-chan struct{} { a.f.mu.RLock(); defer a.f.mu.RUnlock(); return a.f.seg.changed }()
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "198.51.100.0/24"}, later))
	if len(a.f.seg.quarantines) != 0 {
		t.Fatalf("an expired quarantine is still held: %+v", a.f.seg.quarantines)
	}
	select {
	case <-ch:
	default:
		t.Fatal("the expiry did not signal a change")
	}
	wantRefused(t, a, a.op(releaseOp("10.1.0.66"), later), "unknown_quarantine")
}

// An operator key of the responder role may quarantine and release but
// not set zones or flows, nor quarantine until released; a member's node
// key signs nothing.
func TestFSMSegmentRoles(t *testing.T) {
	a := newApplier(t)
	resp := seededKey("responder")
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpAddOperator, OperatorKey: resp.Public().(ed25519.PublicKey),
		OperatorRole: intel.OperatorResponder, OperatorName: "soc"}, t0))
	a.mustApply(a.op(zoneOp(officeZone()), t0))
	as := func(key ed25519.PrivateKey, cmd intel.OperatorCommand) Command {
		return opCmd(signOp(t, key, testMeshID, t0, cmd), t0)
	}
	a.mustApply(as(resp, quarantineOp("10.1.0.66", time.Hour)))
	a.mustApply(as(resp, releaseOp("10.1.0.66")))
	for _, cmd := range []intel.OperatorCommand{
		zoneOp(serversZone()),
		{Op: intel.OpRemoveZone, ZoneName: "office"},
		flowOp(denyFlow("f", intel.AnyZone, "office", 1)),
		{Op: intel.OpRemoveFlow, FlowName: "f"},
		quarantineOp("10.1.0.66", 0),
	} {
		wantRefused(t, a, as(resp, cmd), "role")
	}
	a.memberID("m1")
	for _, cmd := range []intel.OperatorCommand{zoneOp(serversZone()), flowOp(denyFlow("f", intel.AnyZone, "office", 1)), quarantineOp("10.1.0.66", time.Hour)} {
		wantRefused(t, a, as(a.members["m1"], cmd), "not_operator")
	}
	// An admin may quarantine until released.
	a.mustApply(a.op(quarantineOp("10.1.0.66", 0), t0))
	if q := a.seg(t0.Add(365 * 24 * time.Hour)).Quarantines; len(q) != 1 || !q[0].ExpiresAt.IsZero() {
		t.Fatalf("quarantine until released: %+v", q)
	}
}

// Automatic quarantine: proven by signed sightings of a rule the host's
// zone allows; every refusal named and counted.
func TestFSMAutoQuarantine(t *testing.T) {
	a := newApplier(t)
	at := t0
	const rule = "ssh-internal-bruteforce"
	a.needToken()
	a.mustApply(joinAdmit(intel.NodeID(seededKey("m9").Public().(ed25519.PublicKey)), at.Add(-time.Hour), "10.1.0.9/32"))
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "10.1.5.0/24"}, at))
	a.mustApply(a.op(zoneOp(officeZone()), at))
	a.mustApply(a.op(zoneOp(intel.Zone{Name: "guest", CIDRs: pfxs("10.5.0.0/16")}), at))
	a.mustApply(a.op(zoneOp(intel.Zone{Name: "lab", CIDRs: pfxs("10.6.0.0/16"),
		AutoQuarantine: &intel.AutoQuarantine{Rules: []string{rule}, MinNodes: 2}}), at))

	a.mustApply(autoQuarantine("10.1.0.66", at, time.Hour, a.ruleProof("site-a", "10.1.0.66", rule, at)))
	q, ok := a.f.seg.quarantines[netip.MustParseAddr("10.1.0.66")]
	if !ok || q.Rule != rule || q.By != "auto:"+rule || q.Zone != "office" || !q.Since.Equal(at) || !q.ExpiresAt.Equal(at.Add(time.Hour)) {
		t.Fatalf("automatic quarantine %+v (held %v)", q, ok)
	}

	stranger := seededKey("stranger")
	wantRefused(t, a, autoQuarantine("192.0.2.1", at, time.Hour, a.ruleProof("site-a", "192.0.2.1", rule, at)), "not_in_zone")
	wantRefused(t, a, autoQuarantine("10.5.0.1", at, time.Hour, a.ruleProof("site-a", "10.5.0.1", rule, at)), "no_auto_quarantine")
	wantRefused(t, a, autoQuarantine("10.1.0.67", at, time.Hour, a.ruleProof("site-a", "10.1.0.67", "web-scan", at)), "rule_not_allowed")
	wantRefused(t, a, autoQuarantine("10.6.0.1", at, time.Hour, a.ruleProof("site-a", "10.6.0.1", rule, at), a.ruleProof("site-a", "10.6.0.1", rule, at)), "min_nodes")
	a.mustApply(autoQuarantine("10.6.0.1", at, time.Hour, a.ruleProof("site-a", "10.6.0.1", rule, at), a.ruleProof("site-b", "10.6.0.1", rule, at)))
	wantRefused(t, a, autoQuarantine("10.1.0.68", at, 3*time.Hour, a.ruleProof("site-a", "10.1.0.68", rule, at)), "ttl_cap")
	wantRefused(t, a, autoQuarantine("10.1.0.68", at, time.Hour, sealRuleSighting(t, stranger, 1, "10.1.0.68", rule, at, false)), "proof_not_member")
	wantRefused(t, a, autoQuarantine("10.1.0.68", at, time.Hour, a.ruleProof("site-a", "10.1.0.69", rule, at)), "proof_wrong_indicator")
	wantRefused(t, a, autoQuarantine("10.1.0.68", at, time.Hour, a.ruleProof("site-a", "10.1.0.68", rule, at.Add(-time.Hour))), "proof_stale")
	a.memberID("site-a")
	a.seq++
	wantRefused(t, a, autoQuarantine("10.1.0.68", at, time.Hour, sealRuleSighting(t, a.members["site-a"], a.seq, "10.1.0.68", rule, at, true)), "proof_partial")
	bad := a.ruleProof("site-a", "10.1.0.68", rule, at)
	bad[len(bad)-70] ^= 1
	wantRefused(t, a, autoQuarantine("10.1.0.68", at, time.Hour, bad), "bad_signature")
	wantRefused(t, a, autoQuarantine("10.1.0.68", at, time.Hour, a.report("site-a", "10.1.0.68", 90, at)), "proof_kind")
	wantRefused(t, a, autoQuarantine("10.1.0.68", at, time.Hour), "no_proof")
	// The mesh's own addresses, inside the zone.
	wantRefused(t, a, autoQuarantine("10.1.0.9", at, time.Hour, a.ruleProof("site-a", "10.1.0.9", rule, at)), "member_address")
	wantRefused(t, a, autoQuarantine("10.1.5.5", at, time.Hour, a.ruleProof("site-a", "10.1.5.5", rule, at)), "protected")

	// Released by an operator: the sightings sent before the release
	// cannot quarantine the host again; later ones can.
	early := a.ruleProof("site-a", "10.1.0.66", rule, at)
	later := at.Add(time.Minute)
	a.mustApply(a.op(releaseOp("10.1.0.66"), later))
	wantRefused(t, a, autoQuarantine("10.1.0.66", later, time.Hour, early), "proof_before_release")
	a.mustApply(autoQuarantine("10.1.0.66", later.Add(time.Second), time.Hour, a.ruleProof("site-a", "10.1.0.66", rule, later.Add(time.Second))))

	// A longer quarantine in force is kept, not shortened.
	a.mustApply(a.op(quarantineOp("10.1.0.70", 10*time.Hour), later))
	a.mustApply(autoQuarantine("10.1.0.70", later, time.Minute, a.ruleProof("site-a", "10.1.0.70", rule, later)))
	if q := a.f.seg.quarantines[netip.MustParseAddr("10.1.0.70")]; !q.ExpiresAt.Equal(later.Add(10*time.Hour)) || q.Rule != "" {
		t.Fatalf("the operator's longer quarantine was replaced: %+v", q)
	}
}

// Snapshot and restore keep zones, flows, quarantines and releases; the
// restored FSM refuses what the original did and signals its readers.
func TestFSMSegmentSurvivesRestore(t *testing.T) {
	a := newApplier(t)
	a.mustApply(a.op(zoneOp(officeZone()), t0))
	a.mustApply(a.op(zoneOp(intel.Zone{Name: "db", CIDRs: pfxs("10.4.0.0/16"), DefaultDeny: true, Management: true}), t0))
	a.mustApply(a.op(flowOp(denyFlow("no-smb", intel.AnyZone, "office", 20)), t0))
	a.mustApply(a.op(quarantineOp("10.1.0.66", time.Hour), t0))
	a.mustApply(a.op(quarantineOp("10.1.0.67", time.Hour), t0))
	a.mustApply(a.op(releaseOp("10.1.0.67"), t0))
	want := a.seg(t0)
	snap := snapshotBytes(t, a.f)

	b := &applier{t: t, f: newFSM(nil), members: a.members, index: a.index, seq: a.seq, token: true}
	ch := b.f.seg.changed
	b.f.mustRestore(t, snap)
	select {
	case <-ch:
	default:
		t.Fatal("restore did not signal a change")
	}
	got := b.seg(t0)
	if !equalJSON(t, got, want) {
		t.Fatalf("restored %+v\nwant %+v", got, want)
	}
	if _, ok := b.f.seg.released[netip.MustParseAddr("10.1.0.67")]; !ok {
		t.Fatal("the release was not restored")
	}
	wantRefused(t, b, b.op(intel.OperatorCommand{Op: intel.OpRemoveZone, ZoneName: "office"}, t0), "zone_in_use")
	wantRefused(t, b, b.op(flowOp(intel.Flow{Name: "smb", From: intel.AnyZone, To: "office", Proto: intel.ProtoTCP,
		Ports: []intel.PortRange{{From: 445, To: 445}}, Action: intel.FlowAllow, Priority: 20}), t0), "contradicts")
}

// --- cluster -----------------------------------------------------------------

// On a real three-node mesh: every operation commits on every node and
// wakes SegmentationChanged readers; every refusal reason of the
// operator's commands, a responder's signature on an admin's operation,
// a member's node key, and automatic quarantines without a valid proof
// are refused by every replica's FSM (through the propose RPC and
// straight in the leader's log), counted on every node, and change
// nothing.
func TestClusterSegmentation(t *testing.T) {
	nodes := byzantineCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const rule = "ssh-internal-bruteforce"
	changed := make([]<-chan struct{}, len(nodes))
	for i, n := range nodes {
		changed[i] = n.c.SegmentationChanged()
	}
	operate := func(cmd intel.OperatorCommand) {
		t.Helper()
		if err := nodes[1].operate(ctx, cmd); err != nil {
			t.Fatalf("%s: %v", cmd.Op, err)
		}
	}
	operate(intel.OperatorCommand{Op: intel.OpProtect, Prefix: "10.3.0.0/24"})
	operate(zoneOp(officeZone()))
	operate(zoneOp(intel.Zone{Name: "servers", CIDRs: pfxs("10.2.0.0/16"), DefaultDeny: true}))
	operate(zoneOp(intel.Zone{Name: "mgmt", CIDRs: pfxs("10.9.0.0/24"), Management: true}))
	operate(flowOp(denyFlow("no-smb", intel.AnyZone, "office", 20)))
	operate(flowOp(intel.Flow{Name: "web", From: "office", To: "servers", Proto: intel.ProtoTCP, Ports: []intel.PortRange{{From: 443, To: 443}}, Action: intel.FlowAllow, Priority: 10}))
	operate(quarantineOp("10.1.0.66", time.Hour))
	for i, n := range nodes {
		<-changed[i] // closed by the first change on that node
		waitFor(t, 20*time.Second, "the segmentation on "+shortID(n.id()), func() bool {
			s := n.c.Segmentation(time.Now())
			return len(s.Zones) == 3 && len(s.Flows) == 2 && len(s.Quarantines) == 1
		})
	}
	s := nodes[2].c.Segmentation(time.Now())
	if s.Flows[0].Name != "no-smb" || s.Quarantines[0].Zone != "office" {
		t.Fatalf("segmentation on a follower: %+v", s)
	}
	if v := s.Decide(time.Now(), netip.MustParseAddr("10.1.0.66"), netip.MustParseAddr("10.2.0.1"), intel.ProtoTCP, 443); !v.Drop {
		t.Fatalf("the quarantined host passes: %+v", v)
	}

	// An automatic quarantine proven by one member's sighting.
	now := time.Now().UTC()
	proof := sealRuleSighting(t, nodes[0].edKey(t), proofSeq.Add(1), "10.1.0.77", rule, now, false)
	if err := nodes[2].c.ProposeQuarantine(ctx, netip.MustParseAddr("10.1.0.77"), 30*time.Minute, [][]byte{proof}); err != nil {
		t.Fatalf("propose the automatic quarantine: %v", err)
	}
	for _, n := range nodes {
		waitFor(t, 20*time.Second, "the automatic quarantine on "+shortID(n.id()), func() bool {
			q, ok := n.c.Quarantined(netip.MustParseAddr("10.1.0.77"), time.Now())
			return ok && q.Rule == rule
		})
	}

	mesh := nodes[0].c.MeshID()
	at := time.Now().UTC()
	op := func(cmd intel.OperatorCommand) Command { return opCmd(signOp(t, testOperatorKey, mesh, at, cmd), at) }
	for _, c := range []struct {
		cmd    intel.OperatorCommand
		reason string
	}{
		{flowOp(denyFlow("x", "office", "nowhere", 1)), "unknown_zone"},
		{zoneOp(intel.Zone{Name: "lab", CIDRs: pfxs("10.3.0.0/16"), DefaultDeny: true}), "cuts_protected"},
		{zoneOp(intel.Zone{Name: "lo", CIDRs: pfxs("127.0.0.0/8"), DefaultDeny: true}), "cuts_local"},
		{func() intel.OperatorCommand {
			f := denyFlow("smb-ok", intel.AnyZone, "office", 20)
			f.Action = intel.FlowAllow
			return flowOp(f)
		}(), "contradicts"},
		{intel.OperatorCommand{Op: intel.OpRemoveZone, ZoneName: "office"}, "zone_in_use"},
		{intel.OperatorCommand{Op: intel.OpRemoveZone, ZoneName: "nowhere"}, "unknown_zone"},
		{intel.OperatorCommand{Op: intel.OpRemoveFlow, FlowName: "nothing"}, "unknown_flow"},
		{quarantineOp("10.3.0.1", time.Hour), "protected"},
		{quarantineOp("127.0.0.1", time.Hour), "loopback"},
		{quarantineOp("169.254.0.1", time.Hour), "link_local"},
		{quarantineOp("239.1.1.1", time.Hour), "multicast"},
		{quarantineOp("0.0.0.0", time.Hour), "unspecified"},
		{releaseOp("10.1.0.99"), "unknown_quarantine"},
	} {
		attack(t, nodes, op(c.cmd), c.reason)
	}
	// A responder signs an admin's operation; a member's node key signs.
	resp := seededKey("responder")
	operate(intel.OperatorCommand{Op: intel.OpAddOperator, OperatorKey: resp.Public().(ed25519.PublicKey), OperatorRole: intel.OperatorResponder, OperatorName: "soc"})
	for _, n := range nodes {
		waitFor(t, 10*time.Second, "two operators everywhere", func() bool { return len(n.c.Operators()) == 2 })
	}
	attack(t, nodes, opCmd(signOp(t, resp, mesh, at, zoneOp(serversZone())), at), "role")
	attack(t, nodes, opCmd(signOp(t, resp, mesh, at, flowOp(denyFlow("y", intel.AnyZone, "office", 2))), at), "role")
	attack(t, nodes, opCmd(signOp(t, resp, mesh, at, quarantineOp("10.1.0.80", 0)), at), "role")
	for _, cmd := range []intel.OperatorCommand{zoneOp(serversZone()), flowOp(denyFlow("y", intel.AnyZone, "office", 2)), quarantineOp("10.1.0.80", time.Hour)} {
		attack(t, nodes, opCmd(signOp(t, nodes[0].edKey(t), mesh, at, cmd), at), "not_operator")
	}
	// Automatic quarantines without a valid proof.
	stranger := sealRuleSighting(t, seededKey("stranger"), 1, "10.1.0.81", rule, at, false)
	attack(t, nodes, autoQuarantine("10.1.0.81", at, time.Hour, stranger), "proof_not_member")
	attack(t, nodes, autoQuarantine("10.1.0.81", at, time.Hour, sealRuleSighting(t, nodes[0].edKey(t), proofSeq.Add(1), "10.1.0.81", "web-scan", at, false)), "rule_not_allowed")
	attack(t, nodes, autoQuarantine("192.0.2.81", at, time.Hour, sealRuleSighting(t, nodes[0].edKey(t), proofSeq.Add(1), "192.0.2.81", rule, at, false)), "not_in_zone")
	attack(t, nodes, autoQuarantine("10.2.0.81", at, time.Hour, sealRuleSighting(t, nodes[0].edKey(t), proofSeq.Add(1), "10.2.0.81", rule, at, false)), "no_auto_quarantine")
	attack(t, nodes, autoQuarantine("10.1.0.81", at, 3*time.Hour, sealRuleSighting(t, nodes[0].edKey(t), proofSeq.Add(1), "10.1.0.81", rule, at, false)), "ttl_cap")
	attack(t, nodes, autoQuarantine("10.3.0.9", at, time.Hour, sealRuleSighting(t, nodes[0].edKey(t), proofSeq.Add(1), "10.3.0.9", rule, at, false)), "not_in_zone")
	seal := func(host string, sent time.Time, partial bool) []byte {
		return sealRuleSighting(t, nodes[0].edKey(t), proofSeq.Add(1), host, rule, sent, partial)
	}
	attack(t, nodes, autoQuarantine("10.1.0.82", at, time.Hour, seal("10.1.0.82", at.Add(-time.Hour), false)), "proof_stale")
	attack(t, nodes, autoQuarantine("10.1.0.82", at, time.Hour, seal("10.1.0.82", at, true)), "proof_partial")
	attack(t, nodes, autoQuarantine("10.1.0.82", at, time.Hour, seal("10.1.0.83", at, false)), "proof_wrong_indicator")
	altered := seal("10.1.0.82", at, false)
	altered[len(altered)-70] ^= 1
	attack(t, nodes, autoQuarantine("10.1.0.82", at, time.Hour, altered), "bad_signature")
	attack(t, nodes, autoQuarantine("10.1.0.82", at, time.Hour), "no_proof")
	// Released: the sightings sent before cannot quarantine it again.
	early := seal("10.1.0.77", time.Now().UTC(), false)
	operate(releaseOp("10.1.0.77"))
	for _, n := range nodes {
		waitFor(t, 20*time.Second, "the release of 10.1.0.77 on "+shortID(n.id()), func() bool {
			_, ok := n.c.Quarantined(netip.MustParseAddr("10.1.0.77"), time.Now())
			return !ok
		})
	}
	attack(t, nodes, autoQuarantine("10.1.0.77", time.Now().UTC(), time.Hour, early), "proof_before_release")
	// A zone that needs two members' sightings.
	operate(zoneOp(intel.Zone{Name: "lab", CIDRs: pfxs("10.6.0.0/16"), AutoQuarantine: &intel.AutoQuarantine{Rules: []string{rule}, MinNodes: 2}}))
	for _, n := range nodes {
		waitFor(t, 20*time.Second, "the lab zone on "+shortID(n.id()), func() bool { return len(n.c.Segmentation(time.Now()).Zones) == 4 })
	}
	at = time.Now().UTC()
	attack(t, nodes, autoQuarantine("10.6.0.1", at, time.Hour, seal("10.6.0.1", at, false), seal("10.6.0.1", at, false)), "min_nodes")
	// An operator's quarantine already over when committed.
	old := time.Now().UTC().Add(-9 * time.Minute)
	attack(t, nodes, opCmd(signOp(t, testOperatorKey, mesh, old, quarantineOp("10.1.0.84", time.Minute)), time.Now().UTC()), "already_expired")

	// Release, everywhere.
	operate(releaseOp("10.1.0.66"))
	for _, n := range nodes {
		waitFor(t, 20*time.Second, "the release on "+shortID(n.id()), func() bool {
			_, ok := n.c.Quarantined(netip.MustParseAddr("10.1.0.66"), time.Now())
			return !ok
		})
	}
}

// A node that joins after the founder compacted its log into a snapshot
// catches up through InstallSnapshot and Restore with the zones, flows
// and quarantines, and refuses what they refuse.
func TestJoinerCatchesUpSegmentationFromSnapshot(t *testing.T) {
	log := testLogger(t)
	small := func(c *Config) { c.SnapshotThreshold, c.TrailingLogs = 4, 1 }
	founder := newTestNodeWith(t, log, true, "", small)
	waitFor(t, 10*time.Second, "the founder to lead and admit itself", func() bool {
		return founder.c.IsLeader() && founder.c.IsMember(founder.id())
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, cmd := range []intel.OperatorCommand{
		zoneOp(officeZone()),
		flowOp(denyFlow("no-smb", intel.AnyZone, "office", 20)),
		quarantineOp("10.1.0.66", time.Hour),
	} {
		if err := founder.operate(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 { // past the snapshot threshold
		if err := founder.operate(ctx, blockOp(t, "192.0.2."+itoa(i+1), time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := founder.c.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	joiner := newTestNodeWith(t, log, false, founder.joinSecret(t, 1), small)
	changed := joiner.c.SegmentationChanged()
	if err := joiner.c.Join(ctx, founder.info()); err != nil {
		t.Fatalf("join: %v", err)
	}
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("the joiner's segmentation never changed")
	}
	waitFor(t, 20*time.Second, "the joiner to hold the segmentation", func() bool {
		s := joiner.c.Segmentation(time.Now())
		return len(s.Zones) == 1 && len(s.Flows) == 1 && len(s.Quarantines) == 1
	})
	if s := joiner.c.Stats()["last_snapshot_index"]; s == "" || s == "0" {
		t.Fatalf("joiner's last_snapshot_index = %q: it caught up without installing a snapshot", s)
	}
	want, got := founder.c.Segmentation(time.Now()), joiner.c.Segmentation(time.Now())
	if !equalJSON(t, got, want) {
		t.Fatalf("joiner %+v\nfounder %+v", got, want)
	}
	if _, a, ok := joiner.c.AutoQuarantine(netip.MustParseAddr("10.1.0.7"), "ssh-internal-bruteforce"); !ok || a.MaxTTLSeconds != 7200 {
		t.Fatalf("the joiner's automatic quarantine rule: %+v %v", a, ok)
	}
}

// BenchmarkFSMApplySegment is the cost of one segmentation command in
// Apply with a full-size state held: a set_flow among 1,000 flows (the
// contradiction and mesh-cut checks), and a quarantine among 4,000 (the
// bound's count), signature check included.
func BenchmarkFSMApplySegment(b *testing.B) {
	for _, bc := range []struct {
		name string
		cmd  func(i int) intel.OperatorCommand
	}{
		{"set_flow", func(i int) intel.OperatorCommand {
			return flowOp(intel.Flow{Name: "f" + itoa(i%1000), From: "office", To: "lab", Proto: intel.ProtoTCP,
				Ports: []intel.PortRange{{From: uint16(i%1000 + 1), To: uint16(i%1000 + 1)}}, Action: intel.FlowDeny, Priority: i % 7})
		}},
		{"quarantine", func(i int) intel.OperatorCommand {
			return quarantineOp(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8 & 15), byte(i)}).String(), time.Hour)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFSM(nil)
			index := uint64(0)
			apply := func(data []byte) any {
				index++
				return f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data})
			}
			enc := func(c Command) []byte {
				data, err := c.Encode()
				if err != nil {
					b.Fatal(err)
				}
				return data
			}
			op := func(cmd intel.OperatorCommand) []byte {
				return enc(opCmd(signOp(b, testOperatorKey, testMeshID, t0, cmd), t0))
			}
			if res := apply(enc(Command{Type: CmdInit, At: t0.Add(-time.Hour), Init: testInit()})); res != nil {
				b.Fatal(res)
			}
			for _, z := range []intel.Zone{officeZone(), {Name: "lab", CIDRs: pfxs("10.6.0.0/16")}} {
				if res := apply(op(zoneOp(z))); res != nil {
					b.Fatal(res)
				}
			}
			for i := range 4000 { // the state held
				if res := apply(op(bc.cmd(i))); res != nil {
					b.Fatal(res)
				}
			}
			const n = 2048
			cmds := make([][]byte, n)
			for i := range n {
				cmds[i] = op(bc.cmd(i))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if res := apply(cmds[i%n]); res != nil && i < n {
					b.Fatalf("%s %d: %v", bc.name, i, res)
				}
				i++
			}
		})
	}
}
