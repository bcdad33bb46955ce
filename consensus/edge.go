package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/consensus/certify"
	"github.com/meshward/meshward/consensus/certify/chainsync"
)

// The edge (servers.go says who is one). Its FSM is the servers' FSM
// code, driven by a certify.Edge instead of raft: entries and voter
// certificates arrive on the certified GossipSub topic (HandleCertified;
// every server runs a certify.Publisher, the leader's sends the entries),
// gaps are filled over chainsync from a voter, and an edge that has
// nothing yet, or has fallen behind the servers' recent entries, installs
// a snapshot whose manifest a majority of the voters signed
// (edge_snapshot.go). Each certified entry goes through fsm.ApplyBatch in
// chain order, so an edge's state is byte for byte a server's at the same
// index.
//
// What it applied is persisted as a raft snapshot in the node's snapshot
// store (every few seconds and at Close): a restarted edge's raft restores
// it into the FSM, and the edge resumes from its chain head. When the
// leader makes the edge a standby (servers.go), raft takes over: the FSM
// skips the entries it holds already (certChain.skip), so nothing is
// applied twice and nothing applied is lost.

// CertifiedTopic is the GossipSub topic certified entries travel on
// (gossip.Certified).
type CertifiedTopic interface {
	PublishCertified(ctx context.Context, data []byte) error
}

// edgeRunner drives this node's FSM as an edge.
type edgeRunner struct {
	c        *Consensus
	e        *certify.Edge
	kick     chan struct{}
	promoted atomic.Bool
	// needSnapshot: the edge has no state yet, or the entries it needs
	// are no longer kept: it catches up from a certified snapshot.
	needSnapshot atomic.Bool

	mu        sync.Mutex // guards the rest
	voters    certify.Voters
	persisted uint64
	// next is the position, among the voters, of the one this edge
	// asks first. It starts where the node's ID hashes to, so that the
	// edges spread over the voters, and moves on only when that voter
	// fails the edge (rotate): an edge that asked each voter in turn
	// held a connection to every voter, and past the connection
	// manager's high water a voter of a large mesh trimmed edges'
	// connections that their next poll dialed again.
	next int
}

// startEdge makes this node an edge of mesh, anchored on its own chain
// head if it holds one (a restart), else on voters (the voter set the
// server that admitted it named): it then starts from a certified
// snapshot. Idempotent.
func (c *Consensus) startEdge(mesh string, voters []string) error {
	c.edgeMu.Lock()
	defer c.edgeMu.Unlock()
	if c.edge.Load() != nil {
		return nil
	}
	if !validMeshID(mesh) {
		return fmt.Errorf("start edge: mesh ID %q", mesh)
	}
	r := &edgeRunner{c: c, kick: make(chan struct{}, 1), next: stickyStart(c.h.ID())}
	anchor, err := c.ChainHead()
	if err != nil {
		if len(voters) == 0 {
			return errors.New("start edge: the server named no voters")
		}
		anchor = certify.Anchor{Hash: certify.GenesisHash, Voters: certify.NewVoters(voters...)}
		r.needSnapshot.Store(true)
	}
	e, err := certify.NewEdge(certify.Config{Mesh: mesh, Anchor: anchor, Apply: r.apply, Restore: r.restore})
	if err != nil {
		return fmt.Errorf("start edge: %w", err)
	}
	r.e = e
	r.voters = anchor.Voters
	r.persisted = anchor.Index
	c.allowServers(anchor.Voters)
	c.edge.Store(r)
	if !c.group.Go(r.run) {
		return ErrClosed
	}
	return nil
}

// resumeEdge restarts the edge of a member that was one before a
// restart: on the roster, in no raft configuration, with a chain head
// restored from its persisted state.
func (c *Consensus) resumeEdge() {
	mesh := c.MeshID()
	if mesh == "" || c.inConfig() || !c.IsMember(c.cfg.LocalID) {
		return
	}
	if _, err := c.ChainHead(); err != nil {
		return
	}
	if err := c.startEdge(mesh, nil); err != nil {
		c.log.Warn("resume as an edge", "err", err)
		return
	}
	c.log.Info("resumed as an edge", "index", c.edge.Load().e.Applied().Index)
}

// apply is the edge's Apply: certified entries into the FSM.
func (r *edgeRunner) apply(es []certify.Entry) error {
	logs := make([]*raft.Log, len(es))
	for i, en := range es {
		logs[i] = &raft.Log{Index: en.Index, Term: en.Term, Type: en.Type, Data: en.Data}
	}
	r.c.fsm.ApplyBatch(logs)
	for _, en := range es {
		if en.Type == raft.LogConfiguration {
			if v, err := certify.ConfigVoters(en.Data); err == nil {
				r.setVoters(v)
			}
		}
	}
	return nil
}

// restore is the edge's Restore: a certified snapshot replaces the state.
func (r *edgeRunner) restore(state []byte) error {
	if r.promoted.Load() {
		return errors.New("raft drives this node's state now")
	}
	if err := r.c.fsm.Restore(io.NopCloser(bytes.NewReader(state))); err != nil {
		return err
	}
	voters, _ := r.c.chainServers()
	r.setVoters(voters)
	return nil
}

// setVoters records the voter set in force: the servers the edge asks,
// and the peers that may open raft streams to it should it be promoted.
func (r *edgeRunner) setVoters(v []string) {
	r.mu.Lock()
	changed := !r.voters.Equal(v)
	r.voters = certify.NewVoters(v...)
	r.mu.Unlock()
	if changed {
		r.c.allowServers(v)
	}
}

// servers are the voters to ask, this node left out, starting with the
// one this edge sticks to.
func (r *edgeRunner) servers() []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []peer.ID
	for _, v := range r.voters {
		if p, err := peer.Decode(v); err == nil && p != r.c.h.ID() {
			out = append(out, p)
		}
	}
	if len(out) > 0 {
		k := r.next % len(out)
		out = append(out[k:], out[:k]...)
	}
	return out
}

// rotate makes the edge ask the next voter first from now on: the one it
// asked failed it (no answer, or an answer that left a gap it asked for
// unfilled).
func (r *edgeRunner) rotate() {
	r.mu.Lock()
	r.next++
	r.mu.Unlock()
}

// stickyStart is where among the voters an edge with ID id starts.
func stickyStart(id peer.ID) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() & 0xffff)
}

func (r *edgeRunner) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run fills gaps and persists, until the node is promoted or closes.
func (r *edgeRunner) run(ctx context.Context) {
	c := r.c
	t := time.NewTicker(c.cfg.EdgeSyncInterval)
	defer t.Stop()
	pt := time.NewTicker(c.cfg.EdgePersistInterval)
	defer pt.Stop()
	r.wake()
	var retryAt, polled time.Time // after a failure, wakes wait until retryAt
	var retry <-chan time.Time    // fires at retryAt
	failures := 0
	admitted := false
	// Only the persist ticker and the close persist: no other wake (a
	// sync tick, a certified message that shows a gap, a configuration
	// change, a retry) does.
	persist := func() {
		if err := r.persist(); err != nil {
			c.log.Warn("persist the edge's state", "err", err)
		}
	}
	changed := c.configChanged()
	for {
		select {
		case <-ctx.Done():
			persist()
			return
		case <-t.C:
		case <-pt.C:
			persist()
			continue
		case <-r.kick:
		case <-retry:
			retry = nil
		case <-changed:
		}
		// The configuration as the raft gate last read it: it follows
		// raft's within moments of a change and wakes this loop then
		// (asked for before it is read, so that no change is missed).
		changed = c.configChanged()
		if c.knownServer(c.cfg.LocalID) {
			r.promoted.Store(true)
			c.gate.bump() // the servers' topic subscription looks again
			c.log.Info("this edge is a raft server now: raft drives its state", "applied", r.e.Applied().Index)
			return
		}
		if time.Now().Before(retryAt) {
			continue
		}
		// Until it is on its own roster an edge polls at every wake: the
		// entry that admitted it may be certified after its catch-up, and
		// published before its GossipSub meshes take it in (a heartbeat
		// later); nothing else would bring it before the next poll, or
		// the next commit.
		admitted = admitted || c.IsMember(c.cfg.LocalID)
		poll := !admitted || time.Since(polled) >= time.Duration(c.edgePoll.Load())
		if poll {
			polled = time.Now()
		}
		if r.step(ctx, poll) {
			failures, retryAt, retry = 0, time.Time{}, nil
		} else {
			failures++
			d := edgeRetryDelay(c.cfg.EdgeSyncInterval, failures)
			retryAt, retry = time.Now().Add(d), time.After(d)
		}
	}
}

// edgeRetryDelay is how long an edge whose sync failed failures times in
// a row waits before it tries again: from twice its sync interval, at
// most DefaultEdgeSyncInterval, doubling up to 5 s. A sync interval
// slower than the default (a testnet's idle edges) paces the ticks, not
// the retries, which wake the edge on their own.
func edgeRetryDelay(sync time.Duration, failures int) time.Duration {
	return min(min(sync, DefaultEdgeSyncInterval)<<min(failures, 8), 5*time.Second)
}

// step catches up from a snapshot if needed, then fetches the first gap
// (or, when poll, what follows the head) from a voter; false when it
// failed (the caller backs off).
func (r *edgeRunner) step(ctx context.Context, poll bool) bool {
	c := r.c
	if r.needSnapshot.Load() {
		actx, cancel := context.WithTimeout(ctx, snapshotTimeout)
		err := r.catchUpFromSnapshot(actx)
		cancel()
		if err != nil {
			c.edgeSyncFailures.Add(1)
			c.log.Debug("edge: catch up from a certified snapshot", "err", err)
			return false
		}
		c.edgeSnapshots.Add(1)
		r.needSnapshot.Store(false)
		poll = true // what was committed since the snapshot
	}
	from := r.e.Applied().Index + 1
	if g, ok := r.e.NextGap(); ok {
		from = g.From
	} else if !poll {
		return true
	}
	for _, s := range r.servers() {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		m, err := chainsync.Fetch(actx, c.h, s, from, certify.MaxMessageEntries)
		cancel()
		if errors.Is(err, chainsync.ErrTrimmed) {
			r.needSnapshot.Store(true)
			r.wake()
			return true
		}
		if err != nil {
			c.edgeSyncFailures.Add(1)
			c.log.Debug("edge: fetch entries", "from", from, "server", s, "err", err)
			r.rotate()
			continue
		}
		c.edgeFetches.Add(1)
		before := r.e.Applied().Index
		r.offer(&m)
		if g, ok := r.e.NextGap(); (ok && g.From <= from) || (r.e.Applied().Index == before && r.e.Pending() > 0) {
			// The gap asked for is still open, or what waits still
			// lacks its certificates: ask another voter next time.
			r.rotate()
		}
		if len(m.Entries) > 0 {
			r.wake() // there may be more
		}
		return true
	}
	return false
}

// offer hands a message to the edge and returns the verdict on it: nil
// when something in it was taken, else the worst refusal.
func (r *edgeRunner) offer(m *certify.Message) error {
	var worst error
	took := false
	note := func(err error) {
		if err == nil {
			took = true
			return
		}
		reason := certify.ReasonOf(err)
		if reason == certify.ReasonTooFarAhead {
			r.needSnapshot.Store(true)
			r.wake()
		}
		if worst == nil || (ignorable(certify.ReasonOf(worst)) && !ignorable(reason)) {
			worst = err
		}
	}
	for _, en := range m.Entries {
		note(r.e.AddEntry(en))
	}
	for _, ct := range m.Certs {
		note(r.e.AddCert(ct))
	}
	if _, ok := r.e.NextGap(); ok {
		r.wake()
	}
	if worst != nil && (!took || !ignorable(certify.ReasonOf(worst))) {
		return worst
	}
	return nil
}

// ignorable reports whether a refusal is what honest senders cause
// (races, repeats, a full buffer) rather than a sign of forgery.
func ignorable(reason string) bool {
	switch reason {
	case certify.ReasonOld, certify.ReasonDuplicate, certify.ReasonTooFarAhead, certify.ReasonBufferFull,
		certify.ReasonCertEvicted, certify.ReasonHalted:
		return true
	}
	return false
}

// persist writes the FSM state to the snapshot store when the edge
// applied more since the last time: a restart's raft restores it.
func (r *edgeRunner) persist() error {
	if r.promoted.Load() {
		return nil
	}
	c := r.c
	s, err := c.fsm.Snapshot()
	if err != nil {
		return err
	}
	fs := s.(*fsmSnapshot)
	defer fs.Release()
	ch := fs.chain
	r.mu.Lock()
	done := ch == nil || ch.Index == 0 || ch.Index == r.persisted || len(ch.Voters) == 0
	r.mu.Unlock()
	if done {
		return nil
	}
	var conf raft.Configuration
	for _, id := range certify.NewVoters(append(slices.Clone(ch.Servers), ch.Voters...)...) {
		sf := raft.Nonvoter
		if slices.Contains(ch.Voters, id) {
			sf = raft.Voter
		}
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: sf, ID: raft.ServerID(id), Address: raft.ServerAddress(id)})
	}
	sink, err := c.snaps.Create(raft.SnapshotVersionMax, ch.Index, ch.Term, conf, ch.Index, c.trans)
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	if err := fs.Persist(sink); err != nil {
		return err
	}
	r.mu.Lock()
	r.persisted = ch.Index
	r.mu.Unlock()
	return nil
}

// certifiedVerdict is HandleCertified's refusal: a reason, and whether
// GossipSub should ignore the message (an honest race) or reject it.
type certifiedVerdict struct {
	reason string
	ignore bool
	err    error
}

func (v *certifiedVerdict) Error() string {
	return fmt.Sprintf("certified message: %s: %v", v.reason, v.err)
}
func (v *certifiedVerdict) Unwrap() error { return v.err }

// Reason is the refusal's reason (a certify reason, or malformed).
func (v *certifiedVerdict) Reason() string { return v.reason }

// Ignore reports whether the message is to be dropped without blame.
func (v *certifiedVerdict) Ignore() bool { return v.ignore }

// HandleCertified takes one message of the certified topic, from a
// roster member: on an edge it goes to the certify.Edge (each refusal
// counted there by reason); on a server, whose raft delivers the same
// entries, its certificates are checked so that forgeries are not
// relayed. The error, when not nil, has Reason() and Ignore().
func (c *Consensus) HandleCertified(_ context.Context, from peer.ID, data []byte) error {
	var m certify.Message
	if err := m.UnmarshalBinary(data); err != nil {
		c.certifiedRefused(certify.ReasonMalformed)
		return &certifiedVerdict{reason: certify.ReasonMalformed, err: err}
	}
	if r := c.edge.Load(); r != nil && !r.promoted.Load() {
		if err := r.offer(&m); err != nil {
			reason := certify.ReasonOf(err)
			if reason == "" {
				reason = "apply_failed"
			}
			return &certifiedVerdict{reason: reason, ignore: ignorable(reason), err: err}
		}
		return nil
	}
	c.agg.init()
	mesh := c.MeshID()
	for i := range m.Certs {
		ct := &m.Certs[i]
		reason := ""
		switch {
		case ct.Mesh != mesh:
			reason = certify.ReasonWrongMesh
		case c.agg.held.Has(ct):
			// Checked on the servers' topic already (the leader hands on
			// the voters' certificates every server heard there).
		case !ct.Verify():
			reason = certify.ReasonBadSignature
		}
		if reason != "" {
			c.certifiedRefused(reason)
			return &certifiedVerdict{reason: reason, err: fmt.Errorf("certificate %d from %s", i, from)}
		}
	}
	c.seenOnTopic(m.Certs)
	return nil
}

// certifiedRefused counts a server's refusal of a certified message.
func (c *Consensus) certifiedRefused(reason string) {
	c.edgeMu.Lock()
	c.certRefused[reason]++
	c.edgeMu.Unlock()
}

// AttachCertified starts publishing this node's certificates (and, while
// it leads, the entries) on the certified topic, whenever it is a voter.
// With servers (the servers' topic, certagg.go), each voter hands its
// certificate to the other servers there, and the leader publishes the
// entries with the voters' certificates: one message per batch. Without
// it each voter publishes its own. Call it once, after New.
func (c *Consensus) AttachCertified(t CertifiedTopic, servers ServerTopic) error {
	c.agg.init()
	c.edgeMu.Lock()
	defer c.edgeMu.Unlock()
	if c.pub != nil {
		return errors.New("attach certified topic: attached already")
	}
	ctx := c.group.Context()
	publish := func(t CertifiedTopic, what string) func(certify.Message) {
		return func(m certify.Message) {
			b, err := m.MarshalBinary()
			if err != nil {
				c.log.Warn("encode "+what, "err", err)
				return
			}
			if err := t.PublishCertified(ctx, b); err != nil && ctx.Err() == nil {
				c.log.Debug("publish "+what, "err", err)
			}
		}
	}
	toEdges := publish(t, "certified message")
	// A node that is no voter becomes one only by a change of the
	// configuration, which wakes the publisher (below): until then it
	// looks rarely.
	cfg := certify.PublisherConfig{Entries: c.IsLeader, Publish: toEdges, NotVoterIdle: notVoterIdle}
	if servers != nil {
		toServers := publish(servers, "certificate to the servers")
		cfg.Publish = func(m certify.Message) {
			if !c.agg.withhold.Load() || !c.IsLeader() {
				toEdges(m)
			}
		}
		cfg.Servers = func(ct certify.Cert) {
			c.agg.held.Add(ct)
			toServers(certify.Message{Certs: []certify.Cert{ct}})
		}
		cfg.Held = c.HeldCerts
		cfg.Covered = c.agg.seen.Covered
		// The followers learn of a commit within about two CommitTimeouts
		// (raft's replication loop), and an edge can apply nothing before
		// a majority certified it: waiting as long costs it nothing.
		cfg.Wait = 3*certifyInterval + 2*c.cfg.CommitTimeout
	}
	p, err := certify.StartPublisher(ctx, voterSource{c}, cfg)
	if err != nil {
		return fmt.Errorf("attach certified topic: %w", err)
	}
	c.pub = p
	c.agg.pub.Store(p)
	if !c.group.Go(func(ctx context.Context) {
		for {
			changed := c.configChanged()
			select {
			case <-ctx.Done():
				return
			case <-changed:
				p.Wake()
			}
		}
	}) {
		return ErrClosed
	}
	if servers != nil && !c.group.Go(func(ctx context.Context) { c.followServers(ctx, servers) }) {
		return ErrClosed
	}
	return nil
}

// notVoterIdle is how often the publisher of a node that is no voter
// looks whether it is one now, besides the wake a change of the
// configuration gives it.
const notVoterIdle = 10 * time.Second

// certifyInterval is how often a publisher looks at its head
// (certify.PublisherConfig.Interval's default).
const certifyInterval = 20 * time.Millisecond

// voterSource is this node's chain as a publisher sees it: only while
// this node is a voter, so that standbys and edges sign nothing (an
// edge would refuse their certificates).
type voterSource struct{ *Consensus }

func (s voterSource) ChainHead() (certify.Anchor, error) {
	if s.IsEdge() || !s.isVoter() { // an edge is no voter, and asks raft nothing
		return certify.Anchor{}, certify.ErrNotVoter
	}
	return s.Consensus.ChainHead()
}

// isVoter reports whether this node is a voter of the configuration, as
// the raft gate last read it (a publisher asks at each of its ticks; the
// read follows raft's within moments of a change).
func (c *Consensus) isVoter() bool {
	conf, ok := c.gate.configuration()
	if !ok {
		return false
	}
	for _, s := range conf.Servers {
		if string(s.ID) == c.cfg.LocalID {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

// EdgeStatus is an edge's progress, for the admin surface.
type EdgeStatus struct {
	Applied  uint64            `json:"applied"`
	Pending  int               `json:"pending"`
	Certs    int               `json:"certs"`
	Refused  map[string]uint64 `json:"refused,omitempty"`
	Promoted bool              `json:"promoted,omitempty"`
}

// Edge returns this node's edge progress; ok is false when it never ran
// as an edge.
func (c *Consensus) Edge() (EdgeStatus, bool) {
	r := c.edge.Load()
	if r == nil {
		return EdgeStatus{}, false
	}
	s := r.e.Stats()
	return EdgeStatus{Applied: s.Applied, Pending: s.Pending, Certs: s.Certs, Refused: r.e.Counts(), Promoted: r.promoted.Load()}, true
}

// EdgeCollector exports the edge's counters (certify.NewCollector) once
// this node runs as one, and the refusals of certified messages a server
// counted.
func (c *Consensus) EdgeCollector() prometheus.Collector { return edgeCollector{c} }

type edgeCollector struct{ c *Consensus }

var (
	serverRefusedDesc = prometheus.NewDesc("meshward_certified_refused_total",
		"Messages of the certified topic a server refused, by reason.", []string{"reason"}, nil)
	chainsyncRefusedDesc = prometheus.NewDesc("meshward_chainsync_refused_total",
		"Catch-up requests of edges this node refused, by reason.", []string{"reason"}, nil)
)

func (ec edgeCollector) Describe(ch chan<- *prometheus.Desc) {
	certify.NewCollector(nil).Describe(ch)
	ch <- serverRefusedDesc
	ch <- chainsyncRefusedDesc
	describeAggregation(ch)
}

func (ec edgeCollector) Collect(ch chan<- prometheus.Metric) {
	if r := ec.c.edge.Load(); r != nil {
		certify.NewCollector(r.e).Collect(ch)
	}
	ec.c.collectAggregation(ch)
	for reason, n := range ec.c.chainSrv.Refused() {
		ch <- prometheus.MustNewConstMetric(chainsyncRefusedDesc, prometheus.CounterValue, float64(n), reason)
	}
	ec.c.edgeMu.Lock()
	defer ec.c.edgeMu.Unlock()
	for reason, n := range ec.c.certRefused {
		ch <- prometheus.MustNewConstMetric(serverRefusedDesc, prometheus.CounterValue, float64(n), reason)
	}
}
