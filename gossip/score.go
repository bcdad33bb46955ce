package gossip

import (
	"math"
	"net"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// Peer-scoring thresholds. A peer below GossipThreshold gets no gossip from
// us, below PublishThreshold none of our publishes, and below
// GraylistThreshold everything it sends is ignored.
const (
	GossipThreshold   = -100
	PublishThreshold  = -200
	GraylistThreshold = -400
)

// Weights of the score components we use.
const (
	// invalidWeight is multiplied by the square of a peer's (decaying) count
	// of Rejected messages: seven forgeries cross the graylist threshold.
	invalidWeight = -10
	// topicScoreCap bounds what a peer can earn on the topics (time in
	// mesh, first deliveries), so that no bonus lifts a stranger
	// (StrangerScore) to PublishThreshold.
	topicScoreCap = 50
	// ratePenalty is the application score lost per message dropped by the
	// rate limiter; it decays with penaltyHalfLife.
	ratePenalty     = 1.0
	penaltyHalfLife = time.Minute
)

// scoreParams returns GossipSub peer-score parameters for topics: invalid
// messages (Rejected by a validator) are penalised heavily, first deliveries
// earn a small capped bonus, mesh-delivery deficits are not penalised
// (sightings are sparse, so a quiet peer is not a bad one), and app is the
// application-specific score (the rate limiter's penalty). Addresses in
// 127.0.0.0/8 are exempt from the IP-colocation penalty so that local
// testnets, where every node shares one address, score normally. The
// counters decay every decayInterval (0: a second), by factors that give
// each its half-life whatever the interval.
func scoreParams(app func(peer.ID) float64, decayInterval time.Duration, topics ...string) (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	if decayInterval <= 0 {
		decayInterval = pubsub.DefaultDecayInterval
	}
	decay := func(d time.Duration) float64 {
		return pubsub.ScoreParameterDecayWithBase(d, decayInterval, pubsub.DefaultDecayToZero)
	}
	_, loop, _ := net.ParseCIDR("127.0.0.0/8")
	p := &pubsub.PeerScoreParams{
		Topics:                      make(map[string]*pubsub.TopicScoreParams, len(topics)),
		TopicScoreCap:               topicScoreCap,
		AppSpecificScore:            app,
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -5,
		IPColocationFactorThreshold: 10,
		IPColocationFactorWhitelist: []*net.IPNet{loop},
		BehaviourPenaltyWeight:      -1,
		BehaviourPenaltyThreshold:   10,
		BehaviourPenaltyDecay:       decay(10 * time.Minute),
		DecayInterval:               decayInterval,
		DecayToZero:                 pubsub.DefaultDecayToZero,
		RetainScore:                 10 * time.Minute,
	}
	for _, t := range topics {
		p.Topics[t] = &pubsub.TopicScoreParams{
			TopicWeight:                    1,
			TimeInMeshWeight:               0.01,
			TimeInMeshQuantum:              time.Second,
			TimeInMeshCap:                  300,
			FirstMessageDeliveriesWeight:   0.5,
			FirstMessageDeliveriesDecay:    decay(10 * time.Minute),
			FirstMessageDeliveriesCap:      100,
			InvalidMessageDeliveriesWeight: invalidWeight,
			InvalidMessageDeliveriesDecay:  decay(time.Hour),
		}
	}
	th := &pubsub.PeerScoreThresholds{
		GossipThreshold:             GossipThreshold,
		PublishThreshold:            PublishThreshold,
		GraylistThreshold:           GraylistThreshold,
		AcceptPXThreshold:           100,
		OpportunisticGraftThreshold: 5,
	}
	return p, th
}

// peerLimiter is a token bucket per forwarding peer, with a decaying count
// of the messages each bucket refused that feeds the peer's application
// score. It holds at most max buckets; when full it evicts a bucket that is
// full again (an idle peer), else the least recently used one.
type peerLimiter struct {
	limit rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	buckets map[peer.ID]*bucket
}

type bucket struct {
	lim      *rate.Limiter
	penalty  float64   // decaying count of refused messages
	decayed  time.Time // when penalty was last decayed
	lastUsed time.Time
}

func newPeerLimiter(limit rate.Limit, burst, max int) *peerLimiter {
	return &peerLimiter{limit: limit, burst: burst, max: max, buckets: make(map[peer.ID]*bucket)}
}

// allow takes a token from p's bucket, or records a refusal.
func (l *peerLimiter) allow(p peer.ID, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[p]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst), decayed: now}
		l.buckets[p] = b
	}
	b.lastUsed = now
	if b.lim.AllowN(now, 1) {
		return true
	}
	b.decay(now)
	b.penalty += ratePenalty
	return false
}

func (l *peerLimiter) evict(now time.Time) {
	var victim peer.ID
	var oldest time.Time
	for p, b := range l.buckets {
		if b.lim.TokensAt(now) >= float64(l.burst) && b.penalty < 1 {
			delete(l.buckets, p)
			return
		}
		if victim == "" || b.lastUsed.Before(oldest) {
			victim, oldest = p, b.lastUsed
		}
	}
	delete(l.buckets, victim)
}

// score is p's application-specific score: minus its decayed refusals.
func (l *peerLimiter) score(p peer.ID) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[p]
	if !ok {
		return 0
	}
	b.decay(time.Now())
	return -b.penalty
}

func (l *peerLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (b *bucket) decay(now time.Time) {
	if dt := now.Sub(b.decayed); dt > 0 {
		b.penalty *= math.Exp2(-dt.Seconds() / penaltyHalfLife.Seconds())
		b.decayed = now
	}
}

// gossipSubParams are GossipSub's parameters with a heartbeat every
// interval. What GossipSub counts in heartbeats to stand for a time is
// rescaled to keep that time: opportunistic grafting (a minute) and
// reconnecting direct peers (five minutes). The rest stays counted in
// heartbeats, and so lasts longer: the message cache (5 heartbeats, 3
// gossiped: a peer still gets by IWANT what it missed, over a longer
// window), the per-heartbeat allowances of IHAVE, IWANT and IDONTWANT
// from a peer (tighter per second), and how long an IDONTWANT is kept
// (3 heartbeats). Backoffs, the graft flood threshold and IWANT
// follow-ups are times, checked at heartbeats: later by up to one.
func gossipSubParams(interval time.Duration) pubsub.GossipSubParams {
	p := pubsub.DefaultGossipSubParams()
	base := p.HeartbeatInterval
	p.HeartbeatInterval = interval
	ticks := func(n uint64) uint64 {
		return max(1, uint64(math.Round(float64(n)*float64(base)/float64(interval))))
	}
	p.OpportunisticGraftTicks = ticks(p.OpportunisticGraftTicks)
	p.DirectConnectTicks = ticks(p.DirectConnectTicks)
	return p
}

// idontwantThreshold is the size from which a node that receives a
// message tells its mesh peers it has it (GossipSub's IDONTWANT;
// GossipSub's own threshold is 1 KB). The mesh's messages are small (a
// sighting some 500 bytes, a certified batch of one block a few KB):
// the IDONTWANT frame that would spare a peer one of them costs about
// what sending it does, and is sent to every mesh peer, most of which
// have sent theirs already. At 300 simulated nodes the IDONTWANTs of
// one certified batch were a third of the RPCs of an attack's burst.
// Larger batches and snapshots still get them.
const idontwantThreshold = 16 << 10

// Bounds of Options.MeshDegree: below 4 no outbound quota fits
// GossipSub's rule that it stay under half the degree, and above 12 a
// message is copied to each node a dozen times.
const (
	MinMeshDegree = 4
	MaxMeshDegree = 12
)

// meshParams sets p's mesh degree to d, with GossipSub's proportions:
// grafting below d-1, pruning above 1.5 d, half the peers kept by score
// and half of those outbound, and gossip (IHAVE) to at least d peers
// outside the mesh. For 6, GossipSub's D, its own values but Dhi (9,
// not 12) and Dscore (3, not 4).
func meshParams(p *pubsub.GossipSubParams, d int) {
	p.D, p.Dlo, p.Dhi = d, d-1, d+d/2
	p.Dscore = d / 2
	p.Dout = d/2 - 1
	p.Dlazy = d
}

// routerParams are the GossipSub parameters of o: its heartbeat
// (gossipSubParams), its mesh degree (meshParams), and IDONTWANT from
// idontwantThreshold.
func routerParams(o Options) pubsub.GossipSubParams {
	interval := o.RouterHeartbeat
	if interval == 0 {
		interval = pubsub.DefaultGossipSubParams().HeartbeatInterval
	}
	p := gossipSubParams(interval)
	if o.MeshDegree != 0 {
		meshParams(&p, o.MeshDegree)
	}
	if o.GossipTargets > 0 {
		p.Dlazy, p.GossipFactor = o.GossipTargets, 0
	}
	p.IDontWantMessageThreshold = idontwantThreshold
	return p
}
