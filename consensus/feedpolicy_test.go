package consensus

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// --- FSM ---------------------------------------------------------------------

func testFeed(publishers ...string) intel.FeedPolicy {
	return intel.FeedPolicy{Name: "feodo", Source: "feodo-tracker", MinConfidence: 80,
		Types: []intel.IndicatorType{intel.IPv4, intel.CIDR, intel.Domain}, Action: intel.ActionBlock,
		TTLSeconds: 3600, Publishers: publishers, Enabled: true}
}

func setFeedOp(p intel.FeedPolicy) intel.OperatorCommand {
	return intel.OperatorCommand{Op: intel.OpSetFeedPolicy, FeedPolicy: &p}
}

func warnOp(op intel.OperatorOp, ind intel.Indicator) intel.OperatorCommand {
	return intel.OperatorCommand{Op: op, Indicator: &ind, Reason: "partner range"}
}

// sealReport seals an indicator report of ind by key, sent at sent.
func sealReport(tb testing.TB, key ed25519.PrivateKey, seq uint64, source string, ind intel.Indicator, conf int, sent time.Time) []byte {
	tb.Helper()
	r := intel.IndicatorReport{Indicator: ind, Source: source, Confidence: conf, ValidFrom: sent.Add(-time.Hour)}
	b, err := intel.SealJSON(key, intel.KindIndicator, seq, sent, r)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// feedBlock is the block of ind promoted by feed policy name, created at
// at for ttl, proven by report.
func feedBlock(tb testing.TB, name, ind string, at time.Time, ttl time.Duration, report []byte) Command {
	p := intel.NewPolicy(intel.ActionBlock, mustIndicator(tb, ind), "feed", "node", at, ttl)
	return Command{Type: CmdFeedBlock, At: at, Policy: &p, Feed: &FeedProof{Policy: name, Report: report}}
}

// report is a report by member name of ind with confidence conf, sent at sent.
func (a *applier) report(name, ind string, conf int, sent time.Time) []byte {
	a.memberID(name)
	a.seq++
	return sealReport(a.t, a.members[name], a.seq, "feodo-tracker", mustIndicator(a.t, ind), conf, sent)
}

func wantRefused(t *testing.T, a *applier, c Command, reason string) *RefusalError {
	t.Helper()
	before := a.f.refused.snapshot()[[2]string{c.Type.String(), reason}]
	err := a.apply(c)
	var rerr *RefusalError
	if !errors.As(err, &rerr) || rerr.Reason != reason {
		t.Fatalf("%s: got %v, want a refusal %q", c.Type, err, reason)
	}
	if got := a.f.refused.snapshot()[[2]string{c.Type.String(), reason}]; got != before+1 {
		t.Fatalf("refusal %s/%s counted %d times, want %d", c.Type, reason, got, before+1)
	}
	return rerr
}

func TestFSMFeedBlock(t *testing.T) {
	a := newApplier(t)
	pub := a.memberID("feed")
	a.memberID("rogue")
	at := t0
	a.mustApply(a.op(setFeedOp(testFeed(pub)), at))

	// A report of the permitted publisher that meets the policy.
	a.mustApply(feedBlock(t, "feodo", "203.0.113.10", at, time.Hour, a.report("feed", "203.0.113.10", 90, at)))
	p, ok := a.f.activePolicy(intel.PolicyID(intel.ActionBlock, mustIndicator(t, "203.0.113.10")), at)
	if !ok {
		t.Fatal("the feed block is not held")
	}
	if p.Author != "feed:feodo" || len(p.Evidence) != 1 || p.Evidence[0].Origin != pub || !strings.Contains(p.Reason, "confidence 90") {
		t.Fatalf("feed block: author %q, reason %q, evidence %+v", p.Author, p.Reason, p.Evidence)
	}
	// The same block proposed again (another node, another report) merges.
	a.mustApply(feedBlock(t, "feodo", "203.0.113.10", at.Add(time.Second), time.Hour, a.report("feed", "203.0.113.10", 95, at.Add(time.Second))))
	if n := a.f.policies.len(); n != 1 {
		t.Fatalf("%d policies after a duplicate, want 1", n)
	}

	at = at.Add(time.Minute)
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.11", at, time.Hour, a.report("feed", "203.0.113.11", 79, at)), "feed_confidence")
	// A member that is not a publisher signs a report with the feed's name.
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.12", at, time.Hour, a.report("rogue", "203.0.113.12", 100, at)), "not_publisher")
	// A stranger's report.
	stranger := sealReport(t, seededKey("stranger"), 1, "feodo-tracker", mustIndicator(t, "203.0.113.13"), 100, at)
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.13", at, time.Hour, stranger), "not_member")
	// Another feed's report.
	r := sealReport(t, a.members["feed"], 99, "other-feed", mustIndicator(t, "203.0.113.14"), 100, at)
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.14", at, time.Hour, r), "feed_source")
	// A type the policy does not take.
	wantRefused(t, a, feedBlock(t, "feodo", "2001:db8::7", at, time.Hour, a.report("feed", "2001:db8::7", 100, at)), "feed_type")
	// An altered envelope.
	r = a.report("feed", "203.0.113.15", 90, at)
	r[len(r)-80] ^= 1
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.15", at, time.Hour, r), "bad_signature")
	// A sighting in place of a report.
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.16", at, time.Hour, a.proof("feed", "203.0.113.16", at)), "proof_kind")
	// A block of something else than the report names.
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.17", at, time.Hour, a.report("feed", "203.0.113.18", 90, at)), "wrong_indicator")
	// Longer than the policy allows.
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.19", at, 2*time.Hour, a.report("feed", "203.0.113.19", 90, at)), "ttl_cap")
	// A report sent after the entry's time.
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.20", at, time.Hour, a.report("feed", "203.0.113.20", 90, at.Add(time.Hour))), "proof_time")
	// Warninglisted, built in: named in the refusal.
	rerr := wantRefused(t, a, feedBlock(t, "feodo", "8.8.8.8", at, time.Hour, a.report("feed", "8.8.8.8", 100, at)), "warninglist")
	if !strings.Contains(rerr.Error(), "public-resolvers") {
		t.Fatalf("the veto does not name the list: %v", rerr)
	}
	rerr = wantRefused(t, a, feedBlock(t, "feodo", "mail.google.com", at, time.Hour, a.report("feed", "mail.google.com", 100, at)), "warninglist")
	if !strings.Contains(rerr.Error(), "google.com (top-domains)") {
		t.Fatalf("the veto does not name the entry: %v", rerr)
	}
	// Below the floors.
	wantRefused(t, a, feedBlock(t, "feodo", "127.0.0.1", at, time.Hour, a.report("feed", "127.0.0.1", 100, at)), "floor")

	// The operators extend the warninglist; then remove the entry.
	partner := mustIndicator(t, "198.51.100.0/24")
	a.mustApply(a.op(warnOp(intel.OpWarninglistAdd, partner), at))
	rerr = wantRefused(t, a, feedBlock(t, "feodo", "198.51.100.7", at, time.Hour, a.report("feed", "198.51.100.7", 100, at)), "warninglist")
	if !strings.Contains(rerr.Error(), "198.51.100.0/24 (operator)") {
		t.Fatalf("the veto does not name the operators' entry: %v", rerr)
	}
	a.mustApply(a.op(warnOp(intel.OpWarninglistRemove, partner), at))
	a.mustApply(feedBlock(t, "feodo", "198.51.100.7", at, time.Hour, a.report("feed", "198.51.100.7", 100, at)))
	wantRefused(t, a, a.op(warnOp(intel.OpWarninglistRemove, partner), at), "unknown_warninglist_entry")

	// Disabled, then removed: later promotions are refused.
	off := testFeed(pub)
	off.Enabled = false
	a.mustApply(a.op(setFeedOp(off), at))
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.30", at, time.Hour, a.report("feed", "203.0.113.30", 90, at)), "feed_disabled")
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpRemoveFeedPolicy, FeedPolicyName: "feodo"}, at))
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.31", at, time.Hour, a.report("feed", "203.0.113.31", 90, at)), "unknown_feed_policy")
	wantRefused(t, a, a.op(intel.OperatorCommand{Op: intel.OpRemoveFeedPolicy, FeedPolicyName: "feodo"}, at), "unknown_feed_policy")
}

// A policy that names no publishers takes the voters' reports only.
func TestFSMFeedBlockVotersPublish(t *testing.T) {
	a := newApplier(t)
	id := a.memberID("voter")
	a.memberID("edge")
	m, _ := a.f.member(id)
	a.mustApply(voterAdmit(m, t0.Add(-time.Hour)))
	a.mustApply(a.op(setFeedOp(testFeed()), t0))
	a.mustApply(feedBlock(t, "feodo", "203.0.113.40", t0, time.Hour, a.report("voter", "203.0.113.40", 90, t0)))
	wantRefused(t, a, feedBlock(t, "feodo", "203.0.113.41", t0, time.Hour, a.report("edge", "203.0.113.41", 90, t0)), "not_publisher")
}

func TestFSMFeedPolicyLimit(t *testing.T) {
	a := newApplier(t)
	for i := range intel.MaxFeedPolicies {
		p := testFeed()
		p.Name = "feed-" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		a.mustApply(a.op(setFeedOp(p), t0))
	}
	p := testFeed()
	p.Name = "one-too-many"
	wantRefused(t, a, a.op(setFeedOp(p), t0), "too_many_feed_policies")
	// Replacing one that exists is not adding one.
	p.Name = "feed-aa"
	a.mustApply(a.op(setFeedOp(p), t0))
}

// Snapshot and restore keep the feed policies and the operators'
// warninglist entries, and the restored FSM refuses what the original did.
func TestFSMFeedStateSurvivesRestore(t *testing.T) {
	a := newApplier(t)
	pub := a.memberID("feed")
	a.mustApply(a.op(setFeedOp(testFeed(pub)), t0))
	a.mustApply(a.op(warnOp(intel.OpWarninglistAdd, mustIndicator(t, "partner.example.net")), t0))
	snap := snapshotBytes(t, a.f)

	b := &applier{t: t, f: newFSM(nil), members: a.members, index: a.index, seq: a.seq, token: true}
	b.f.mustRestore(t, snap)
	if got := b.f.feeds.sortedPolicies(); len(got) != 1 || got[0].Name != "feodo" || got[0].Publishers[0] != pub {
		t.Fatalf("restored feed policies: %+v", got)
	}
	if got := b.f.feeds.sortedWarn(); len(got) != 1 || got[0].Indicator.Value != "partner.example.net" || got[0].Reason != "partner range" {
		t.Fatalf("restored warninglist: %+v", got)
	}
	wantRefused(t, b, feedBlock(t, "feodo", "cdn.partner.example.net", t0, time.Hour, b.report("feed", "cdn.partner.example.net", 90, t0)), "warninglist")
	b.mustApply(feedBlock(t, "feodo", "203.0.113.50", t0, time.Hour, b.report("feed", "203.0.113.50", 90, t0)))
	if !bytes.Equal(snapshotBytes(t, a.f)[:20], snap[:20]) {
		t.Fatal("the original changed")
	}
}

// --- cluster -----------------------------------------------------------------

// On a real three-node mesh: an operator's feed policy turns the report
// of a permitted publisher into a block every node holds; a member that
// is not a publisher forging the feed, a report below the confidence, a
// warninglisted value and an altered envelope are refused by every
// replica's FSM (through the propose RPC and straight in the leader's
// log), counted, and change nothing.
func TestClusterFeedPolicy(t *testing.T) {
	nodes := byzantineCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	publisher, rogue := nodes[0], nodes[2]
	if err := nodes[1].operate(ctx, setFeedOp(testFeed(publisher.id()))); err != nil {
		t.Fatalf("set the feed policy: %v", err)
	}
	for _, n := range nodes {
		waitFor(t, 20*time.Second, "the feed policy on "+shortID(n.id()), func() bool { return len(n.c.FeedPolicies()) == 1 })
	}
	now := time.Now().UTC()
	ind := mustIndicator(t, "203.0.113.60")
	report := sealReport(t, publisher.edKey(t), proofSeq.Add(1), "feodo-tracker", ind, 90, now)
	block := intel.NewPolicy(intel.ActionBlock, ind, "feed", publisher.id(), now, 30*time.Minute)
	// Proposed by a node that is not the publisher.
	if err := nodes[1].c.ProposeFeedBlock(ctx, "feodo", report, block); err != nil {
		t.Fatalf("propose the feed block: %v", err)
	}
	for _, n := range nodes {
		waitFor(t, 20*time.Second, "the feed block on "+shortID(n.id()), func() bool { return hasPolicy(n.c, block.ID) })
	}

	at := time.Now().UTC()
	forged := sealReport(t, rogue.edKey(t), proofSeq.Add(1), "feodo-tracker", mustIndicator(t, "203.0.113.61"), 100, at)
	attack(t, nodes, feedBlock(t, "feodo", "203.0.113.61", at, 30*time.Minute, forged), "not_publisher")
	low := sealReport(t, publisher.edKey(t), proofSeq.Add(1), "feodo-tracker", mustIndicator(t, "203.0.113.62"), 50, at)
	attack(t, nodes, feedBlock(t, "feodo", "203.0.113.62", at, 30*time.Minute, low), "feed_confidence")
	dns := sealReport(t, publisher.edKey(t), proofSeq.Add(1), "feodo-tracker", mustIndicator(t, "8.8.8.8"), 100, at)
	attack(t, nodes, feedBlock(t, "feodo", "8.8.8.8", at, 30*time.Minute, dns), "warninglist")
	altered := sealReport(t, publisher.edKey(t), proofSeq.Add(1), "feodo-tracker", mustIndicator(t, "203.0.113.63"), 90, at)
	altered = bytes.Replace(altered, []byte("203.0.113.63"), []byte("203.0.113.64"), 1)
	attack(t, nodes, feedBlock(t, "feodo", "203.0.113.64", at, 30*time.Minute, altered), "bad_signature")

	// Removed: the publisher's next report is refused.
	if err := nodes[1].operate(ctx, intel.OperatorCommand{Op: intel.OpRemoveFeedPolicy, FeedPolicyName: "feodo"}); err != nil {
		t.Fatalf("remove the feed policy: %v", err)
	}
	late := sealReport(t, publisher.edKey(t), proofSeq.Add(1), "feodo-tracker", mustIndicator(t, "203.0.113.65"), 90, time.Now().UTC())
	attack(t, nodes, feedBlock(t, "feodo", "203.0.113.65", time.Now().UTC(), 30*time.Minute, late), "unknown_feed_policy")
}

// BenchmarkFSMApplyFeedBlock is the cost of one feed block in Apply: the
// report's signature, its decoding, the checks and the store (distinct
// indicators, signatures not cached).
func BenchmarkFSMApplyFeedBlock(b *testing.B) {
	f := newFSM(nil)
	index := uint64(0)
	apply := func(c Command) any {
		data, err := c.Encode()
		if err != nil {
			b.Fatal(err)
		}
		index++
		return f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data})
	}
	must := func(c Command) {
		if res := apply(c); res != nil {
			b.Fatalf("%s: %v", c.Type, res)
		}
	}
	must(Command{Type: CmdInit, At: t0.Add(-time.Hour), Init: testInit()})
	must(createTokenCmd(b, t0.Add(-time.Hour), 10))
	key := seededKey("feed")
	pub := intel.NodeID(key.Public().(ed25519.PublicKey))
	must(joinAdmit(pub, t0.Add(-time.Hour)))
	must(opCmd(signOp(b, testOperatorKey, testMeshID, t0, setFeedOp(testFeed(pub))), t0))
	const n = 4096
	cmds := make([][]byte, n)
	for i := range n {
		ind := intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
		c := feedBlock(b, "feodo", ind.Value, t0, time.Hour, sealReport(b, key, uint64(i+1), "feodo-tracker", ind, 90, t0))
		data, err := c.Encode()
		if err != nil {
			b.Fatal(err)
		}
		cmds[i] = data
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		index++
		if res := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: cmds[i%n]}); res != nil && i < n {
			b.Fatalf("feed block %d: %v", i, res)
		}
		i++
	}
}

// A node that joins after the founder compacted its log into a snapshot
// catches up through InstallSnapshot and Restore with the feed policies
// and the operators' warninglist entries, and refuses what they refuse.
func TestJoinerCatchesUpFeedStateFromSnapshot(t *testing.T) {
	log := testLogger(t)
	small := func(c *Config) { c.SnapshotThreshold, c.TrailingLogs = 4, 1 }
	founder := newTestNodeWith(t, log, true, "", small)
	waitFor(t, 10*time.Second, "the founder to lead and admit itself", func() bool {
		return founder.c.IsLeader() && founder.c.IsMember(founder.id())
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := founder.operate(ctx, setFeedOp(testFeed(founder.id()))); err != nil {
		t.Fatal(err)
	}
	partner := mustIndicator(t, "198.51.100.0/24")
	if err := founder.operate(ctx, warnOp(intel.OpWarninglistAdd, partner)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 { // past the snapshot threshold
		if err := founder.operate(ctx, blockOp(t, fmt.Sprintf("192.0.2.%d", i+1), time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := founder.c.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	joiner := newTestNodeWith(t, log, false, founder.joinSecret(t, 1), small)
	if err := joiner.c.Join(ctx, founder.info()); err != nil {
		t.Fatalf("join: %v", err)
	}
	waitFor(t, 20*time.Second, "the joiner to hold the feed state", func() bool {
		return len(joiner.c.FeedPolicies()) == 1 && len(joiner.c.Warninglist()) == 1
	})
	if s := joiner.c.Stats()["last_snapshot_index"]; s == "" || s == "0" {
		t.Fatalf("joiner's last_snapshot_index = %q: it caught up without installing a snapshot", s)
	}
	if e, ok := joiner.c.Warninglisted(mustIndicator(t, "198.51.100.9")); !ok || e.Indicator != partner {
		t.Fatalf("the joiner does not veto 198.51.100.9 by the operators' entry: %v %v", e, ok)
	}
	if got := joiner.c.FeedPolicies()[0]; got.Name != "feodo" || got.Publishers[0] != founder.id() {
		t.Fatalf("the joiner's feed policy: %+v", got)
	}
}
