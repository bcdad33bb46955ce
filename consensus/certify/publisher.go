package certify

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/meshward/meshward/internal/routine"
)

// Source is what a publisher needs of a server (consensus.Consensus).
type Source interface {
	ChainHead() (Anchor, error)
	ChainEntries(from uint64, max int) ([]Entry, bool)
	CertifyHead() (Cert, error)
}

// ErrNotVoter is what a Source's ChainHead returns (wrapped or not)
// while this node is no voter.
var ErrNotVoter = errors.New("this node is no voter")

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Interval is how often the head is looked at; a certificate is made
	// only when it moved. Default 20ms.
	Interval time.Duration
	// Idle is how often the head is looked at while the source has none
	// to certify (ChainHead fails: this node is no voter, as every edge
	// and standby). Default 50 × Interval: a mesh of a thousand nodes,
	// each looking fifty times a second for a head it may not certify,
	// spent a core on it.
	Idle time.Duration
	// NotVoterIdle replaces Idle while ChainHead fails with ErrNotVoter
	// (an edge or standby, which only a change of the configuration
	// makes a voter: its owner calls Wake then). Default Idle.
	NotVoterIdle time.Duration
	// Entries reports whether this server publishes the entries too (the
	// leader does); nil: certificates only.
	Entries func() bool
	// Publish hands a message on to the edges (the certified topic).
	// Called from the publisher's goroutine, one message at a time.
	Publish func(Message)

	// Servers hands this voter's certificate of its head to the other
	// servers only (the servers' topic), whenever the head moves. Nil:
	// no aggregation, every voter publishes its own certificate with
	// Publish (and the leader the entries with it).
	Servers func(Cert)
	// Held returns the voters' certificates this server holds (checked,
	// at or below index upTo, on its chain). With Servers.
	Held func(upTo uint64) []Cert
	// Wait bounds how long the leader holds new entries back for a
	// majority of the voters' certificates of its head; then it
	// publishes them with what it holds and follows up with the rest.
	// Default 3 × Interval.
	Wait time.Duration
	// Covered is the highest index that certificates of a majority of
	// voters (in the set given) reached on the edges' topic, as this
	// server saw it. With Servers.
	Covered func(Voters) uint64
	// Fallback: a voter that does not lead and whose certified index no
	// majority on the edges' topic covered within Fallback publishes its
	// own certificate there (the leader withholds, or is slow). Default
	// 2s.
	Fallback time.Duration
}

// PublisherStats are a publisher's counts.
type PublisherStats struct {
	Messages  uint64 // messages handed to Publish (the edges' topic)
	Entries   uint64 // entries in them
	Servers   uint64 // certificates handed to Servers
	Fallbacks uint64 // own certificates published to the edges because no majority covered them in time
}

// Publisher signs a server's chain head whenever it moves, at most once
// per interval. Without Servers each voter publishes its certificate to
// the edges, and the leader the entries with it. With Servers each voter
// hands its certificate to the other servers, and the leader publishes
// one message per batch to the edges: the entries and every voter's
// certificate it holds that covers them.
type Publisher struct {
	src   Source
	cfg   PublisherConfig
	group *routine.Group
	wake  chan struct{}

	messages, entriesSent, servers, fallbacks atomic.Uint64
}

// StartPublisher starts a publisher on src; ctx bounds it; Close stops
// it and waits.
func StartPublisher(ctx context.Context, src Source, cfg PublisherConfig) (*Publisher, error) {
	if cfg.Publish == nil {
		return nil, errors.New("publisher config: Publish is required")
	}
	if cfg.Servers != nil && (cfg.Held == nil || cfg.Covered == nil) {
		return nil, errors.New("publisher config: Servers needs Held and Covered")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Interval", cfg.Interval}, {"Idle", cfg.Idle}, {"NotVoterIdle", cfg.NotVoterIdle}, {"Wait", cfg.Wait}, {"Fallback", cfg.Fallback}} {
		if d.v < 0 {
			return nil, fmt.Errorf("publisher config: %s = %s: want > 0", d.name, d.v)
		}
	}
	if cfg.Interval == 0 {
		cfg.Interval = 20 * time.Millisecond
	}
	if cfg.Idle == 0 {
		cfg.Idle = 50 * cfg.Interval
	}
	if cfg.NotVoterIdle == 0 {
		cfg.NotVoterIdle = cfg.Idle
	}
	if cfg.Wait == 0 {
		cfg.Wait = 3 * cfg.Interval
	}
	if cfg.Fallback == 0 {
		cfg.Fallback = 2 * time.Second
	}
	p := &Publisher{src: src, cfg: cfg, group: routine.New(ctx), wake: make(chan struct{}, 1)}
	p.group.Go(p.run)
	return p, nil
}

// Close stops the publisher and waits for its goroutine. Idempotent.
func (p *Publisher) Close() { p.group.Close() }

// Wake has the leader's publisher look at the certificates it holds now
// rather than at its next tick (one arrived on the servers' topic): the
// edges get the entries as soon as a majority certified them. An idle
// publisher (no head to certify) looks at the head at once (the
// configuration changed: this node may be a voter now).
func (p *Publisher) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Stats returns the publisher's counts.
func (p *Publisher) Stats() PublisherStats {
	return PublisherStats{Messages: p.messages.Load(), Entries: p.entriesSent.Load(), Servers: p.servers.Load(), Fallbacks: p.fallbacks.Load()}
}

// pubState is the publisher's goroutine's state.
type pubState struct {
	own    Cert   // the last certificate made
	signed uint64 // its index
	sent   uint64 // the last entry published
	// The leader's: since when entries after sent wait (zero: none
	// wait), when it last published, and the certificate of each voter
	// it last published.
	waiting   time.Time
	last      time.Time
	published map[string]Cert
	// A voter's that does not lead: since when its certificate has been
	// uncovered on the edges' topic, and the last index it published
	// itself.
	uncovered time.Time
	fellBack  uint64
	// covered is the last index this voter found covered there: its
	// certificate of that index needs no more looking at.
	covered uint64
}

func (p *Publisher) run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	tickEvery := p.cfg.Interval
	idle := false
	st := pubState{published: map[string]Cert{}}
	for {
		woke := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.wake:
			woke = true
		}
		if woke && !idle {
			// Only the leader's look at what it holds; the head is
			// signed at the ticks.
			if st.signed != 0 && p.cfg.Servers != nil && p.cfg.Entries != nil && p.cfg.Entries() {
				if head, err := p.src.ChainHead(); err == nil {
					p.lead(&st, head.Voters)
				}
			}
			continue
		}
		head, err := p.src.ChainHead()
		every := p.cfg.Interval
		switch {
		case errors.Is(err, ErrNotVoter):
			every = p.cfg.NotVoterIdle
		case err != nil:
			every = p.cfg.Idle
		}
		if every != tickEvery {
			tickEvery = every
			t.Reset(every)
		}
		idle = err != nil
		if err != nil {
			continue
		}
		if p.cfg.Servers == nil {
			p.alone(&st, head)
			continue
		}
		if head.Index != st.signed {
			if c, err := p.src.CertifyHead(); err == nil {
				st.own, st.signed = c, c.Index
				p.servers.Add(1)
				p.cfg.Servers(c)
			}
		}
		if st.signed == 0 {
			continue
		}
		if p.cfg.Entries != nil && p.cfg.Entries() {
			st.uncovered = time.Time{}
			p.lead(&st, head.Voters)
		} else {
			st.waiting = time.Time{}
			p.follow(&st, head.Voters)
		}
	}
}

// alone is a tick without aggregation: the certificate of a head that
// moved, with the entries since the last message when this server
// publishes them.
func (p *Publisher) alone(st *pubState, head Anchor) {
	if head.Index == st.signed {
		return
	}
	c, err := p.src.CertifyHead()
	if err != nil {
		return // not initialised yet: the next tick tries again
	}
	var m Message
	more := false
	if p.cfg.Entries != nil && p.cfg.Entries() {
		m.Entries, st.sent, more = p.entries(st.sent, c.Index, 1)
	}
	m.Certs = []Cert{c}
	st.signed = c.Index
	if more {
		st.signed = 0 // the rest of the entries at the next tick
	}
	p.publish(m)
}

func (p *Publisher) publish(m Message) {
	p.messages.Add(1)
	p.entriesSent.Add(uint64(len(m.Entries)))
	p.cfg.Publish(m)
}

// lead is the leader's tick: the entries after the last sent, once a
// majority of the voters certified the head or Wait passed, with every
// voter's certificate newer than the last it published of that voter;
// or, with no new entries, the certificates that complete a majority
// over the entries it published without one.
func (p *Publisher) lead(st *pubState, voters Voters) {
	now := time.Now()
	pending := st.sent < st.signed
	if pending && st.waiting.IsZero() {
		st.waiting = now
	}
	held := p.cfg.Held(st.signed)
	own := false
	for i := range held {
		if held[i].SignerID() == st.own.SignerID() {
			own = true
			if held[i].Index < st.own.Index {
				held[i] = st.own
			}
		}
	}
	if !own {
		held = append(held, st.own)
	}
	// Certificates newer than the last published of their signer, and
	// above what those published cover: the edges that got them applied
	// up to there, and an older one would be verified and refused as old.
	pc := p.publishedCover(st, voters)
	var fresh []Cert
	for _, c := range held {
		if id := c.SignerID(); voters.Contains(id) && c.Index > st.published[id].Index && c.Index > pc {
			fresh = append(fresh, c)
		}
	}
	covered := Covered(held, voters)
	if pending {
		if covered < st.signed && now.Sub(st.waiting) < p.cfg.Wait {
			return // a majority's certificates may be on their way
		}
	} else if len(fresh) == 0 || covered <= pc ||
		covered < st.sent && now.Sub(st.last) < p.cfg.Wait {
		return // nothing new, or not yet a majority over what was sent
	}
	m := Message{Certs: fresh}
	more := false
	if pending {
		m.Entries, st.sent, more = p.entries(st.sent, st.signed, len(fresh))
	}
	for _, c := range fresh {
		st.published[c.SignerID()] = c
	}
	// Entries left over go at the next tick; a follow-up waits (from
	// now) for a majority, or Wait.
	st.waiting, st.last = time.Time{}, now
	if more {
		st.waiting = now.Add(-p.cfg.Wait)
	}
	p.publish(m)
}

// publishedCover is what the certificates this leader published cover.
func (p *Publisher) publishedCover(st *pubState, voters Voters) uint64 {
	cs := make([]Cert, 0, len(st.published))
	for _, c := range st.published {
		cs = append(cs, c)
	}
	return Covered(cs, voters)
}

// follow is the tick of a voter that does not lead: when no majority on
// the edges' topic covered its certificate's index within Fallback, it
// publishes the certificate there itself (once per index).
func (p *Publisher) follow(st *pubState, voters Voters) {
	if st.signed <= st.fellBack || st.signed <= st.covered {
		st.uncovered = time.Time{}
		return
	}
	if c := p.cfg.Covered(voters); c >= st.signed {
		st.covered, st.uncovered = c, time.Time{}
		return
	}
	now := time.Now()
	if st.uncovered.IsZero() {
		st.uncovered = now
		return
	}
	if now.Sub(st.uncovered) < p.cfg.Fallback {
		return
	}
	st.fellBack, st.uncovered = st.signed, time.Time{}
	p.fallbacks.Add(1)
	p.publish(Message{Certs: []Cert{st.own}})
}

// entries are the entries after sent up to index that fit one message
// beside certs certificates; it returns them, the last index sent, and
// whether more remain. Entries no longer kept are skipped: edges that
// need them catch up from a certified snapshot.
func (p *Publisher) entries(sent, index uint64, certs int) ([]Entry, uint64, bool) {
	es, ok := p.src.ChainEntries(sent+1, MaxMessageEntries)
	if !ok {
		return nil, index, false
	}
	limit := MaxMessageSize - 4 - max(certs, 1)*(2+CertSize(MaxMeshID))
	size := 0
	for i, e := range es {
		if e.Index > index {
			return es[:i], index, false
		}
		n := 4 + entryHeader + len(e.Data)
		if size+n > limit {
			if i == 0 { // cannot be sent whole: skipped
				return nil, e.Index, true
			}
			return es[:i], es[i-1].Index, true
		}
		size += n
	}
	if len(es) == MaxMessageEntries && es[len(es)-1].Index < index {
		return es, es[len(es)-1].Index, true
	}
	return es, index, false
}
