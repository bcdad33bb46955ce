package gossip

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

func testReport(value string) intel.IndicatorReport {
	return intel.IndicatorReport{
		Indicator:   intel.Indicator{Type: intel.Domain, Value: value},
		Source:      "operator:alice",
		Confidence:  70,
		Labels:      []string{"botnet", "c2"},
		Technique:   "T1071.001",
		Description: "command and control",
		ValidFrom:   time.Now().UTC().Truncate(time.Second),
	}
}

func sealReport(t testing.TB, key ed25519.PrivateKey, seq uint64, ts time.Time, r intel.IndicatorReport) []byte {
	t.Helper()
	b, err := intel.SealJSON(key, intel.KindIndicator, seq, ts, r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheckPayload: each kind's payload is decoded strictly and bounded
// before an envelope is handed on, whatever path it came by.
func TestCheckPayload(t *testing.T) {
	_, key := newKey(t)
	now := time.Now()
	big := testReport("c2.example.net")
	big.Description = strings.Repeat("d", MaxIndicatorPayload)
	for _, c := range []struct {
		name    string
		kind    intel.Kind
		payload []byte
		want    string // "" means it passes
	}{
		{"sighting", intel.KindSighting, must(json.Marshal(testSighting("203.0.113.7"))), ""},
		{"report", intel.KindIndicator, must(json.Marshal(testReport("c2.example.net"))), ""},
		{"report with an unknown field", intel.KindIndicator,
			[]byte(`{"indicator":{"type":"domain","value":"c2.example.net"},"source":"x","confidence":1,"valid_from":"2026-01-01T00:00:00Z","action":"block"}`), ReasonMalformed},
		{"report over its bound", intel.KindIndicator, must(json.Marshal(big)), ReasonOversized},
		{"heartbeat", intel.KindHeartbeat, []byte(`{"site":"lab"}`), ""},
		{"heartbeat not JSON", intel.KindHeartbeat, []byte(`{`), ReasonMalformed},
		{"heartbeat over its bound", intel.KindHeartbeat, bytes.Repeat([]byte(" "), MaxHeartbeatPayload+1), ReasonOversized},
	} {
		env := must(intel.Open(must(intel.Seal(key, c.kind, 1, now, c.payload))))
		_, err := checkPayload(env)
		got := ""
		if err != nil {
			got = openReason(err)
		}
		if got != c.want {
			t.Errorf("%s: %q (%v), want %q", c.name, got, err, c.want)
		}
	}
}

func TestPublishIndicator(t *testing.T) {
	h, key := newTestHost(t)
	rec := newRecorder()
	off := newTestGossip(t, h, Options{Handler: rec})
	ctx := context.Background()
	if err := off.PublishIndicator(ctx, sealReport(t, key, 1, time.Now(), testReport("a.example"))); !errors.Is(err, ErrIndicatorsOff) {
		t.Fatalf("PublishIndicator with the topic off: %v, want ErrIndicatorsOff", err)
	}
	if off.IndicatorRejected() != nil || off.IndicatorAccepted() != 0 || off.IndicatorPeers() != nil {
		t.Fatal("indicator accessors report something with the topic off")
	}
	off.Close()

	h2, key2 := newTestHost(t)
	g := newTestGossip(t, h2, Options{Handler: rec, Indicators: &IndicatorOptions{}})
	if err := g.PublishIndicator(ctx, sealReport(t, key2, 1, time.Now(), testReport("a.example"))); err != nil {
		t.Fatal(err)
	}
	if rec.count(h2.ID().String(), 1) != 1 {
		t.Fatal("own report did not reach the handler")
	}
	// A report the node itself would refuse is not sent.
	bad := testReport("a.example")
	bad.Source = ""
	if err := g.PublishIndicator(ctx, sealReport(t, key2, 2, time.Now(), bad)); err == nil {
		t.Fatal("invalid local report published")
	}
	if g.IndicatorRejected()[ReasonMalformed] != 1 {
		t.Fatalf("rejections %v, want one malformed", g.IndicatorRejected())
	}
	g.Close()
	if err := g.PublishIndicator(ctx, sealReport(t, key2, 3, time.Now(), testReport("a.example"))); !errors.Is(err, ErrClosed) {
		t.Fatalf("PublishIndicator after Close: %v, want ErrClosed", err)
	}
}

func withIndicators(l *memLog) Options {
	return Options{Log: l, Indicators: &IndicatorOptions{}}
}

// publishReport seals a report of value from n with its next seq and
// publishes it on the indicator topic.
func (n *meshNode) publishReport(t testing.TB, value string) uint64 {
	t.Helper()
	n.seq++
	if err := n.g.PublishIndicator(context.Background(), sealReport(t, n.key, n.seq, time.Now(), testReport(value))); err != nil {
		t.Fatalf("publish report seq %d: %v", n.seq, err)
	}
	return n.seq
}

// TestIndicatorReachesEveryNodeOnce: a report published on a leaf of a
// five-node star reaches every node's Handler exactly once, as a
// KindIndicator envelope, and nothing is rejected.
func TestIndicatorReachesEveryNodeOnce(t *testing.T) {
	const n = 5
	nodes := make([]*meshNode, n)
	for i := range nodes {
		l := newMemLog()
		nodes[i] = startMeshNode(t, nil, l, withIndicators(l))
		if i > 0 {
			connect(t, nodes[i].h, nodes[0].h)
		}
	}
	waitFor(t, 15*time.Second, "every node to see the hub in the indicator topic", func() bool {
		if len(nodes[0].g.IndicatorPeers()) != n-1 {
			return false
		}
		for _, nd := range nodes[1:] {
			if len(nd.g.IndicatorPeers()) != 1 {
				return false
			}
		}
		return true
	})
	pub := nodes[3] // a leaf: its report must be relayed by the hub
	// Warm up until the hub has its leaves in its mesh.
	deadline := time.Now().Add(30 * time.Second)
	for warm := false; !warm; {
		pub.publishReport(t, "warm.example")
		roundEnd := time.Now().Add(time.Second)
		for !warm && time.Now().Before(roundEnd) {
			warm = true
			for _, nd := range nodes {
				warm = warm && nd.log.count(pub.id()) > 0
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !warm && time.Now().After(deadline) {
			t.Fatal("warm-up reports never reached every node")
		}
	}
	seq := pub.publishReport(t, "c2.example.net")
	waitFor(t, 15*time.Second, "the report at every node", func() bool {
		for _, nd := range nodes {
			if !nd.log.has(pub.id(), seq) {
				return false
			}
		}
		return true
	})
	// Let any duplicate arrive (gossip and anti-entropy race), then check
	// exactly once. Sleeping makes the test stricter, never flakier.
	time.Sleep(1500 * time.Millisecond)
	for i, nd := range nodes {
		if d := nd.log.dupCount(); d != 0 {
			t.Errorf("node %d handled %d envelopes twice", i, d)
		}
		nd.log.mu.Lock()
		raw := nd.log.envs[pub.id()][seq]
		nd.log.mu.Unlock()
		env, err := intel.Open(raw)
		if err != nil {
			t.Fatalf("node %d stored an unreadable envelope: %v", i, err)
		}
		if r, err := intel.DecodeIndicatorReport(env); err != nil || r.Indicator.Value != "c2.example.net" {
			t.Errorf("node %d holds %+v, %v", i, r, err)
		}
		if r := bugRejections(nd.g.IndicatorRejected()); len(r) != 0 {
			t.Errorf("node %d rejected reports: %v", i, r)
		}
	}
}

// TestIndicatorForgeriesOverTheNetwork: forged, non-member and malformed
// reports sent by a bare GossipSub peer are rejected and counted per
// reason; a genuine one sent afterwards arrives.
func TestIndicatorForgeriesOverTheNetwork(t *testing.T) {
	_, memberKey := newKey(t)
	memberID := intel.NodeID(memberKey.Public().(ed25519.PublicKey))
	r := newRogue(t, nil, DefaultIndicatorTopic)
	rogueKey, rogueID, topic := r.key, r.id(), r.topic
	roster := &switchRoster{}
	roster.set(rosterSet{rogueID: true, memberID: true})
	l := newMemLog()
	victim := startMeshNode(t, nil, l, Options{Roster: roster, Indicators: &IndicatorOptions{}})

	ctx := context.Background()
	r.reach(t, victim.h)
	waitFor(t, 10*time.Second, "the victim to see the rogue in the indicator topic", func() bool {
		return len(victim.g.IndicatorPeers()) == 1
	})

	now := time.Now()
	forged := bytes.Clone(sealReport(t, rogueKey, 1, now, testReport("a.example")))
	forged[60] ^= 1
	bad := testReport("a.example")
	bad.Labels = []string{"c2", "c2"}
	sends := [][]byte{
		forged, // bad_signature
		sealReport(t, memberKey, 1, now, testReport("a.example")), // author_mismatch
		sealReport(t, rogueKey, 2, now, bad),                      // malformed
	}
	for _, b := range sends {
		if err := topic.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]uint64{ReasonBadSignature: 1, ReasonAuthorMismatch: 1, ReasonMalformed: 1}
	waitFor(t, 10*time.Second, "the three bad reports to be counted", func() bool {
		return maps.Equal(victim.g.IndicatorRejected(), want)
	})
	if err := topic.Publish(ctx, sealReport(t, rogueKey, 3, now, testReport("b.example"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the genuine report", func() bool { return l.has(rogueID, 3) })
	// Once off the roster, the rogue's reports are refused.
	roster.set(rosterSet{memberID: true})
	if err := topic.Publish(ctx, sealReport(t, rogueKey, 4, now, testReport("c.example"))); err != nil {
		t.Fatal(err)
	}
	want[ReasonNotMember] = 1
	waitFor(t, 10*time.Second, "the non-member report to be counted", func() bool {
		return maps.Equal(victim.g.IndicatorRejected(), want)
	})
	if got := l.count(rogueID); got != 1 || len(l.envs) != 1 {
		t.Fatalf("handler holds %d reports of the rogue (%d origins), want only the genuine one", got, len(l.envs))
	}
}

// TestIndicatorAntiEntropy: a node that was down while reports were
// published catches up on them through /meshward/sync/1; a node with the
// indicator topic off refuses them there as unexpected_kind.
func TestIndicatorAntiEntropy(t *testing.T) {
	// GossipSub gossips (IHAVE) each message for three heartbeats: a
	// restarted node that met a peer within them could get a report by
	// IWANT, not anti-entropy. Heartbeats of 50 ms, and a wait past
	// three of them, leave anti-entropy the only way.
	const heartbeat = 50 * time.Millisecond
	opts := func(l *memLog) Options {
		o := withIndicators(l)
		o.RouterHeartbeat = heartbeat
		return o
	}
	la, lb, lc := newMemLog(), newMemLog(), newMemLog()
	a := startMeshNode(t, nil, la, opts(la))
	b := startMeshNode(t, nil, lb, opts(lb))
	c := startMeshNode(t, nil, lc, opts(lc))
	connect(t, b.h, a.h)
	connect(t, c.h, a.h)
	waitFor(t, 10*time.Second, "b in a's indicator topic", func() bool { return len(a.g.IndicatorPeers()) == 2 })
	c.stop()

	const reports = 20
	for i := range reports {
		a.publishReport(t, fmt.Sprintf("r%d.example", i))
	}
	waitFor(t, 30*time.Second, "the reports at b", func() bool { return lb.count(a.id()) == reports })
	time.Sleep(20 * heartbeat)

	c2 := startMeshNode(t, c.sk, lc, opts(lc))
	connect(t, c2.h, b.h)
	waitFor(t, 30*time.Second, "the restarted node to catch up", func() bool { return lc.count(a.id()) == reports })
	if got := c2.g.SyncAccepted(); got != reports {
		t.Errorf("anti-entropy accepted %d envelopes, want %d", got, reports)
	}
	if r := c2.g.SyncRejected(); len(r) != 0 {
		t.Errorf("anti-entropy rejections at the restarted node: %v", r)
	}
	if d := lc.dupCount(); d != 0 {
		t.Errorf("restarted node handled %d envelopes twice", d)
	}

	ld := newMemLog()
	d := startMeshNode(t, nil, ld, Options{Log: ld})
	connect(t, d.h, b.h)
	waitFor(t, 30*time.Second, "a node without the topic to refuse the reports", func() bool {
		return d.g.SyncRejected()[ReasonUnexpectedKind] >= reports
	})
	if ld.count(a.id()) != 0 {
		t.Errorf("a node without the indicator topic took %d reports", ld.count(a.id()))
	}
}

// switchRoster is a Roster a test can change while validators run. It
// counts its changes (RosterVersioner), as consensus's roster does, so
// that the tests that change it go through Gossip's membership memo.
type switchRoster struct {
	mu      sync.Mutex
	m       rosterSet
	version uint64
}

func (r *switchRoster) set(m rosterSet) {
	r.mu.Lock()
	r.m = m
	r.version++
	r.mu.Unlock()
}

func (r *switchRoster) RosterVersion() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.version
}

func (r *switchRoster) IsMember(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[id]
}
