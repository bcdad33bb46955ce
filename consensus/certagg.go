package consensus

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/consensus/certify"
)

// Aggregation of the voters' certificates. Each voter hands
// its certificate of its chain head to the other raft servers on the
// servers' topic (gossip.JoinServerCerts), which only raft servers
// subscribe to; every server keeps the latest certificate of each voter
// (agg.held). The leader's publisher then sends the edges one message
// per batch: the entries and every voter's certificate it holds that
// covers them (certify.Publisher). A chainsync answer carries the held
// certificates too, so an edge whose leader withholds still catches up
// from any server. Every server also notes the voters' certificates that
// reach the edges' topic (agg.seen): a voter whose certified index no
// majority covered there within certify.PublisherConfig.Fallback
// publishes its own certificate to the edges, as every voter did before
// (counted: AggregationStats.Fallbacks).
//
// Why a topic and not a stream to the leader: the certificates must
// reach every server (chainsync answers, and the next leader, which then
// needs no warm-up), a leader change needs no redirection, and GossipSub
// already authenticates the author and bounds and scores the senders.
// Edges stay out of the topic's mesh, so none of its traffic reaches
// them.

// ServerTopic is the servers' topic (gossip.Certified joined by
// gossip.JoinServerCerts).
type ServerTopic interface {
	PublishCertified(ctx context.Context, data []byte) error
	SetSubscribed(on bool) error
}

// ReasonNotAuthor: a certificate on the servers' topic signed by another
// node than the message's author (a voter hands on its own only).
const ReasonNotAuthor = "not_author"

// certAgg is the servers' shared certificates. The zero value is ready.
type certAgg struct {
	once     sync.Once
	held     *certify.Pool // heard on the servers' topic (and this node's own)
	seen     *certify.Pool // seen on the edges' topic
	mu       sync.Mutex
	refused  map[string]uint64
	withhold atomic.Bool // tests: the leader publishes nothing to the edges
	pub      atomic.Pointer[certify.Publisher]
}

func (a *certAgg) init() {
	a.once.Do(func() {
		a.held, a.seen, a.refused = certify.NewPool(), certify.NewPool(), map[string]uint64{}
	})
}

// serverCertsVerdict is HandleServerCerts's refusal.
type serverCertsVerdict = certifiedVerdict

// HandleServerCerts takes one message of the servers' topic from author
// from: certificates only, each signed by from, a voter of the raft
// configuration, for this mesh, with a good signature, and (when this
// server holds the chain at that index) on its chain. The certificates
// are kept; the error, when not nil, has Reason() and Ignore(), and the
// refusal is counted (AggregationStats.Refused).
func (c *Consensus) HandleServerCerts(_ context.Context, from peer.ID, data []byte) error {
	c.agg.init()
	refuse := func(reason string, ignore bool, err error) error {
		c.agg.mu.Lock()
		c.agg.refused[reason]++
		c.agg.mu.Unlock()
		return &serverCertsVerdict{reason: reason, ignore: ignore, err: err}
	}
	var m certify.Message
	if err := m.UnmarshalBinary(data); err != nil {
		return refuse(certify.ReasonMalformed, false, err)
	}
	if len(m.Entries) > 0 || len(m.Certs) == 0 {
		return refuse(certify.ReasonMalformed, false, fmt.Errorf("%d entries, %d certificates: want certificates only", len(m.Entries), len(m.Certs)))
	}
	mesh := c.MeshID()
	voters := certify.NewVoters(c.configVoters()...)
	for i := range m.Certs {
		ct := &m.Certs[i]
		switch {
		case ct.Mesh != mesh:
			return refuse(certify.ReasonWrongMesh, false, fmt.Errorf("certificate %d from %s: mesh %q", i, from, ct.Mesh))
		case ct.SignerID() != from.String():
			return refuse(ReasonNotAuthor, false, fmt.Errorf("certificate %d from %s signed by %s", i, from, ct.SignerID()))
		case !voters.Contains(from.String()):
			// A voter removed while its message travelled is an honest race.
			return refuse(certify.ReasonNotVoter, true, fmt.Errorf("certificate %d from %s, no voter", i, from))
		case !ct.Verify():
			return refuse(certify.ReasonBadSignature, false, fmt.Errorf("certificate %d from %s", i, from))
		}
		if h, ok := c.chainHashAt(ct.Index); ok && h != ct.Hash {
			return refuse(certify.ReasonChainMismatch, false, fmt.Errorf("certificate %d from %s: hash at %d is not this server's", i, from, ct.Index))
		}
	}
	added := false
	for _, ct := range m.Certs {
		added = c.agg.held.Add(ct) || added
	}
	if p := c.agg.pub.Load(); added && p != nil && c.IsLeader() {
		p.Wake()
	}
	return nil
}

// chainHashAt is the chain hash at index i, when this node holds it.
func (c *Consensus) chainHashAt(i uint64) (certify.Hash, bool) {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.chain.hashAt(i)
}

// HeldCerts returns the voters' certificates this server holds for
// indexes up to upTo that are on its chain, one per voter of the set
// after its head (chainsync.Holder, the leader's publisher).
func (c *Consensus) HeldCerts(upTo uint64) []certify.Cert {
	c.agg.init()
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	ch := &c.fsm.chain
	var out []certify.Cert
	for _, ct := range c.agg.held.Certs(ch.head.Voters) {
		if h, ok := ch.hashAt(ct.Index); ok && ct.Index <= upTo && h == ct.Hash {
			out = append(out, ct)
		}
	}
	return out
}

// seenOnTopic notes the voters' certificates of a message of the edges'
// topic that this server checked.
func (c *Consensus) seenOnTopic(certs []certify.Cert) {
	c.agg.init()
	for _, ct := range certs {
		if h, ok := c.chainHashAt(ct.Index); !ok || h == ct.Hash {
			c.agg.seen.Add(ct)
		}
	}
}

// AggregationStats are the counts of the certificates' aggregation.
type AggregationStats struct {
	certify.PublisherStats
	// Refused counts the servers' topic's refusals, by reason.
	Refused map[string]uint64
}

// Aggregation returns the counts of this node's publisher and servers'
// topic.
func (c *Consensus) Aggregation() AggregationStats {
	c.agg.init()
	var s AggregationStats
	c.edgeMu.Lock()
	pub := c.pub
	c.edgeMu.Unlock()
	if pub != nil {
		s.PublisherStats = pub.Stats()
	}
	c.agg.mu.Lock()
	s.Refused = maps.Clone(c.agg.refused)
	c.agg.mu.Unlock()
	return s
}

// followServers keeps this node subscribed to the servers' topic while
// it is a raft server (voter or standby), and not while it is an edge:
// it looks when the configuration changes (configChanged), and retries a
// failed change every followRetry.
func (c *Consensus) followServers(ctx context.Context, t ServerTopic) {
	on := false
	for {
		changed := c.configChanged()
		var retry <-chan time.Time
		want := c.knownServer(c.cfg.LocalID) && !c.IsEdge()
		if want != on {
			if err := t.SetSubscribed(want); err != nil {
				c.log.Debug("servers' topic subscription", "on", want, "err", err)
				retry = time.After(followRetry)
			} else {
				on = want
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-retry:
		}
	}
}

// followRetry is how soon followServers tries again after its
// subscription change failed.
const followRetry = 250 * time.Millisecond

var (
	serverCertsRefusedDesc = prometheus.NewDesc("meshward_servercerts_refused_total",
		"Messages of the servers' topic (voters' certificates) this server refused, by reason.", []string{"reason"}, nil)
	certifiedPublishedDesc = prometheus.NewDesc("meshward_certified_published_total",
		"Messages this server published on the certified topic.", nil, nil)
	certifiedFallbackDesc = prometheus.NewDesc("meshward_certified_fallback_total",
		"Own certificates this voter published on the certified topic because no majority covered them there in time.", nil, nil)
)

func describeAggregation(ch chan<- *prometheus.Desc) {
	ch <- serverCertsRefusedDesc
	ch <- certifiedPublishedDesc
	ch <- certifiedFallbackDesc
}

func (c *Consensus) collectAggregation(ch chan<- prometheus.Metric) {
	s := c.Aggregation()
	for reason, n := range s.Refused {
		ch <- prometheus.MustNewConstMetric(serverCertsRefusedDesc, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(certifiedPublishedDesc, prometheus.CounterValue, float64(s.Messages))
	ch <- prometheus.MustNewConstMetric(certifiedFallbackDesc, prometheus.CounterValue, float64(s.Fallbacks))
}
