package gossip

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

// startMeshLogs starts a node per log; node i connects to node 0 and up
// to two random earlier nodes.
func startMeshLogs(t testing.TB, logs []*memLog, opts func(i int) Options) []*meshNode {
	t.Helper()
	nodes := make([]*meshNode, len(logs))
	for i := range nodes {
		nodes[i] = startMeshNode(t, nil, logs[i], opts(i))
		if i == 0 {
			continue
		}
		connect(t, nodes[i].h, nodes[0].h)
		for range 2 {
			if j := rand.N(i); j != 0 {
				connect(t, nodes[i].h, nodes[j].h)
			}
		}
	}
	return nodes
}

// TestTwentyNodes: a sighting published on one of 20 nodes reaches every
// node's Handler exactly once, and every node learns every node's latest
// heartbeat. The nodes run anti-entropy as real nodes do: GossipSub
// occasionally leaves a freshly joined leaf out of every mesh for a while,
// and the periodic sync is what bounds that.
func TestTwentyNodes(t *testing.T) {
	const n = 20
	logs := make([]*memLog, n)
	for i := range logs {
		logs[i] = newMemLog()
	}
	nodes := startMeshLogs(t, logs, func(i int) Options {
		return Options{Log: logs[i], SyncInterval: 3 * time.Second, Heartbeats: &HeartbeatOptions{
			// One a second from each of 20 nodes: enough to prove every
			// node hears every other, without a validation load that a busy
			// 2-core machine under -race cannot keep up with.
			Interval: time.Second,
			Info:     func() Heartbeat { return Heartbeat{Version: "test", Site: "lab", Sightings: 7, Load: 0.5} },
		}}
	})
	pub := nodes[13]
	warmMesh(t, nodes, pub)
	seq := pub.publish(t, "198.51.100.23")
	defer func() {
		if t.Failed() {
			for i, nd := range nodes {
				t.Logf("node %d: has=%v rejected=%v hb=%v peers=%d scores=%v", i, nd.log.has(pub.id(), seq), nd.g.Rejected(), nd.g.HeartbeatRejected(), len(nd.g.Peers()), nd.g.PeerScores())
			}
		}
	}()
	waitFor(t, 2*time.Minute, "the sighting at all 20 nodes", func() bool {
		for _, nd := range nodes {
			if !nd.log.has(pub.id(), seq) {
				return false
			}
		}
		return true
	})
	waitFor(t, 2*time.Minute, "every node's heartbeat at every node", func() bool {
		for _, nd := range nodes {
			if len(nd.g.Heartbeats()) != n {
				return false
			}
		}
		return true
	})
	for i, nd := range nodes {
		if d := nd.log.dupCount(); d != 0 {
			t.Errorf("node %d handled %d envelopes twice", i, d)
		}
		// A sighting that came by anti-entropy first is ignored as a
		// replay when GossipSub delivers it too (and the other way
		// round); the handler still saw it once (dupCount above).
		if r := bugRejections(nd.g.Rejected(), ReasonReplay); len(r) != 0 {
			t.Errorf("node %d rejected sightings: %v", i, r)
		}
		// Gossip may win the race with a sync session.
		if r := bugRejections(nd.g.SyncRejected(), ReasonReplay); len(r) != 0 {
			t.Errorf("node %d anti-entropy rejected: %v", i, r)
		}
		// A heartbeat overtaken by the node's next one is a replay.
		if r := bugRejections(nd.g.HeartbeatRejected(), ReasonReplay); len(r) != 0 {
			t.Errorf("node %d rejected heartbeats: %v", i, r)
		}
	}
	for _, hb := range nodes[0].g.Heartbeats() {
		if hb.Site != "lab" || hb.Version != "test" || hb.Sightings != 7 || hb.Peers == 0 || hb.Seq == 0 {
			t.Errorf("heartbeat of %s: %+v", hb.Node, hb)
		}
	}
}

// TestAntiEntropyAfterRestart: a node that was down while 1,000 sightings
// were published elsewhere holds all of them after anti-entropy, none
// handled twice, although it already held one of them (a gap in its log).
func TestAntiEntropyAfterRestart(t *testing.T) {
	withLog := func(l *memLog) Options { return Options{Log: l, SyncMaxSession: 256} }
	la, lb, lc := newMemLog(), newMemLog(), newMemLog()
	a := startMeshNode(t, nil, la, withLog(la))
	b := startMeshNode(t, nil, lb, withLog(lb))
	c := startMeshNode(t, nil, lc, withLog(lc))
	connect(t, b.h, a.h)
	connect(t, c.h, a.h)
	warmMesh(t, []*meshNode{a, b, c}, a)
	warm := la.count(a.id())
	c.stop()

	const fromA, fromB = 600, 400
	for i := range fromA {
		a.publish(t, fmt.Sprintf("203.0.113.%d", i%250+1))
	}
	for i := range fromB {
		b.publish(t, fmt.Sprintf("198.51.100.%d", i%250+1))
	}
	waitFor(t, 30*time.Second, "the 1,000 sightings at a and b", func() bool {
		return la.count(a.id()) == warm+fromA && la.count(b.id()) == fromB &&
			lb.count(a.id()) == warm+fromA && lb.count(b.id()) == fromB
	})
	// c got one of them some other way before it restarts: a gap.
	lc.mu.Lock()
	gapSeq := uint64(warm + fromA/2)
	lc.mu.Unlock()
	la.mu.Lock()
	held := bytes.Clone(la.envs[a.id()][gapSeq])
	la.mu.Unlock()
	lc.put(a.id(), gapSeq, held)

	c2 := startMeshNode(t, c.sk, lc, withLog(lc))
	connect(t, c2.h, a.h)
	waitFor(t, 60*time.Second, "the restarted node to catch up", func() bool {
		return lc.count(a.id()) == warm+fromA && lc.count(b.id()) == fromB
	})
	if d := lc.dupCount(); d != 0 {
		t.Errorf("restarted node handled %d envelopes it held already", d)
	}
	if got := c2.g.SyncAccepted(); got < fromA+fromB-1 {
		t.Errorf("anti-entropy accepted %d envelopes, want at least %d", got, fromA+fromB-1)
	}
	if r := c2.g.SyncRejected(); len(r) != 0 {
		t.Errorf("anti-entropy rejections at the restarted node: %v", r)
	}
	// 999 envelopes, 256 per session. A session is counted when it ends,
	// after the last of its envelopes is stored: wait for the count.
	waitFor(t, 10*time.Second, "at least 4 sync sessions", func() bool { return c2.g.SyncStats().Pulls >= 4 })
}

// syncRogue serves SyncProtocol on a bare host: the first session gets
// frames, later ones nothing.
func syncRogue(t *testing.T, frames [][]byte) host.Host {
	t.Helper()
	h, _ := newTestHost(t)
	var once sync.Once
	h.SetStreamHandler(SyncProtocol, func(st network.Stream) {
		defer st.Close()
		if _, err := readFrame(bufio.NewReader(st), syncMaxRequest); err != nil {
			st.Reset()
			return
		}
		w := bufio.NewWriter(st)
		once.Do(func() {
			for _, f := range frames {
				writeFrame(w, f)
			}
		})
		writeFrame(w, nil)
	})
	return h
}

// TestSyncRejectsBadEnvelopes: envelopes served by anti-entropy pass the
// same checks as gossip, except freshness: old is fine, future is not.
func TestSyncRejectsBadEnvelopes(t *testing.T) {
	_, memberKey := newKey(t)
	memberID := intel.NodeID(memberKey.Public().(ed25519.PublicKey))
	_, strangerKey := newKey(t)
	now := time.Now()

	old := seal(t, memberKey, 1, now.Add(-48*time.Hour))
	forged := bytes.Clone(seal(t, memberKey, 2, now))
	forged[60] ^= 1
	badSighting := testSighting("203.0.113.9")
	badSighting.Count = 0
	invalid, _ := intel.SealJSON(memberKey, intel.KindSighting, 3, now, badSighting)
	heartbeat, _ := intel.Seal(memberKey, intel.KindHeartbeat, 4, now, []byte(`{}`))
	frames := [][]byte{
		old,
		forged,                           // bad_signature
		seal(t, strangerKey, 1, now),     // not_member
		[]byte("not an envelope at all"), // malformed
		seal(t, memberKey, 5, now.Add(time.Hour)), // stale: from the future
		invalid,                               // malformed
		heartbeat,                             // unexpected_kind
		old,                                   // replay
		make([]byte, intel.MaxEnvelopeSize+1), // oversized: ends the session
		seal(t, memberKey, 6, now),            // never read
	}
	rogue := syncRogue(t, frames)

	log := newMemLog()
	victim := startMeshNode(t, nil, log, Options{Log: log, Roster: rosterSet{memberID: true}})
	connect(t, victim.h, rogue) // the connection triggers a session
	want := map[string]uint64{
		ReasonBadSignature: 1, ReasonNotMember: 1, ReasonMalformed: 2, ReasonStale: 1,
		ReasonUnexpectedKind: 1, ReasonReplay: 1, ReasonOversized: 1,
	}
	waitFor(t, 15*time.Second, "every bad envelope to be counted", func() bool {
		return maps.Equal(victim.g.SyncRejected(), want)
	})
	if _, err := victim.g.Sync(context.Background(), rogue.ID()); err != nil {
		t.Fatalf("second session: %v", err)
	}
	if got := victim.g.SyncRejected(); !maps.Equal(got, want) {
		t.Errorf("rejections %v, want %v", got, want)
	}
	if victim.g.SyncAccepted() != 1 || !log.has(memberID, 1) || log.count(memberID) != 1 || len(log.envs) != 1 {
		t.Errorf("handler got %v (accepted %d); want only the old envelope", log.envs, victim.g.SyncAccepted())
	}
	if len(victim.g.Rejected()) != 0 {
		t.Errorf("gossip counters moved: %v", victim.g.Rejected())
	}
}

// TestFloodAndForgeryGraylisted: a member that floods far over the rate
// limit and a peer that sends forgeries both fall below the graylist
// threshold at their neighbours, while honest sightings reach every node.
func TestFloodAndForgeryGraylisted(t *testing.T) {
	_, flooderKey := newKey(t)
	roster := rosterSet{intel.NodeID(flooderKey.Public().(ed25519.PublicKey)): true}
	sks := make([]crypto.PrivKey, 4)
	for i := range sks {
		sks[i], _ = newKey(t)
		roster[must(peer.IDFromPrivateKey(sks[i])).String()] = true
	}
	var nodes []*meshNode
	for _, sk := range sks {
		nodes = append(nodes, startMeshNode(t, sk, newMemLog(), Options{
			Roster: roster, RateLimit: 50, RateBurst: 100, ScoreInspectPeriod: 200 * time.Millisecond,
		}))
	}
	for i := 1; i < len(nodes); i++ {
		for j := range i {
			connect(t, nodes[i].h, nodes[j].h)
		}
	}
	warmMesh(t, nodes, nodes[3])

	// The flooder is a roster member: only the rate limit stands in its way.
	flooder := newRogue(t, flooderKey, DefaultTopic)
	flooder.reach(t, nodes[0].h, nodes[1].h)
	forger := newRogue(t, nil, DefaultTopic)
	forger.reach(t, nodes[1].h, nodes[2].h)
	fh, ftopic := flooder.h, flooder.topic
	forgerKey, gtopic := forger.key, forger.topic
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// One envelope, published again and again: each publish is a new
		// GossipSub message that the rate limiter counts before anything
		// else, and sealing once keeps the flood fast on a loaded machine
		// under -race (what the limiter lets through is ignored as a replay).
		raw, _ := intel.SealJSON(flooderKey, intel.KindSighting, 1, time.Now(), testSighting("192.0.2.99"))
		for i := 1; ctx.Err() == nil; i++ {
			ftopic.Publish(ctx, raw)
			if i%64 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	// The forger keeps forging, as an attacker would: on a loaded machine
	// GossipSub drops some messages at a full validation queue before they
	// are judged, so a fixed handful might never all be scored.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := uint64(1); ctx.Err() == nil; seq++ {
			forged := bytes.Clone(seal(t, forgerKey, seq, time.Now()))
			forged[60] ^= 1
			gtopic.Publish(ctx, forged)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	below := func(nd *meshNode, p peer.ID) bool {
		s, ok := nd.g.PeerScores()[p]
		return ok && s < GraylistThreshold
	}
	graylisted := func() bool {
		return below(nodes[0], fh.ID()) && below(nodes[1], fh.ID()) &&
			below(nodes[1], forger.h.ID()) && below(nodes[2], forger.h.ID())
	}
	if !waitUntil(3*time.Minute, graylisted) {
		t.Fatalf("timed out after 3m waiting for flooder and forger graylisted by their neighbours: flooder %.0f at node 0, %.0f at node 1; forger %.0f at node 1, %.0f at node 2 (graylist below %d); rejected at node 0 %v, node 2 %v",
			nodes[0].g.PeerScores()[fh.ID()], nodes[1].g.PeerScores()[fh.ID()],
			nodes[1].g.PeerScores()[forger.h.ID()], nodes[2].g.PeerScores()[forger.h.ID()], GraylistThreshold,
			nodes[0].g.Rejected(), nodes[2].g.Rejected())
	}
	cancel()
	wg.Wait()
	for i, nd := range nodes {
		for p, s := range nd.g.PeerScores() {
			if p != fh.ID() && p != forger.h.ID() && s < 0 {
				t.Errorf("node %d scores honest peer %s at %.1f", i, p, s)
			}
		}
	}
	// The flood is refused by the rate limiter or, on a loaded machine,
	// dropped at the full validation queue (charged to the flooder's rate
	// all the same).
	flood := nodes[0].g.Rejected()
	if flood[ReasonRateLimited]+flood[ReasonQueueFull]+flood[ReasonThrottled] == 0 || nodes[2].g.Rejected()[ReasonBadSignature] == 0 {
		t.Errorf("rejections not counted: %v %v", nodes[0].g.Rejected(), nodes[2].g.Rejected())
	}
	seq := nodes[3].publish(t, "198.51.100.77")
	waitFor(t, 20*time.Second, "the honest sighting everywhere", func() bool {
		for _, nd := range nodes {
			if !nd.log.has(nodes[3].id(), seq) {
				return false
			}
		}
		return true
	})
}

// TestPartitionHeals: 10 nodes split 6 + 4 by connection gaters; each side
// spreads its own sightings; after healing every node holds all of them.
func TestPartitionHeals(t *testing.T) {
	const n, split = 10, 6
	logs := make([]*memLog, n)
	nodes := make([]*meshNode, n)
	for i := range nodes {
		logs[i] = newMemLog()
		nodes[i] = startMeshNode(t, nil, logs[i], Options{Log: logs[i]})
		for j := range i {
			connect(t, nodes[i].h, nodes[j].h)
		}
	}
	warmMesh(t, nodes, nodes[0])
	sideA, sideB := nodes[:split], nodes[split:]
	for _, a := range sideA {
		for _, b := range sideB {
			a.gater.BlockPeer(b.h.ID())
			b.gater.BlockPeer(a.h.ID())
			a.h.Network().ClosePeer(b.h.ID())
			b.h.Network().ClosePeer(a.h.ID())
		}
	}
	waitFor(t, 10*time.Second, "the partition", func() bool {
		for _, a := range sideA {
			for _, b := range sideB {
				if connected(a.h, b.h) || connected(b.h, a.h) {
					return false
				}
			}
		}
		return true
	})
	pa, pb := sideA[2], sideB[1]
	seqA := []uint64{pa.publish(t, "203.0.113.1"), pa.publish(t, "203.0.113.2")}
	seqB := []uint64{pb.publish(t, "198.51.100.1"), pb.publish(t, "198.51.100.2")}
	holds := func(nd *meshNode, pub *meshNode, seqs []uint64) bool {
		for _, s := range seqs {
			if !nd.log.has(pub.id(), s) {
				return false
			}
		}
		return true
	}
	waitFor(t, 30*time.Second, "each side's sightings on its side", func() bool {
		for _, nd := range sideA {
			if !holds(nd, pa, seqA) {
				return false
			}
		}
		for _, nd := range sideB {
			if !holds(nd, pb, seqB) {
				return false
			}
		}
		return true
	})
	for _, nd := range sideA {
		if nd.log.count(pb.id()) != 0 {
			t.Fatalf("a side-B sighting crossed the partition")
		}
	}
	for _, a := range sideA {
		for _, b := range sideB {
			a.gater.UnblockPeer(b.h.ID())
			b.gater.UnblockPeer(a.h.ID())
		}
	}
	for _, a := range sideA {
		for _, b := range sideB {
			connect(t, a.h, b.h)
		}
	}
	waitFor(t, 60*time.Second, "every node to hold every sighting after healing", func() bool {
		for _, nd := range nodes {
			if !holds(nd, pa, seqA) || !holds(nd, pb, seqB) {
				return false
			}
		}
		return true
	})
	for i, nd := range nodes {
		if d := nd.log.dupCount(); d != 0 {
			t.Errorf("node %d handled %d envelopes twice", i, d)
		}
	}
}
