package gossip

import (
	"sync"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/internal/refusal"
)

// The transport boundary (DESIGN rule 3): with a Roster, only members take
// part. A stranger (a peer whose ID is not on the roster: one that was
// never admitted, or is still joining) is refused at every door:
//
//   - anti-entropy: its /meshward/sync/1 streams are reset unserved;
//   - GossipSub: its subscriptions are recorded but never served. The
//     peer filter keeps it out of every mesh and refuses its GRAFT, IHAVE
//     and IWANT; and its application score, StrangerScore, is below
//     PublishThreshold even with every bonus the topics can give (capped
//     at topicScoreCap), so that neither our own (flood) publishes nor
//     floodsub-style forwarding reach it; yet well above
//     GraylistThreshold, so that what it sends is still validated and
//     counted rather than dropped unseen (until it earns a graylisting by
//     misbehaving, as a member would). Once admitted its score is an
//     ordinary one again and it joins the mesh at the next heartbeat.
//
// Every refusal is counted in meshward_transport_refused_total under the
// protocol (or topic) and one of the reasons below.

// Reasons the boundary refuses, the reason label of
// meshward_transport_refused_total for the gossip protocols and topics.
const (
	// RefusedNotMember: the peer is not on the roster.
	RefusedNotMember = "not_member"
	// RefusedBusy: the peer already has a session, or the node serves
	// its maximum.
	RefusedBusy = "busy"
	// RefusedBadSummary: an anti-entropy summary that does not decode or
	// lists more spans per origin than a puller sends.
	RefusedBadSummary = "bad_summary"
	// RefusedShuttingDown: the node is closing.
	RefusedShuttingDown = "shutting_down"
)

// StrangerScore is the application-specific GossipSub score of a peer that
// is not on the roster (see above and TestStrangerScoreBand).
const StrangerScore = PublishThreshold - topicScoreCap - 10

// member reports whether p may take part: always without a Roster.
func (g *Gossip) member(p peer.ID) bool {
	if g.opts.Roster == nil || p == g.h.ID() {
		return true
	}
	rv, ok := g.opts.Roster.(RosterVersioner)
	if !ok {
		return g.opts.Roster.IsMember(peerIDText(p))
	}
	return g.members.member(p, rv.RosterVersion(), func() bool { return g.opts.Roster.IsMember(peerIDText(p)) })
}

// RosterVersioner is a Roster that counts its changes: equal versions,
// equal rosters. Gossip then remembers each peer's membership until the
// version moves.
type RosterVersioner interface{ RosterVersion() uint64 }

// maxMemberMemo bounds the peers whose membership a node remembers:
// more than a mesh's members, so that every member and neighbour fits;
// IDs a stranger makes up past it are looked up each time, as before.
const maxMemberMemo = 4096

// memberMemo remembers the roster's answers by peer for one roster
// version. GossipSub scores each peer many times a heartbeat (mesh
// upkeep, gossip targets, every RPC's graylist check), each score asks
// the roster, and at rest these lookups were a tenth of a 500-node
// process's CPU. An answer is used only while the roster's version is
// the one it was looked up at or later: a version read before the
// lookup can only be older than the roster the answer came from, and a
// newer version empties the memo, so an admission or removal is seen at
// the next call after it.
type memberMemo struct {
	mu      sync.Mutex
	version uint64
	m       map[peer.ID]bool
}

// member returns the memo's answer for p at roster version v, or look's
// (then remembered).
func (mm *memberMemo) member(p peer.ID, v uint64, look func() bool) bool {
	mm.mu.Lock()
	switch {
	case mm.m != nil && v < mm.version:
		// Read before a change another call has seen: look it up.
		mm.mu.Unlock()
		return look()
	case mm.m == nil || v > mm.version:
		mm.m, mm.version = make(map[peer.ID]bool), v
	}
	is, ok := mm.m[p]
	mm.mu.Unlock()
	if ok {
		return is
	}
	is = look()
	mm.mu.Lock()
	if mm.version == v && len(mm.m) < maxMemberMemo {
		mm.m[p] = is
	}
	mm.mu.Unlock()
	return is
}

// peerIDs remembers the text (base58) of the peer IDs GossipSub asks
// about: the membership check runs for every message and every peer
// score, and encoding the ID each time was a large share of a busy
// node's CPU. Bounded: when full it starts over, so IDs a stranger makes
// up cost no memory, only the encoding they cost before. Shared by every
// node of a process (a simulated mesh's nodes ask about the same IDs).
var peerIDs = struct {
	sync.RWMutex
	m map[peer.ID]string
}{m: map[peer.ID]string{}}

// maxPeerIDs bounds peerIDs.
const maxPeerIDs = 16384

// peerIDText is p.String(), remembered.
func peerIDText(p peer.ID) string {
	peerIDs.RLock()
	s, ok := peerIDs.m[p]
	peerIDs.RUnlock()
	if ok {
		return s
	}
	s = p.String()
	peerIDs.Lock()
	if len(peerIDs.m) >= maxPeerIDs {
		clear(peerIDs.m)
	}
	peerIDs.m[p] = s
	peerIDs.Unlock()
	return s
}

// peerFilter is GossipSub's peer filter: members only, on every topic.
func (g *Gossip) peerFilter(p peer.ID, topic string) bool {
	if g.member(p) {
		return true
	}
	g.refused.Refuse(topic, RefusedNotMember, p, nil)
	return false
}

// memberSubscriptions counts the subscriptions strangers announce. It
// keeps them: a joining node announces its subscriptions once, before it
// is admitted, and must be served once it is.
type memberSubscriptions struct{ g *Gossip }

var _ pubsub.SubscriptionFilter = memberSubscriptions{}

func (memberSubscriptions) CanSubscribe(string) bool { return true }

func (f memberSubscriptions) FilterIncomingSubscriptions(p peer.ID, subs []*pb.RPC_SubOpts) ([]*pb.RPC_SubOpts, error) {
	if !f.g.member(p) {
		for _, s := range subs {
			if s.GetSubscribe() {
				f.g.refused.Refuse(s.GetTopicid(), RefusedNotMember, p, nil)
			}
		}
	}
	return subs, nil
}

// TransportRefusals counts what the boundary refused, by protocol (or
// topic) and reason; the node exports it with the other parts'.
func (g *Gossip) TransportRefusals() *refusal.Counter { return g.refused }
