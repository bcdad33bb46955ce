package node

import (
	"container/heap"
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
	_ "github.com/meshward/meshward/responders/all" // every backend kind
	"github.com/meshward/meshward/responders/events"
	"github.com/meshward/meshward/responders/siem"
	"github.com/meshward/meshward/responders/webhook"
	"github.com/meshward/meshward/store"
)

// newResponders makes the enabled enforcement backends through the
// registry (responders/all registers every kind).
func newResponders(r responders.Config, nftNetNS int, log *slog.Logger) (*Responders, error) {
	return responders.Build(r, responders.Deps{Logger: log, NetNS: nftNetNS})
}

// newEvents makes the SIEM and SOAR event output; nil when none is
// configured. Node.Start starts its delivery.
func newEvents(ev events.Config, site, version string, st *store.Store, reg prometheus.Registerer, log *slog.Logger) (*siem.Output, error) {
	out, err := events.Build(ev, events.Deps{Logger: log, Hostname: site, Version: version,
		WebhookQueue: func() (webhook.Queue, error) { return st.Queue("webhook") }})
	if err != nil || out == nil {
		return nil, err
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshward_events_dropped_total",
			Help: "SIEM/SOAR events dropped because the output queue was full."},
			func() float64 { return float64(out.Stats().Dropped) }),
	)
	return out, nil
}

// emit hands an event to the SIEM and SOAR output, if any.
func (n *Node) emit(e siem.Event) {
	if ev := n.deps.Events; ev != nil {
		ev.Emit(e)
	}
}

// policyWatch is what watchPolicies knows of the mesh-wide policies: the
// position in the consensus change feed, and every active policy it has
// reported committed (evidence dropped), by ID, with those that expire in
// a heap by expiry.
type policyWatch struct {
	since  uint64
	active map[string]*watched
	exp    watchHeap
}

type watched struct {
	p  intel.Policy
	hi int // index in exp; -1 when the policy never expires
}

// watchHeap is a min-heap of watched policies by expiry (container/heap).
type watchHeap []*watched

func (h watchHeap) Len() int           { return len(h) }
func (h watchHeap) Less(i, j int) bool { return h[i].p.ExpiresAt.Before(h[j].p.ExpiresAt) }
func (h watchHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hi, h[j].hi = i, j
}
func (h *watchHeap) Push(x any) {
	w := x.(*watched)
	w.hi = len(*h)
	*h = append(*h, w)
}
func (h *watchHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.hi = -1
	return w
}

// Feed read sizes of watchPolicies.
const (
	watchChangeBatch = 1000
	watchPageSize    = 10_000
)

// watchPolicies reports mesh-wide policies as they are committed and as
// they expire or are revoked. It follows the consensus change feed from
// w's position, so that a call costs what changed since the last, and
// reads the policies whole (in pages) only when the feed cannot continue
// (at start, after a restored snapshot, or when this loop fell behind).
// Expiry needs no change: the policies that expire wait in a heap, and
// every call (on each change and every few seconds) reports those whose
// time has come.
func (n *Node) watchPolicies(w *policyWatch) {
	if w.active == nil {
		w.active = make(map[string]*watched)
	}
	now := n.now()
	c := n.deps.Consensus
	for {
		changes, next, ok := c.PolicyChanges(w.since, watchChangeBatch)
		if !ok {
			// Continue from next once the pages are read: a change they
			// already show is then taken in twice, which reports nothing.
			w.since = next
			n.resyncWatch(w, now)
			break
		}
		for _, ch := range changes {
			if ch.Removed {
				n.watchGone(w, ch.Policy.ID, now)
			} else {
				n.watchPut(w, ch.Policy, now)
			}
		}
		w.since = next
		if len(changes) < watchChangeBatch {
			break
		}
	}
	for len(w.exp) > 0 && !w.exp[0].p.Active(now) {
		n.watchGone(w, w.exp[0].p.ID, now)
	}
}

// resyncWatch compares what w holds with the active policies read whole.
func (n *Node) resyncWatch(w *policyWatch, now time.Time) {
	seen := make(map[string]struct{}, len(w.active))
	after := ""
	for {
		page, next := n.deps.Consensus.PolicyPage(after, watchPageSize, now)
		for _, p := range page {
			seen[p.ID] = struct{}{}
			n.watchPut(w, p, now)
		}
		if next == "" || len(page) == 0 {
			break
		}
		after = next
	}
	for id := range w.active {
		if _, ok := seen[id]; !ok {
			n.watchGone(w, id, now)
		}
	}
}

// watchPut takes in a committed (or changed) policy, reporting it if it
// is new and active.
func (n *Node) watchPut(w *policyWatch, p intel.Policy, now time.Time) {
	if !p.Active(now) {
		n.watchGone(w, p.ID, now)
		return
	}
	p.Evidence = nil // events do not carry it
	if old, ok := w.active[p.ID]; ok {
		old.p = p
		if old.hi >= 0 {
			if p.ExpiresAt.IsZero() {
				heap.Remove(&w.exp, old.hi)
			} else {
				heap.Fix(&w.exp, old.hi)
			}
		} else if !p.ExpiresAt.IsZero() {
			heap.Push(&w.exp, old)
		}
		return
	}
	e := &watched{p: p, hi: -1}
	w.active[p.ID] = e
	if !p.ExpiresAt.IsZero() {
		heap.Push(&w.exp, e)
	}
	if p.Action == intel.ActionBlock {
		n.timelines.mark(p.Indicator.Key(), now, committed)
	}
	n.emit(siem.PolicyEvent(siem.KindPolicyCommitted, n.deps.ID, p, "", now))
}

// watchGone reports the policy of id expired (or revoked), if it was
// active.
func (n *Node) watchGone(w *policyWatch, id string, now time.Time) {
	e, ok := w.active[id]
	if !ok {
		return
	}
	delete(w.active, id)
	if e.hi >= 0 {
		heap.Remove(&w.exp, e.hi)
	}
	n.emit(siem.PolicyEvent(siem.KindPolicyExpired, n.deps.ID, e.p, "", now))
}

// Enforcing reports whether any of this node's responders holds a block
// of ind.
func (n *Node) Enforcing(ind intel.Indicator) bool {
	r := n.responders()
	if r.DryRun != nil {
		return r.DryRun.Has(ind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, b := range r.List {
		if f, ok := b.(responders.TypeFilter); ok && !f.Supports(ind.Type) {
			continue
		}
		if h, ok := b.(responders.Holder); ok {
			if held, err := h.Holds(ctx, ind); err == nil && held {
				return true
			}
			continue
		}
		if held, err := b.Current(ctx); err == nil {
			if _, ok := held[ind.Key()]; ok {
				return true
			}
		}
	}
	return false
}
