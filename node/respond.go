package node

import (
	"container/heap"
	"context"
	"encoding/hex"
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
// position in the consensus change feed, and the ID and expiry of every
// active policy it has reported committed, with the expiries in a heap.
// It holds 8-byte IDs and times, not policies: the policy an event needs
// is in the change being read, or is looked up in the consensus state
// when its time passes. A million active policies cost some 60 MB here.
type policyWatch struct {
	since  uint64
	active map[policyKey]int64 // ID -> expiry in Unix nanoseconds; 0: never
	exp    expiryHeap
}

// policyKey is a policy ID (16 hex digits) as its 8 bytes.
type policyKey [8]byte

func keyOf(id string) (policyKey, bool) {
	var k policyKey
	if len(id) != 2*len(k) {
		return k, false
	}
	_, err := hex.Decode(k[:], []byte(id))
	return k, err == nil
}

func (k policyKey) String() string { return hex.EncodeToString(k[:]) }

// expiryHeap is a min-heap of (expiry, ID) (container/heap). An entry
// whose expiry no longer matches the watch's (the policy was extended or
// is gone) is stale and skipped when it comes to the top.
type expiryHeap []expiryEntry

type expiryEntry struct {
	at int64
	id policyKey
}

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
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
// Expiry needs no change: the expiries wait in a heap, and every call (on
// each change and every few seconds) reports those whose time has come.
func (n *Node) watchPolicies(w *policyWatch) {
	if w.active == nil {
		w.active = make(map[policyKey]int64)
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
				n.watchGone(w, ch.Policy, now)
			} else {
				n.watchPut(w, ch.Policy, now)
			}
		}
		w.since = next
		if len(changes) < watchChangeBatch {
			break
		}
	}
	for len(w.exp) > 0 && w.exp[0].at <= now.UnixNano() {
		e := heap.Pop(&w.exp).(expiryEntry)
		if at, ok := w.active[e.id]; !ok || at != e.at {
			continue // stale: extended, or already reported gone
		}
		// Still held by the consensus state until its clock passes the
		// expiry: read it as it was just before. If it is gone, its
		// removal is in the feed and is reported from there.
		expires := time.Unix(0, e.at)
		if p, held := c.Policy(e.id.String(), expires.Add(-time.Nanosecond)); held && p.ExpiresAt.Equal(expires) {
			n.watchGone(w, p, now)
		}
	}
}

// resyncWatch compares what w holds with the active policies read whole.
func (n *Node) resyncWatch(w *policyWatch, now time.Time) {
	seen := make(map[policyKey]struct{}, len(w.active))
	after := ""
	for {
		page, next := n.deps.Consensus.PolicyPage(after, watchPageSize, now)
		for _, p := range page {
			if k, ok := keyOf(p.ID); ok {
				seen[k] = struct{}{}
			}
			n.watchPut(w, p, now)
		}
		if next == "" || len(page) == 0 {
			break
		}
		after = next
	}
	for k := range w.active {
		if _, ok := seen[k]; !ok {
			// Gone while the feed was lost: only its ID is known.
			delete(w.active, k)
			n.emit(siem.PolicyEvent(siem.KindPolicyExpired, n.deps.ID, intel.Policy{ID: k.String()}, "", now))
		}
	}
}

// watchPut takes in a committed (or changed) policy, reporting it if it
// is new and active.
func (n *Node) watchPut(w *policyWatch, p intel.Policy, now time.Time) {
	if !p.Active(now) {
		n.watchGone(w, p, now)
		return
	}
	k, ok := keyOf(p.ID)
	if !ok {
		n.log.Warn("policy with a malformed ID not watched", "id", p.ID)
		return
	}
	var at int64
	if !p.ExpiresAt.IsZero() {
		at = p.ExpiresAt.UnixNano()
	}
	old, known := w.active[k]
	w.active[k] = at
	if at != 0 && (!known || old != at) {
		heap.Push(&w.exp, expiryEntry{at: at, id: k})
		if len(w.exp) > 2*len(w.active)+1024 {
			w.compact() // mostly stale entries: extensions
		}
	}
	if known {
		return
	}
	if p.Action == intel.ActionBlock {
		n.timelines.mark(p.Indicator.Key(), now, committed)
	}
	p.Evidence = nil // events do not carry it
	n.emit(siem.PolicyEvent(siem.KindPolicyCommitted, n.deps.ID, p, "", now))
}

// compact rebuilds the heap from the active expiries alone.
func (w *policyWatch) compact() {
	w.exp = w.exp[:0]
	for k, at := range w.active {
		if at != 0 {
			w.exp = append(w.exp, expiryEntry{at: at, id: k})
		}
	}
	heap.Init(&w.exp)
}

// watchGone reports p expired (or revoked), if it was active.
func (n *Node) watchGone(w *policyWatch, p intel.Policy, now time.Time) {
	k, ok := keyOf(p.ID)
	if !ok {
		return
	}
	if _, ok := w.active[k]; !ok {
		return
	}
	delete(w.active, k)
	p.Evidence = nil
	n.emit(siem.PolicyEvent(siem.KindPolicyExpired, n.deps.ID, p, "", now))
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
