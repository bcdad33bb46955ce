package certify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshward/meshward/internal/routine"
)

// Source is what a publisher needs of a server (consensus.Consensus).
type Source interface {
	ChainHead() (Anchor, error)
	ChainEntries(from uint64, max int) ([]Entry, bool)
	CertifyHead() (Cert, error)
}

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
	// Entries reports whether this server publishes the entries too (the
	// leader does); nil: certificates only.
	Entries func() bool
	// Publish hands a message on (to GossipSub). Called from the
	// publisher's goroutine, one message at a time.
	Publish func(Message)
}

// Publisher signs a server's chain head whenever it moves, at most once
// per interval, and publishes the certificate, with the entries since the
// last message when it is the one to publish them.
type Publisher struct {
	src   Source
	cfg   PublisherConfig
	group *routine.Group
}

// StartPublisher starts a publisher on src; ctx bounds it; Close stops
// it and waits.
func StartPublisher(ctx context.Context, src Source, cfg PublisherConfig) (*Publisher, error) {
	if cfg.Publish == nil {
		return nil, errors.New("publisher config: Publish is required")
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("publisher config: Interval = %s: want > 0", cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = 20 * time.Millisecond
	}
	if cfg.Idle < 0 {
		return nil, fmt.Errorf("publisher config: Idle = %s: want > 0", cfg.Idle)
	}
	if cfg.Idle == 0 {
		cfg.Idle = 50 * cfg.Interval
	}
	p := &Publisher{src: src, cfg: cfg, group: routine.New(ctx)}
	p.group.Go(p.run)
	return p, nil
}

// Close stops the publisher and waits for its goroutine. Idempotent.
func (p *Publisher) Close() { p.group.Close() }

func (p *Publisher) run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	idle := false
	var signed, sent uint64 // last index certified, last entry published
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		head, err := p.src.ChainHead()
		if (err != nil) != idle {
			idle = err != nil
			if idle {
				t.Reset(p.cfg.Idle)
			} else {
				t.Reset(p.cfg.Interval)
			}
		}
		if err != nil || head.Index == signed {
			continue
		}
		c, err := p.src.CertifyHead()
		if err != nil {
			continue // not initialised yet: the next tick tries again
		}
		var m Message
		more := false
		if p.cfg.Entries != nil && p.cfg.Entries() {
			m.Entries, sent, more = p.entries(sent, c.Index)
		}
		m.Certs = []Cert{c}
		signed = c.Index
		if more {
			signed = 0 // the rest of the entries at the next tick
		}
		p.cfg.Publish(m)
	}
}

// entries are the entries after sent up to index that fit one message
// beside a certificate; it returns them, the last index sent, and
// whether more remain. Entries no longer kept are skipped: edges that
// need them catch up from a certified snapshot.
func (p *Publisher) entries(sent, index uint64) ([]Entry, uint64, bool) {
	es, ok := p.src.ChainEntries(sent+1, MaxMessageEntries)
	if !ok {
		return nil, index, false
	}
	limit := MaxMessageSize - 4 - 2 - CertSize(MaxMeshID)
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
