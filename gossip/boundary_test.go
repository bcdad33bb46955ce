package gossip

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

// Attacks on the transport boundary by strangers, against real hosts on
// loopback: each fails and is counted under a named reason.

// pullRaw opens a sync session from h to server with summary req and
// returns the envelopes it got, and the error that ended the session
// early, if any.
func pullRaw(t *testing.T, h host.Host, server host.Host, req syncRequest) ([][]byte, error) {
	t.Helper()
	h.Peerstore().AddAddrs(server.ID(), server.Addrs(), time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := h.NewStream(ctx, server.ID(), SyncProtocol)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(20 * time.Second))
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(st)
	if err := writeFrame(w, b); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	_ = st.CloseWrite()
	r := bufio.NewReader(st)
	var got [][]byte
	for {
		raw, err := readFrame(r, intel.MaxEnvelopeSize)
		if err != nil {
			return got, err
		}
		if len(raw) == 0 {
			return got, nil
		}
		got = append(got, raw)
	}
}

// idle waits until server serves no session to p, so that p's next pull
// is not refused as busy.
func idle(t *testing.T, server *meshNode, p host.Host) {
	t.Helper()
	waitFor(t, 10*time.Second, "the previous session to end", func() bool {
		s := server.g.sync
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.serving[p.ID()]
	})
}

// countingLog counts the stored envelopes anti-entropy examines.
type countingLog struct {
	*memLog
	examined atomic.Int64
}

func (l *countingLog) ScanEnvelopes(origin string, after uint64, fn func([]byte) error) error {
	return l.memLog.ScanEnvelopes(origin, after, func(raw []byte) error {
		l.examined.Add(1)
		return fn(raw)
	})
}

// TestStrangerSyncPullRefused: a stranger's /meshward/sync/1 stream is
// reset unserved and counted not_member, while a member's pull with the
// same summary gets every envelope.
func TestStrangerSyncPullRefused(t *testing.T) {
	_, originKey := newKey(t)
	origin := intel.NodeID(originKey.Public().(ed25519.PublicKey))
	member, _ := newTestHost(t)
	strangerHost, _ := newTestHost(t)
	log := newMemLog()
	for seq := uint64(1); seq <= 5; seq++ {
		log.put(origin, seq, seal(t, originKey, seq, time.Now()))
	}
	server := startMeshNode(t, nil, log, Options{Log: log, Roster: rosterSet{origin: true, member.ID().String(): true}})

	got, err := pullRaw(t, strangerHost, server.h, syncRequest{Max: 100})
	if err == nil || len(got) != 0 {
		t.Fatalf("stranger's pull: %d envelopes, err %v; want none and a reset", len(got), err)
	}
	refused := server.g.TransportRefusals()
	waitFor(t, 10*time.Second, "the stranger's pull counted", func() bool {
		return refused.Count(string(SyncProtocol), RefusedNotMember) == 1
	})
	got, err = pullRaw(t, member, server.h, syncRequest{Max: 100})
	if err != nil || len(got) != 5 {
		t.Fatalf("member's pull: %d envelopes, err %v; want 5", len(got), err)
	}
}

// TestSyncScanBounded: a crafted summary cannot make the server walk its
// store. Claiming to hold everything but the first envelope of an origin
// costs the server two stored envelopes examined, not the whole origin;
// a summary with more spans than a puller sends is refused.
func TestSyncScanBounded(t *testing.T) {
	_, originKey := newKey(t)
	origin := intel.NodeID(originKey.Public().(ed25519.PublicKey))
	member, _ := newTestHost(t)
	const stored = 3000
	ml := newMemLog()
	for seq := uint64(1); seq <= stored; seq++ {
		ml.put(origin, seq, seal(t, originKey, seq, time.Now()))
	}
	log := &countingLog{memLog: ml}
	server := startMeshNode(t, nil, ml, Options{Log: log, Roster: rosterSet{origin: true, member.ID().String(): true}})

	// The member's connection makes the server read its own log once
	// (to pull from the member, which serves nothing): not the session's
	// cost.
	connect(t, member, server.h)
	waitFor(t, 10*time.Second, "the server's own pull", func() bool { return server.g.SyncStats().PullsFailed >= 1 })
	log.examined.Store(0)

	crafted := syncRequest{Max: 100, Have: map[string][]span{origin: {{Lo: 2, Hi: ^uint64(0)}}}}
	got, err := pullRaw(t, member, server.h, crafted)
	if err != nil || len(got) != 1 {
		t.Fatalf("crafted summary: %d envelopes, err %v; want the one the summary lacks", len(got), err)
	}
	if n := log.examined.Load(); n > 2 {
		t.Errorf("crafted summary made the server examine %d of %d stored envelopes, want at most 2", n, stored)
	}

	// Every other envelope held: 64 gaps of one, each costs two looks.
	idle(t, server, member)
	log.examined.Store(0)
	var holes []span
	for i := range uint64(syncMaxSpans) {
		holes = append(holes, span{Lo: 2*i + 2, Hi: 2*i + 2})
	}
	holes[len(holes)-1].Hi = ^uint64(0)
	got, err = pullRaw(t, member, server.h, syncRequest{Max: 1000, Have: map[string][]span{origin: holes}})
	if err != nil || len(got) != syncMaxSpans {
		t.Fatalf("summary with holes: %d envelopes, err %v; want %d", len(got), err, syncMaxSpans)
	}
	if n := log.examined.Load(); n > 2*syncMaxSpans {
		t.Errorf("summary with %d holes made the server examine %d envelopes, want at most %d", syncMaxSpans, n, 2*syncMaxSpans)
	}

	// One span too many is refused unread.
	idle(t, server, member)
	log.examined.Store(0)
	holes = append(holes[:len(holes)-1], span{Lo: 500, Hi: 500}, span{Lo: 502, Hi: ^uint64(0)})
	if got, err := pullRaw(t, member, server.h, syncRequest{Max: 1000, Have: map[string][]span{origin: holes}}); err == nil || len(got) != 0 {
		t.Fatalf("summary of %d spans: %d envelopes, err %v; want a refusal", len(holes), len(got), err)
	}
	waitFor(t, 10*time.Second, "the oversized summary counted", func() bool {
		return server.g.TransportRefusals().Count(string(SyncProtocol), RefusedBadSummary) == 1
	})
	if n := log.examined.Load(); n != 0 {
		t.Errorf("a refused summary made the server examine %d envelopes", n)
	}
}

// TestSyncRefusesBeyondRetention: anti-entropy refuses, as stale, an
// envelope older than the node's retention, and takes a younger one.
func TestSyncRefusesBeyondRetention(t *testing.T) {
	_, memberKey := newKey(t)
	memberID := intel.NodeID(memberKey.Public().(ed25519.PublicKey))
	now := time.Now()
	rogue := syncRogue(t, [][]byte{
		seal(t, memberKey, 1, now.Add(-48*time.Hour)),
		seal(t, memberKey, 2, now.Add(-12*time.Hour)),
	})
	log := newMemLog()
	victim := startMeshNode(t, nil, log, Options{Log: log, Roster: rosterSet{memberID: true}, SyncMaxAge: 24 * time.Hour})
	connect(t, victim.h, rogue) // the connection triggers a session
	waitFor(t, 15*time.Second, "the old envelope refused as stale", func() bool {
		return victim.g.SyncRejected()[ReasonStale] == 1 && victim.g.SyncAccepted() == 1
	})
	if log.has(memberID, 1) || !log.has(memberID, 2) {
		t.Errorf("handler holds %v; want only the envelope within retention", log.envs)
	}
}

// TestStrangerReceivesNoSightings: a stranger that joins the topic and
// subscribes is counted and gets nothing a member publishes, while a
// member does.
func TestStrangerReceivesNoSightings(t *testing.T) {
	pubKey, _ := newKey(t)
	memberKey, _ := newKey(t)
	roster := rosterSet{
		must(peer.IDFromPrivateKey(pubKey)).String():    true,
		must(peer.IDFromPrivateKey(memberKey)).String(): true,
	}
	pl, ml := newMemLog(), newMemLog()
	pub := startMeshNode(t, pubKey, pl, Options{Roster: roster})
	member := startMeshNode(t, memberKey, ml, Options{Roster: roster})
	connect(t, member.h, pub.h)

	strangerHost, _ := newTestHost(t)
	topic := bareJoin(t, strangerHost, DefaultTopic)
	sub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	got := make(chan *intel.Envelope, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if env, err := intel.Open(m.Data); err == nil {
				got <- env
			}
		}
	}()
	connect(t, strangerHost, pub.h)
	refused := pub.g.TransportRefusals()
	waitFor(t, 10*time.Second, "the stranger's subscription counted", func() bool {
		return refused.Count(DefaultTopic, RefusedNotMember) >= 1
	})
	waitFor(t, 10*time.Second, "the stranger in the publisher's topic", func() bool { return len(pub.g.Peers()) == 2 })

	seq := pub.publish(t, "198.51.100.7")
	waitFor(t, 20*time.Second, "the member's copy", func() bool { return ml.has(pub.id(), seq) })
	select {
	case env := <-got:
		t.Fatalf("the stranger received seq %d from %s", env.Seq, env.OriginID())
	case <-time.After(2 * time.Second): // generous: the member had it already
	}
}

// TestStrangerScoreBand: whatever a stranger earns on the topics, its
// score stays below PublishThreshold (none of our publishes reach it), and
// without penalties it stays above GraylistThreshold (what it sends is
// still validated and counted).
func TestStrangerScoreBand(t *testing.T) {
	params, th := scoreParams(func(peer.ID) float64 { return 0 }, 0, DefaultTopic, DefaultHeartbeatTopic, DefaultIndicatorTopic)
	if best := StrangerScore + params.TopicScoreCap; params.TopicScoreCap <= 0 || best >= th.PublishThreshold {
		t.Errorf("a stranger can reach %v (topic cap %v), not below the publish threshold %v", best, params.TopicScoreCap, th.PublishThreshold)
	}
	if StrangerScore <= th.GraylistThreshold {
		t.Errorf("StrangerScore %v is not above the graylist threshold %v", float64(StrangerScore), th.GraylistThreshold)
	}
}

// TestGaps: the ranges a server scans for a summary are exactly what the
// puller lacks below the high-water mark, at most one more than its spans.
func TestGaps(t *testing.T) {
	const inf = ^uint64(0)
	for _, c := range []struct {
		have []span
		hw   uint64
		want []span
	}{
		{nil, 0, nil},
		{nil, 5, []span{{1, 5}}},
		{[]span{{1, 5}}, 5, nil},
		{[]span{{2, inf}}, 9, []span{{1, 1}}},
		{[]span{{1, 2}, {4, 4}, {7, 8}}, 10, []span{{3, 3}, {5, 6}, {9, 10}}},
		{[]span{{3, 4}}, 2, []span{{1, 2}}},
		{[]span{{1, 1}, {20, 30}}, 10, []span{{2, 10}}},
		{[]span{{5, 6}, {1, 2}, {2, 3}}, 8, []span{{4, 4}, {7, 8}}}, // unsorted, overlapping
	} {
		got := gaps(normalize(c.have), c.hw)
		if !slices.Equal(got, c.want) {
			t.Errorf("gaps(%v, %d) = %v, want %v", c.have, c.hw, got, c.want)
		}
	}
}

// The membership memo asks the roster once per peer and roster version:
// a change of the roster (a new version) is seen at the next call, a
// version read before a change another call has seen is looked up
// afresh and not remembered, and the memo holds at most maxMemberMemo
// peers.
func TestMemberMemo(t *testing.T) {
	var mm memberMemo
	looks := 0
	look := func(v bool) func() bool { return func() bool { looks++; return v } }
	a, b := peer.ID("a"), peer.ID("b")
	for range 3 {
		if !mm.member(a, 1, look(true)) {
			t.Fatal("member at version 1 refused")
		}
	}
	if looks != 1 {
		t.Fatalf("3 calls at one version asked the roster %d times, want 1", looks)
	}
	// Removed: the roster's version moved.
	if mm.member(a, 2, look(false)) || looks != 2 {
		t.Fatalf("after a change the memo answered from the old version (looks %d)", looks)
	}
	// A caller that read version 1 before the change: asks the roster,
	// and its answer is not remembered for version 2.
	if !mm.member(b, 1, look(true)) || looks != 3 {
		t.Fatalf("a stale version was answered from the memo (looks %d)", looks)
	}
	if mm.member(b, 2, look(false)) || looks != 4 {
		t.Fatalf("a stale caller's answer was kept for the new version (looks %d)", looks)
	}
	for i := range maxMemberMemo + 100 {
		mm.member(peer.ID(fmt.Sprint(i)), 3, look(false))
	}
	if n := len(mm.m); n > maxMemberMemo {
		t.Fatalf("memo holds %d peers, bound %d", n, maxMemberMemo)
	}
}
